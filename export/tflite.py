"""TFLite (LiteRT) models of MFIF-GAN for phones: G, SRR and eq. 14 as built-in ops only.

Every model takes two float32 RGB images in [0, 1], `image_a` (I_A) and `image_b` (I_B), of
shape (1, H, W, 3), and returns `fused` (I_fused of eq. 14, float32 in [0, 1], (1, H, W, 3)),
`focus_map` (F_final, float32 0/1, (1, H, W, 1)) and `focus_map_raw` (F_hat, float32 in
[0, 1], built by `mfif_tf.inference` in the export's mode: refined by default, G at full
resolution up to a shorter side of 480 and on 2 x 2 or 4 x 4 box means above it, its outline
redrawn at full resolution by the refinement head R trained for that step, as `fuse` does).
SRR uses the paper's N = ceil(0.001 * W * H) (section 3.3).

Variants: "dynamic" (any H and W: resize the inputs before `allocate_tensors`) and "fixed"
(1 x S x S x 3, for delegates that want static shapes), each as "float32", "float16" (G's
weights stored as float16, the rest float32; `float16_generator`), "int8" (dynamic-range
quantisation: int8 weights, float activations) and, on request, "int8_full" (full-integer
quantisation of G and of R's convolutions: int8 weights and int8 activations, calibrated on
synthetic pairs; `convert_full_integer`). The graphs contain no assertions (LiteRT has no
Assert op); `TFLiteFuser` checks the inputs on the host instead. The graph is the
SavedModel's core, `export.serving.FusionModule.serve`, with N computed from the model's
fixed or dynamic input size.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Iterator, Sequence

import numpy as np
import tensorflow as tf

from export.config import (FULL_INTEGER, QUANTIZATIONS, REPRESENTATIVE_PAIRS,
                           VARIANTS, TFLiteConfig)
from export.serving import FusionModule, ModelHolder
from mfif_tf import inference
from mfif_tf.inference import PAPER_MIN_SIZE_FRACTION
from mfif_tf.layers import subpixel_upsampling
from mfif_tf.networks import Generator
from mfif_tf.refiner import Refiner
from mfif_tf.srr import default_min_size
from mfif_tf.windows import litert_window_ops

OUTPUTS = ("fused", "focus_map", "focus_map_raw")

# int8_full: synthetic pairs to calibrate on, made as the packaged model's training data
# (configs/pretrained.flags: alpha-matte synthesis, eqs. 10-11, sigma ~ U[1, 4.5], random
# crops, sources swapped in half of the pairs).
REPRESENTATIVE_SIZE = 256
REPRESENTATIVE_SIGMA_RANGE = (1.0, 4.5)
REPRESENTATIVE_RESIZE_SHORTER = 320
# int8_full: the range of each of G's activations is, over the representative pairs, the
# largest of this quantile of its |values| rather than the largest value: a few outliers would
# otherwise spread the 256 levels over a range that almost no value uses (docs/serving.md).
RANGE_QUANTILE = 0.9999
# Name scopes of G and R in the traced graphs; int8_full quantises the ops inside them.
GENERATOR_SCOPE = "mfif_G"
REFINER_SCOPE = "mfif_R"
# float16: G's layers whose weights stay float32. The stem convolves the pixels themselves;
# keeping it float32 raised the worst Lytro pair's F_final agreement with `fuse` from 99.896 %
# to 99.925 % for 3 kB (`float16_generator`).
FLOAT32_LAYERS = ("stem_conv7",)


def model_filename(variant: str, quantization: str, fixed_size: int) -> str:
    size = "dynamic" if variant == "dynamic" else f"{fixed_size}x{fixed_size}"
    return f"mfif_{size}_{quantization}.tflite"


def input_shape(variant: str, fixed_size: int) -> list[int | None]:
    """Shape of `image_a` and `image_b` of a variant: the TFLite input kind is float32 RGB in
    [0, 1], one pair, checked on the host (`TFLiteFuser`), not in the graph."""
    if variant == "dynamic":
        return [1, None, None, 3]
    if variant == "fixed":
        return [1, fixed_size, fixed_size, 3]
    raise ValueError(f"unknown TFLite variant {variant!r}; choose from {VARIANTS}")


class _ScopedHolder(ModelHolder):
    """Calls G (or R) inside a name scope, so that the converted graph's tensor names say
    which ops belong to it (`convert_full_integer` quantises those)."""

    def __init__(self, model, scope: str):
        super().__init__(model)
        self.scope = scope

    def __call__(self, x: tf.Tensor) -> tf.Tensor:
        with tf.name_scope(self.scope):
            return super().__call__(x)


class TFLiteModule(FusionModule):
    """G with SRR and eq. 14 (`FusionModule.serve`, the SavedModel's core) for float32 [0, 1]
    RGB sources; `function(variant)` gives the concrete function to convert. G and R are
    traced in the name scopes `GENERATOR_SCOPE` and `REFINER_SCOPE`."""

    def __init__(self, generator: Generator, fixed_size: int = 512,
                 min_size_fraction: float = PAPER_MIN_SIZE_FRACTION,
                 scales: tuple[float, ...] = (1.0,), mode: str = inference.DEFAULT_MODE,
                 refiner: Refiner | None = None,
                 working_side: int = inference.DEFAULT_WORKING_SIDE,
                 coarse_refiner: Refiner | None = None,
                 g_side: int = inference.DEFAULT_G_SIDE,
                 coarse_generator: Generator | None = None):
        super().__init__(generator, min_size_fraction, scales, mode, refiner, working_side,
                         name="mfif_tflite", coarse_refiner=coarse_refiner, g_side=g_side,
                         coarse_generator=coarse_generator)
        self.fixed_size = int(fixed_size)
        self.generator = _ScopedHolder(generator, GENERATOR_SCOPE)
        if self.refiner is not None:
            self.refiner = _ScopedHolder(refiner, REFINER_SCOPE)
        if self.coarse_refiner is not None:
            self.coarse_refiner = _ScopedHolder(coarse_refiner, REFINER_SCOPE)
        if self.coarse_generator is not None:
            self.coarse_generator = _ScopedHolder(coarse_generator, GENERATOR_SCOPE)

    def _fuse(self, image_a: tf.Tensor, image_b: tf.Tensor) -> dict[str, tf.Tensor]:
        # No input checks: LiteRT has no Assert op.
        height, width = image_a.shape[1], image_a.shape[2]
        if height is None or width is None:
            height, width = tf.shape(image_a)[1], tf.shape(image_a)[2]
        # Static sizes give an exact integer N; dynamic ones compute it in the graph.
        n = default_min_size(height, width, self.min_size_fraction)
        return self.serve(image_a, image_b, n)

    def function(self, variant: str):
        shape = input_shape(variant, self.fixed_size)

        def fuse_images(image_a, image_b):
            return self._fuse(image_a, image_b)

        return tf.function(fuse_images).get_concrete_function(
            tf.TensorSpec(shape, tf.float32, name="image_a"),
            tf.TensorSpec(shape, tf.float32, name="image_b"))


def _converter(module: TFLiteModule, variant: str) -> tf.lite.TFLiteConverter:
    # The decoder's transposed convolutions are traced in sub-pixel form: LiteRT's CPU
    # delegate does not take a transposed convolution whose output shape is computed at run
    # time (every dynamic-size model), and runs the equal convolution + depth-to-space. For
    # the same reason window sums and maxima are convolutions and pools there.
    with subpixel_upsampling(), litert_window_ops():
        concrete = module.function(variant)
    return tf.lite.TFLiteConverter.from_concrete_functions([concrete], module)


def convert(module: TFLiteModule, variant: str, quantization: str,
            representative: Sequence[tuple[np.ndarray, np.ndarray]] | None = None,
            float32: bytes | None = None) -> bytes:
    """One .tflite flatbuffer, built-in ops only (conversion fails rather than use Flex).

    `representative`: for "int8_full" only, the (I_A, I_B) pairs to calibrate on
    (`representative_pairs`), each float32 (1, H, W, 3) in [0, 1] with the variant's size.
    `float32`: for "float16" only, the float32 model of the same module and variant, when
    already converted (the float16 model is made from it).
    """
    if quantization not in QUANTIZATIONS:
        raise ValueError(f"unknown quantization {quantization!r}; choose from {QUANTIZATIONS}")
    if quantization == FULL_INTEGER:
        if not representative:
            raise ValueError(f"{FULL_INTEGER} needs representative pairs to calibrate on")
        return convert_full_integer(module, variant, representative)
    if quantization == "float16" and float32 is not None:
        return float16_generator(float32)
    converter = _converter(module, variant)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if quantization == "int8":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    model = converter.convert()
    return float16_generator(model) if quantization == "float16" else model


def float16_generator(model: bytes, scope: str = GENERATOR_SCOPE,
                      keep: Sequence[str] = FLOAT32_LAYERS) -> bytes:
    """The float32 model `model` with the constant float32 tensors that only ops of `scope`
    (G by default, in the main graph or in an IF op's branches, where a model with a second G
    for box means has them) read stored as float16, except those of the layers named in
    `keep`, each turned back into float32 by a DEQUANTIZE op at the start of its subgraph
    (once, when the interpreter or its delegate prepares the model). Everything else keeps
    float32 constants: R, the thresholds of the focus-measure check and the constants of SRR
    and eq. 14.

    The converter's own float16 option (`supported_types = [tf.float16]`) rounds every
    constant, the outline step's thresholds 0.15 and 0.85 and R's weights among them: F_final
    then differed from `fuse` on 0.26 % of the worst Lytro pair's pixels, against 0.10 % with
    only G's weights rounded and 0.075 % with G's but the stem's (docs/serving.md). G holds
    nearly all the weights, so the model is hardly larger.
    """
    from tensorflow.lite.python import schema_py_generated as schema

    model_t = _read_model(model)
    codes = [max(c.builtinCode, c.deprecatedBuiltinCode) for c in model_t.operatorCodes]
    dequantize = schema.BuiltinOperator.DEQUANTIZE
    if dequantize in codes:
        opcode = codes.index(dequantize)
    else:
        code = schema.OperatorCodeT()
        code.builtinCode = code.deprecatedBuiltinCode = dequantize
        code.version = 3  # a float16 input
        model_t.operatorCodes.append(code)
        opcode = len(model_t.operatorCodes) - 1
    uses: dict[int, int] = {}  # buffer -> tensors that hold it, over every subgraph
    for subgraph in model_t.subgraphs:
        for tensor in subgraph.tensors:
            uses[tensor.buffer] = uses.get(tensor.buffer, 0) + 1
    empty = len(model_t.buffers)
    model_t.buffers.append(schema.BufferT())
    readers: dict[tuple[int, int], list[_Op]] = {}
    for op in _ops(model_t):
        for t in op.inputs:
            readers.setdefault((op.subgraph, t), []).append(op)
    for s, subgraph in enumerate(model_t.subgraphs):
        ends = set(_indices(subgraph.inputs)) | set(_indices(subgraph.outputs))
        added = []
        for t, tensor in enumerate(subgraph.tensors):
            data = model_t.buffers[tensor.buffer].data
            ops = readers.get((s, t), [])
            if (tensor.type != schema.TensorType.FLOAT32 or data is None or not len(data)
                    or t in ends or not ops
                    or not all(_in_scope(model_t, op, scope, nested=True)
                               and not _in_layers(model_t, op, keep)
                               for op in ops)):
                continue
            values = np.frombuffer(bytes(bytearray(data)), np.float32).astype(np.float16)
            buffer = schema.BufferT()
            buffer.data = np.frombuffer(values.tobytes(), np.uint8)
            model_t.buffers.append(buffer)
            half = schema.TensorT()
            half.shape, half.type = tensor.shape, schema.TensorType.FLOAT16
            half.buffer, half.name = len(model_t.buffers) - 1, tensor.name + b"_float16"
            subgraph.tensors.append(half)
            uses[tensor.buffer] -= 1
            if not uses[tensor.buffer]:  # no tensor holds the float32 values any more
                model_t.buffers[tensor.buffer].data = None
            tensor.buffer = empty
            op = schema.OperatorT()
            op.opcodeIndex = opcode
            op.inputs, op.outputs = [len(subgraph.tensors) - 1], [t]
            added.append(op)
        subgraph.operators = added + list(subgraph.operators or [])
    return _write_model(model_t)


# ---------------------------------------------------------------- full-integer quantisation


def representative_pairs(data_dir: str, count: int = REPRESENTATIVE_PAIRS,
                         size: int = REPRESENTATIVE_SIZE,
                         seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """`count` synthetic pairs (I_A, I_B) of `size` x `size` pixels from the mask folder
    `data_dir`, made by `data_pipeline` as the packaged model's training data: alpha-matte
    synthesis (eqs. 10-11) with sigma ~ U[1, 4.5], the shorter side resized to
    max(`size`, 320) and a random crop, I_A and I_B swapped in half of the pairs. Returned as
    float32 (1, S, S, 3) in [0, 1] on the 8-bit grid, as photos reach the models.

    Keep `size` at the training scale (256): pairs made larger by upsampling the photos are
    smoother than real ones, and ranges calibrated on them clip G's activations on real
    photos (docs/serving.md); `convert_full_integer` mirrors the pairs out to a fixed-size
    model's size."""
    from data_pipeline import pipeline  # pylint: disable=import-outside-toplevel

    dataset = pipeline.make_training_dataset(
        source="folder", data_dir=data_dir, batch_size=1, seed=seed, image_size=size,
        crop="random", resize_shorter=max(size, REPRESENTATIVE_RESIZE_SHORTER),
        synthesis="alpha_matte", sigma_range=REPRESENTATIVE_SIGMA_RANGE, swap_sources=True)

    def to_unit(x: tf.Tensor) -> np.ndarray:  # [-1, 1] -> [0, 1], rounded to k / 255
        return (np.round((x.numpy() + 1.0) * 127.5) / 255.0).astype(np.float32)

    return [(to_unit(batch["image_a"]), to_unit(batch["image_b"]))
            for batch in dataset.take(count)]


@dataclasses.dataclass
class _Op:
    """One operator of a .tflite model: its builtin name and tensor indices (of `subgraph`)."""

    subgraph: int
    name: str
    inputs: list[int]
    outputs: list[int]


def _read_model(model: bytes):
    from tensorflow.lite.python import schema_py_generated as schema

    return schema.ModelT.InitFromObj(schema.Model.GetRootAs(bytearray(model), 0))


def _write_model(model_t) -> bytes:
    import flatbuffers

    builder = flatbuffers.Builder(1024)
    builder.Finish(model_t.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def _ops(model_t) -> Iterator[_Op]:
    from tensorflow.lite.python import schema_py_generated as schema

    names = {code: name for name, code in vars(schema.BuiltinOperator).items()
             if not name.startswith("_")}
    codes = [max(c.builtinCode, c.deprecatedBuiltinCode) for c in model_t.operatorCodes]
    for s, subgraph in enumerate(model_t.subgraphs):
        for op in subgraph.operators or []:
            yield _Op(s, names.get(codes[op.opcodeIndex], ""), _indices(op.inputs),
                      _indices(op.outputs))


def _indices(tensors) -> list[int]:
    return [] if tensors is None else [int(t) for t in tensors]


def _in_scope(model_t, op: _Op, scope: str, nested: bool = False) -> bool:
    """Whether every location fused into each output name of `op` lies in `scope` (or in its
    uniquified copies: scope_1, ... for a second pass of G); with `nested`, also where the
    scope is inside another (cond/mfif_G/...: G in a branch of an IF op)."""
    pattern = re.compile(rf"{'(.*/)?' if nested else ''}{re.escape(scope)}(_\d+)?/")
    tensors = model_t.subgraphs[op.subgraph].tensors
    return all(pattern.match(part) for t in op.outputs
               for part in tensors[t].name.decode().split(";") if part)


def _in_layers(model_t, op: _Op, layers: Sequence[str]) -> bool:
    """Whether an output name of `op` names one of the Keras layers `layers`."""
    tensors = model_t.subgraphs[op.subgraph].tensors
    return any(f"/{layer}" in tensors[t].name.decode() for t in op.outputs for layer in layers)


def _float_nodes(model_t) -> tuple[list[str], set[int]]:
    """The output tensor names of every op that int8_full keeps in float (its denylist), and
    the indices of subgraph 0's tensors that the quantised ops of G compute.

    Quantised: G's ops, except its head (the convolution feeding the sigmoid of F_hat, that
    sigmoid and the crop after it: F_hat must not be rounded to 8 bits, since R and the 0.5
    threshold of SRR read it), and R's convolutions. In float: everything else, i.e. the input
    scaling, R's logit arithmetic and tiling, SRR (its run counts must stay exact integers) and
    eq. 14.
    """
    ops = list(_ops(model_t))
    producer = {(op.subgraph, t): op for op in ops for t in op.outputs}
    head = set()
    for op in ops:  # in execution order: G's crop of F_hat comes after its sigmoid
        in_g = _in_scope(model_t, op, GENERATOR_SCOPE)
        feeds = [producer.get((op.subgraph, t)) for t in op.inputs]
        if in_g and any(f is not None and id(f) in head for f in feeds):
            head.add(id(op))
        elif in_g and op.name == "LOGISTIC":
            feed = feeds[0]
            if feed is not None and feed.name == "CONV_2D":  # SE sigmoids follow a dense layer
                head.update({id(op), id(feed)})
    denied, computed = [], set()
    for op in ops:
        if _in_scope(model_t, op, GENERATOR_SCOPE) and id(op) not in head:
            if op.subgraph == 0:
                computed.update(op.outputs)
            continue
        if op.name == "CONV_2D" and _in_scope(model_t, op, REFINER_SCOPE):
            continue
        tensors = model_t.subgraphs[op.subgraph].tensors
        denied.extend(tensors[t].name.decode() for t in op.outputs)
    return denied, computed


def _tail_range(values: np.ndarray, quantile: float) -> float:
    """The `quantile` of |values| (a partial sort, linear time)."""
    flat = np.abs(values.ravel())
    k = min(flat.size - 1, int(quantile * flat.size))
    return float(np.partition(flat, k)[k])


def _narrow_ranges(calibrated: bytes, tensors: set[int],
                   pairs: Sequence[tuple[np.ndarray, np.ndarray]],
                   quantile: float = RANGE_QUANTILE) -> bytes:
    """The calibrated model with the range [min, max] of each of `tensors` (subgraph 0)
    narrowed to [-r, r], r the largest over `pairs` of the `quantile` of the tensor's |values|.
    """
    interpreter = _interpreter(calibrated, None, preserve_all_tensors=True)
    runner = interpreter.get_signature_runner()
    tails: dict[int, float] = {}
    for image_a, image_b in pairs:
        runner(image_a=image_a, image_b=image_b)
        for t in tensors:
            try:
                values = interpreter.get_tensor(t)
            except ValueError:  # no data (not computed on this input)
                continue
            if values.dtype == np.float32 and values.size:
                tails[t] = max(tails.get(t, 0.0), _tail_range(values, quantile))
    del runner, interpreter
    model_t = _read_model(calibrated)
    for t, r in tails.items():
        q = model_t.subgraphs[0].tensors[t].quantization
        if q is None or q.min is None or len(q.min) != 1 or r <= 0.0:
            continue
        q.min = np.array([max(float(q.min[0]), -r)], np.float32)
        q.max = np.array([min(float(q.max[0]), r)], np.float32)
    return _write_model(model_t)


def _drop_round_trips(model: bytes) -> bytes:
    """Removes each QUANTIZE -> DEQUANTIZE pair on a float tensor whose int8 copy nothing
    else reads: it only rounds the tensor to 8 bits. The quantiser puts one after the sigmoid
    of F_hat (fixed scale 1/256) even when that sigmoid is denylisted; alone it changes F_final
    on 0.2 % of the pixels of the 20 Lytro pairs (1.2 % of the worst)."""
    from tensorflow.lite.python import schema_py_generated as schema

    model_t = _read_model(model)
    codes = [max(c.builtinCode, c.deprecatedBuiltinCode) for c in model_t.operatorCodes]
    quantize, dequantize = schema.BuiltinOperator.QUANTIZE, schema.BuiltinOperator.DEQUANTIZE
    for subgraph in model_t.subgraphs:
        operators = subgraph.operators or []
        producer = {t: op for op in operators for t in _indices(op.outputs)}
        reads: dict[int, int] = {}
        for op in operators:
            for t in _indices(op.inputs):
                reads[t] = reads.get(t, 0) + 1
        drop, rewire = set(), {}
        outputs = _indices(subgraph.outputs)
        for op in operators:
            if codes[op.opcodeIndex] != dequantize:
                continue
            (quantized,), (result,) = _indices(op.inputs), _indices(op.outputs)
            q = producer.get(quantized)
            if (q is None or codes[q.opcodeIndex] != quantize
                    or subgraph.tensors[_indices(q.inputs)[0]].type != schema.TensorType.FLOAT32
                    or reads.get(quantized, 0) != 1 or {quantized, result} & set(outputs)):
                continue
            rewire[result] = _indices(q.inputs)[0]
            drop.update({id(op), id(q)})
        if drop:
            subgraph.operators = [op for op in operators if id(op) not in drop]
            for op in subgraph.operators:
                op.inputs = [rewire.get(t, t) for t in _indices(op.inputs)]
    return _write_model(model_t)


def _mirrored(image: np.ndarray, size: int) -> np.ndarray:
    """(1, H, W, 3) mirrored out to (1, size, size, 3) (symmetric padding, repeated as
    needed), or centre-cropped where larger: the photo's statistics, with no new edges."""
    out = image
    for axis in (1, 2):
        extra = size - out.shape[axis]
        if extra > 0:
            pad = [(0, 0)] * 4
            pad[axis] = (extra // 2, extra - extra // 2)
            out = np.pad(out, pad, mode="symmetric")
        elif extra < 0:
            out = np.take(out, range(-extra // 2, -extra // 2 + size), axis=axis)
    return np.ascontiguousarray(out, np.float32)


def convert_full_integer(module: TFLiteModule, variant: str,
                         pairs: Sequence[tuple[np.ndarray, np.ndarray]],
                         quantile: float = RANGE_QUANTILE) -> bytes:
    """The "int8_full" model: G (all but its head) and R's convolutions in int8 (int8 weights,
    per channel, and int8 activations), calibrated on `pairs`; F_hat's head, R's logit
    arithmetic, SRR and eq. 14 in float32. Inputs and outputs stay float32.

    Steps: calibration (the converter records each tensor's range over the pairs), ranges of
    G's activations narrowed to their `quantile` (`_narrow_ranges`), selective quantisation
    with the ops that stay float denylisted (what `tf.lite.experimental.QuantizationDebugger`
    does with `denylisted_nodes`), then the rounding of F_hat to 8 bits removed
    (`_drop_round_trips`). Quantising everything instead changes F_final on 19 % of the
    pixels of the Lytro pairs: SRR's run counts come from a float matrix product, which int8
    clips to the range seen in calibration (docs/serving.md).

    `pairs`: (I_A, I_B), float32 (1, H, W, 3) in [0, 1] (`representative_pairs`); for the
    fixed variant they are mirrored out (or cropped) to its size.
    """
    # Calibration alone (`_experimental_calibrate_only`) and `mlir_quantize` with a denylist
    # are TensorFlow internals, the ones tf.lite.experimental.QuantizationDebugger runs; the
    # public converter has no denylist. tests/test_tflite.py checks what they produce.
    from tensorflow.lite.python import convert as lite_convert

    if variant == "fixed":
        pairs = [(_mirrored(a, module.fixed_size), _mirrored(b, module.fixed_size))
                 for a, b in pairs]

    converter = _converter(module, variant)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8,
                                           tf.lite.OpsSet.TFLITE_BUILTINS]
    converter.representative_dataset = lambda: (
        {"image_a": a, "image_b": b} for a, b in pairs)
    # The float model with the ranges seen on the pairs, not yet quantised.
    converter._experimental_calibrate_only = True  # pylint: disable=protected-access
    calibrated = converter.convert()
    denied, computed = _float_nodes(_read_model(calibrated))
    calibrated = _narrow_ranges(calibrated, computed, pairs, quantile)
    quantized = lite_convert.mlir_quantize(calibrated, denylisted_nodes=denied)
    return _drop_round_trips(quantized)


def export_tflite(generator: Generator, directory: str,
                  config: TFLiteConfig | None = None,
                  refiner: Refiner | None = None,
                  coarse_refiner: Refiner | None = None,
                  coarse_generator: Generator | None = None) -> dict[str, str]:
    """Writes every (variant, quantization) model to `directory`; returns name -> path.
    The refined and coarse-to-fine modes need the refinement head `refiner`. With
    `coarse_refiner` (refined mode), G runs on the sources box-averaged to a shorter side of
    at most `inference.DEFAULT_G_SIDE` (`coarse_generator` there, when given, instead of
    G) and that R redraws the outline, as in `fuse`: the
    fixed-size model fixes the factor when it is built, the dynamic one picks it when it runs
    (a LiteRT IF op between the two Rs)."""
    config = config or TFLiteConfig()
    config.validate()
    os.makedirs(directory, exist_ok=True)
    module = TFLiteModule(generator, config.fixed_size, config.min_size_fraction,
                          config.scales, config.mode, refiner, config.working_side,
                          coarse_refiner, coarse_generator=coarse_generator)
    pairs = None
    if FULL_INTEGER in config.quantizations:  # one set for both variants
        pairs = representative_pairs(config.representative_dir, config.representative_pairs,
                                     min(config.fixed_size, REPRESENTATIVE_SIZE))
    paths = {}
    for variant in config.variants:
        float32 = None  # converted once: the float16 model is made from it
        for quantization in sorted(config.quantizations, key=lambda q: q != "float32"):
            name = model_filename(variant, quantization, config.fixed_size)
            path = os.path.join(directory, name)
            model = convert(module, variant, quantization, pairs, float32)
            if quantization == "float32":
                float32 = model
            with open(path, "wb") as f:
                f.write(model)
            paths[name] = path
    return paths


# ---------------------------------------------------------------- running the models


def op_names(model: str | bytes) -> set[str]:
    """Operator names used anywhere in a .tflite model (path or bytes), loop bodies included,
    e.g. {"CONV_2D", "WHILE", "UNSORTED_SEGMENT_MIN"}; custom ops (Flex among them) appear as
    "CUSTOM:<name>"."""
    from tensorflow.lite.python import schema_py_generated as schema

    if isinstance(model, (str, os.PathLike)):
        with open(model, "rb") as f:
            model = f.read()
    flatbuffer = schema.Model.GetRootAs(bytearray(model), 0)
    names = {code: name for name, code in vars(schema.BuiltinOperator).items()
             if not name.startswith("_")}
    ops = set()
    for i in range(flatbuffer.OperatorCodesLength()):
        code = flatbuffer.OperatorCodes(i)
        custom = code.CustomCode()
        if custom:
            ops.add("CUSTOM:" + custom.decode())
        else:
            builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
            ops.add(names.get(builtin, str(builtin)))
    return ops


def _interpreter(model: str | bytes, num_threads: int | None, preserve_all_tensors: bool = False):
    from ai_edge_litert.interpreter import Interpreter

    kwargs = dict(num_threads=num_threads,
                  experimental_preserve_all_tensors=preserve_all_tensors)
    if isinstance(model, bytes):
        return Interpreter(model_content=model, **kwargs)
    return Interpreter(model_path=model, **kwargs)


class TFLiteFuser:
    """Runs one MFIF-GAN .tflite model with the LiteRT interpreter.

    Args:
      model: path to a .tflite file, or its bytes.
      num_threads: interpreter threads (None: LiteRT's default).
    """

    def __init__(self, model: str | bytes, num_threads: int | None = None):
        self.interpreter = _interpreter(model, num_threads)
        self.runner = self.interpreter.get_signature_runner()
        inputs = self.runner.get_input_details()
        if set(inputs) != {"image_a", "image_b"}:
            raise ValueError(f"not an MFIF-GAN model: inputs {sorted(inputs)}")
        self.input_shape = tuple(int(s) for s in inputs["image_a"]["shape_signature"])

    @property
    def fixed_size(self) -> tuple[int, int] | None:
        """(H, W) of a fixed-size model, None for a dynamic one."""
        h, w = self.input_shape[1:3]
        return None if h < 0 or w < 0 else (h, w)

    def __call__(self, image_a: np.ndarray, image_b: np.ndarray) -> dict[str, np.ndarray]:
        """Fuses one pair of float RGB images in [0, 1], (H, W, 3) or (1, H, W, 3)."""
        a, b = _as_batch(image_a, "image_a"), _as_batch(image_b, "image_b")
        if a.shape != b.shape:
            raise ValueError(f"image_a and image_b must have the same shape, got {a.shape} "
                             f"and {b.shape}")
        fixed = self.fixed_size
        if fixed is not None and a.shape[1:3] != fixed:
            raise ValueError(f"this model takes {fixed[0]}x{fixed[1]} images, got "
                             f"{a.shape[1]}x{a.shape[2]}; resize them or use the dynamic model")
        # The signature runner resizes the inputs of a dynamic model when the shape changes.
        return dict(self.runner(image_a=a, image_b=b))


def _as_batch(image: np.ndarray, name: str) -> np.ndarray:
    x = np.asarray(image)
    if x.ndim == 3:
        x = x[np.newaxis]
    if x.ndim != 4 or x.shape[0] != 1 or x.shape[-1] != 3:
        raise ValueError(f"{name} must be one RGB image, (H, W, 3) or (1, H, W, 3); got shape "
                         f"{x.shape}")
    if not np.issubdtype(x.dtype, np.floating):
        raise ValueError(f"{name} must be float in [0, 1] (divide uint8 by 255), got {x.dtype}")
    x = x.astype(np.float32)
    if not (np.isfinite(x).all() and x.min() >= 0.0 and x.max() <= 1.0):
        raise ValueError(f"{name} must hold values in [0, 1], got [{x.min()}, {x.max()}]")
    return x
