"""The TF Serving graphs of MFIF-GAN: decoding, scaling, F_hat, SRR and eq. 14 in one SavedModel.

Symbols: `image_a`, `image_b` are the sources I_A and I_B; `focus_map_raw` is F_hat in
[0, 1], built by `mfif_tf.inference` in the export's mode (refined by default: G's
full-resolution pass, optionally averaged over `scales`, its outline redrawn by the
refinement head R; paper: the pass alone; coarse_to_fine: G at a working resolution and R up
to full resolution), the same graph `mfif_tf.fuse` runs; `focus_map` is F_final, F_hat
binarised at 0.5 with regions of fewer than N = `min_size_fraction` * W * H pixels removed
(SRR, section 3.3, 0.001 in the paper); `fused` is I_fused = I_A * F_final + I_B *
(1 - F_final) (eq. 14).

Every exported graph runs one core, `FusionModule.serve`: float sources in [0, 1] -> F_hat
-> SRR -> F_final -> eq. 14 (the TFLite models of export/tflite.py too). What differs between
the signatures is read from one table, `SIGNATURES`: each entry names a signature, its input
kind (`InputKind`: the TensorSpec of `image_a` and `image_b`, how they are checked and
decoded into [0, 1] floats, how the outputs are encoded) and whether the request gives
`min_size_fraction`. `ServingModule` builds every signature by looping over the table
(docs/serving.md lists them):

  serving_default   uint8 image tensors in [0, 255], N = 0.001 W H
  fuse_float        float32 image tensors in [0, 1], N = 0.001 W H
  fuse_bytes        encoded JPEG/PNG strings -> encoded PNGs (`*_bytes` outputs)
  fuse_srr, fuse_float_srr, fuse_bytes_srr
                    the same three with a required `min_size_fraction` input

TF Serving's REST front end asks for every input of a signature, so SRR's N is not an
optional input of `serving_default` but a separate signature per input kind.

Bad input (sources of different sizes, a channel count other than 1 or 3, values outside
[0, 1], bytes that are not JPEG or PNG, a truncated JPEG or PNG, a PNG larger than the
decoder takes, a bad `min_size_fraction`) stops the graph with an InvalidArgumentError that
names the problem (and for encoded images the input and the pair), before G runs.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import tensorflow as tf

from mfif_tf import inference
from mfif_tf import scales as scales_lib
from mfif_tf.inference import (  # noqa: F401 (re-exported for users of this module)
    MIN_IMAGE_SIDE,
    PAPER_MIN_SIZE_FRACTION,
    fuse,
    min_size_from_fraction,
    to_rgb,
)
from mfif_tf.networks import Generator
from mfif_tf.refiner import Refiner
from mfif_tf.srr import small_region_removal

_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_JPEG_SOS, _JPEG_EOI = b"\xff\xda", b"\xff\xd9"  # start of scan, end of image
# PNG sizes TensorFlow's decoder takes: libpng's default limit per side, and fewer than 2^29
# pixels (DecodeImage's own limit).
PNG_MAX_SIDE = 1_000_000
PNG_MAX_PIXELS = (1 << 29) - 1


# ---------------------------------------------------------------- the fusion itself


def predict_focus(generator: Any, image_a: tf.Tensor, image_b: tf.Tensor,
                  scales: tuple[float, ...] = (1.0,), mode: str = "paper",
                  refiner: Any = None,
                  working_side: int = inference.DEFAULT_WORKING_SIDE,
                  coarse_refiner: Any = None,
                  g_side: int = inference.DEFAULT_G_SIDE,
                  coarse_generator: Any = None) -> tf.Tensor:
    """F_hat for float sources in [0, 1] of shape (N, H, W, 1 or 3), by `mfif_tf.inference`.

    G (a `Generator` or a `ModelHolder`) sees the sources concatenated on channels and
    scaled to [-1, 1]. Mode "paper": one full-resolution pass, or the mean over `scales`;
    "refined": that map, its outline redrawn by R (a `Refiner` or a `ModelHolder`);
    "coarse_to_fine": G at `working_side`, then R. In mode refined with `coarse_refiner`, G
    runs on sources box-averaged by `common.g_factor` (above 3/4 of `g_side`;
    `coarse_generator`, when given, instead of G there) and `coarse_refiner` redraws the
    outline of such maps (`inference.focus_map`).
    Returns float32 (N, H, W, 1) in [0, 1].
    """
    if isinstance(generator, Generator):
        generator = ModelHolder(generator)
    if isinstance(refiner, Refiner):
        refiner = ModelHolder(refiner)
    if isinstance(coarse_refiner, Refiner):
        coarse_refiner = ModelHolder(coarse_refiner)
    if isinstance(coarse_generator, Generator):
        coarse_generator = ModelHolder(coarse_generator)
    coarse_predict = (inference.generator_predict(coarse_generator)
                      if coarse_generator is not None else None)
    return inference.focus_map(inference.generator_predict(generator), image_a, image_b, mode,
                               refiner=refiner, working_side=working_side, scales=scales,
                               coarse_refiner=coarse_refiner, g_side=g_side,
                               coarse_predict=coarse_predict)


def remove_small_regions_per_pair(focus_map_raw: tf.Tensor, min_sizes: tf.Tensor) -> tf.Tensor:
    """SRR (section 3.3) of each map of (N, H, W, 1) with its own N from `min_sizes` (N,)."""
    return tf.map_fn(
        lambda args: small_region_removal(args[0], min_size=args[1]),
        (focus_map_raw, min_sizes),
        fn_output_signature=tf.TensorSpec([None, None, 1], tf.float32),
    )


# ---------------------------------------------------------------- input checks


def _assert(condition: tf.Tensor, data: list) -> tf.Operation:
    """tf.debugging.Assert printing whole shapes (its default shows 3 numbers)."""
    return tf.debugging.Assert(condition, data, summarize=8)


def _check_pair(image_a: tf.Tensor, image_b: tf.Tensor) -> list[tf.Operation]:
    """Assertions on a batch of pairs (N, H, W, C): same shape, C in {1, 3}, sides >= 2."""
    shape_a, shape_b = tf.shape(image_a), tf.shape(image_b)
    return [
        tf.debugging.assert_equal(
            shape_a, shape_b,
            message="image_a and image_b must have the same shape "
                    "(batch, height, width, channels)", summarize=4),
        _assert(
            tf.logical_or(tf.equal(shape_a[3], 3), tf.equal(shape_a[3], 1)),
            ["images must have 3 channels (RGB) or 1 (grey); got shape (N, H, W, C) =",
             shape_a]),
        _assert(
            tf.reduce_all(shape_a[1:3] >= MIN_IMAGE_SIDE),
            [f"images must be at least {MIN_IMAGE_SIDE}x{MIN_IMAGE_SIDE} pixels; got shape "
             "(N, H, W, C) =", shape_a]),
        _assert(
            shape_a[0] >= 1, ["the batch holds no image pair; got shape (N, H, W, C) =", shape_a]),
    ]


def _check_unit_range(image: tf.Tensor, name: str) -> tf.Operation:
    ok = tf.reduce_all(tf.logical_and(image >= 0.0, image <= 1.0))  # False for NaN too
    return _assert(
        ok, [f"{name} must hold float values in [0, 1] (use serving_default for uint8 "
             "0..255); got min and max", tf.reduce_min(image), tf.reduce_max(image)])


def _fractions_per_pair(min_size_fraction: tf.Tensor, batch: tf.Tensor):
    """`min_size_fraction` (a scalar, or one value per pair) as an (N,) vector, and checks."""
    values = tf.reshape(min_size_fraction, [-1])
    size = tf.size(values)
    checks = [
        _assert(
            tf.logical_or(tf.equal(size, 1), tf.equal(size, batch)),
            ["min_size_fraction must be one number or one per image pair; got", size,
             "values for", batch, "pairs"]),
        _assert(
            tf.reduce_all(tf.logical_and(values >= 0.0, values <= 1.0)),
            ["min_size_fraction must lie in [0, 1] (0.001 in the paper; 0 turns SRR off); got",
             values]),
    ]
    with tf.control_dependencies(checks):
        return tf.broadcast_to(values, [batch])


def _contains(data: tf.Tensor, pattern: bytes) -> tf.Tensor:
    return tf.size(tf.strings.split(data, pattern)) > 1


def _check_encoded(data: tf.Tensor, name: str, index: tf.Tensor) -> list[tf.Operation]:
    """Assertions on one encoded image, naming the input and the pair: JPEG or PNG, not cut
    short (the decoder's own errors name neither), a PNG size the decoder takes."""
    is_jpeg = tf.io.is_jpeg(data)
    is_png = tf.equal(tf.strings.substr(data, 0, len(_PNG_MAGIC)), _PNG_MAGIC)
    # A JPEG's image data ends with the end-of-image marker; the marker bytes cannot occur
    # inside the (byte-stuffed) data of the last scan.
    last_scan = tf.strings.split(data, _JPEG_SOS)[-1]
    # Width and height: big-endian in the IHDR chunk, bytes 16-23 (zeros pad a short file).
    header = tf.io.decode_raw(
        tf.strings.substr(tf.strings.join([data, b"\0" * 24]), 16, 8), tf.uint8)
    header = tf.cast(header, tf.int64)
    width = header[0] * 2 ** 24 + header[1] * 2 ** 16 + header[2] * 2 ** 8 + header[3]
    height = header[4] * 2 ** 24 + header[5] * 2 ** 16 + header[6] * 2 ** 8 + header[7]
    png_size_ok = tf.logical_and(tf.maximum(width, height) <= PNG_MAX_SIDE,
                                 width * height <= PNG_MAX_PIXELS)
    return [
        _assert(
            tf.logical_or(is_jpeg, is_png),
            [f"{name} of pair", index, "is not a JPEG or PNG image (undecodable bytes)"]),
        _assert(
            tf.logical_or(tf.logical_not(is_jpeg), _contains(last_scan, _JPEG_EOI)),
            [f"{name} of pair", index, "is a truncated JPEG (no end-of-image marker after its "
             "image data)"]),
        _assert(
            tf.logical_or(tf.logical_not(is_png), _contains(data, b"IEND")),
            [f"{name} of pair", index, "is a truncated PNG (no IEND chunk)"]),
        _assert(
            tf.logical_or(tf.logical_not(is_png), png_size_ok),
            [f"{name} of pair", index, "is a PNG of width and height", width, height,
             f"pixels, more than the decoder takes ({PNG_MAX_SIDE} pixels a side, "
             f"{PNG_MAX_PIXELS} pixels)"]),
    ]


# ---------------------------------------------------------------- G and R in a module


def decode_rgb(data: tf.Tensor) -> tf.Tensor:
    """Encoded JPEG, PNG, BMP or GIF bytes -> (H, W, 3) uint8, grey tripled to RGB (section
    4.1.2). JPEGs are decoded with the accurate integer inverse DCT, as Pillow (and so
    `mfif_tf.fuse`) decodes them, not with TensorFlow's default fast one, so that the
    `fuse_bytes` signatures see the pixels `fuse` sees."""
    return tf.cond(
        tf.io.is_jpeg(data),
        lambda: tf.io.decode_jpeg(data, channels=3, dct_method="INTEGER_ACCURATE"),
        lambda: tf.io.decode_image(data, channels=3, dtype=tf.uint8, expand_animations=False))


class ModelHolder:
    """Calls G (or R) without making it a child of a `tf.Module`.

    Saving a `tf.Module` that holds the Keras 3 model itself writes a SavedModel whose
    TF1-style restore op (what TF Serving's C++ loader and the TFLite converter run) misses
    the Keras variables: TF Serving fails with "Could not find variable", the converter keeps
    uninitialised VAR_HANDLE ops. Modules therefore keep G in this holder and track the
    plain `tf.Variable`s underneath its Keras variables (`model_variables(generator)`).
    """

    def __init__(self, model: Generator | Refiner):
        self.model = model

    @property
    def halo(self) -> int:
        """R's halo (`Refiner.halo`)."""
        return self.model.halo

    @property
    def config(self):
        """R's config (`Refiner.config`: its band's grow)."""
        return self.model.config

    def __call__(self, x: tf.Tensor) -> tf.Tensor:
        return self.model(x, training=False)


GeneratorHolder = ModelHolder


def model_variables(model: Generator | Refiner | None) -> list[tf.Variable]:
    """The `tf.Variable`s under G's (or R's) Keras variables, for a module to track."""
    if model is None:
        return []
    return [v.value if hasattr(v, "value") and isinstance(v.value, tf.Variable) else v
            for v in model.variables]


class FusionModule(tf.Module):
    """Holds G (and R) and the core of every exported graph, `serve`.

    Args:
      generator: the trained G.
      min_size_fraction: SRR's N / (W * H) where a request does not give it (0.001, section
        3.3).
      scales: modes "refined" and "paper": G's map is the mean of its maps at these scales
        (`mfif_tf.scales`).
      mode: "refined" (G at full resolution, then R), "paper" (G alone) or
        "coarse_to_fine" (G at `working_side`, then R); `mfif_tf.inference`.
      refiner: R (modes refined and coarse_to_fine).
      working_side: the working resolution's shorter side (coarse-to-fine mode).
      coarse_refiner: refined mode: the R for G below full size (`inference.focus_map`);
        None runs G at full size whatever the size.
      g_side: refined mode with `coarse_refiner`: the largest shorter side G runs at.
      coarse_generator: refined mode with `coarse_refiner`: the G that runs below full size
        (None: `generator` there too).
      name: the module's name.
    """

    def __init__(self, generator: Generator, min_size_fraction: float = PAPER_MIN_SIZE_FRACTION,
                 scales: tuple[float, ...] = (1.0,), mode: str = inference.DEFAULT_MODE,
                 refiner: Refiner | None = None,
                 working_side: int = inference.DEFAULT_WORKING_SIDE,
                 name: str = "mfif_fusion", coarse_refiner: Refiner | None = None,
                 g_side: int = inference.DEFAULT_G_SIDE,
                 coarse_generator: Generator | None = None):
        super().__init__(name=name)
        if not 0.0 <= float(min_size_fraction) <= 1.0:
            raise ValueError(f"min_size_fraction must lie in [0, 1], got {min_size_fraction}")
        self.scales = scales_lib.parse_scales(scales)
        self.mode = inference.check_mode(mode)
        self.working_side = inference.check_working_side(working_side)
        if self.mode != "paper" and refiner is None:
            raise ValueError(f"{self.mode} mode needs the refinement head (refiner)")
        self.generator = ModelHolder(generator)
        self.generator_variables = model_variables(generator)
        self.refiner = ModelHolder(refiner) if self.mode != "paper" else None
        self.refiner_variables = model_variables(refiner if self.mode != "paper" else None)
        use_coarse = self.mode == "refined" and coarse_refiner is not None
        self.g_side = inference.check_g_side(g_side)
        self.coarse_refiner = ModelHolder(coarse_refiner) if use_coarse else None
        self.coarse_refiner_variables = model_variables(coarse_refiner if use_coarse else None)
        use_coarse_g = use_coarse and coarse_generator is not None
        self.coarse_generator = ModelHolder(coarse_generator) if use_coarse_g else None
        self.coarse_generator_variables = model_variables(
            coarse_generator if use_coarse_g else None)
        self.min_size_fraction = float(min_size_fraction)

    def predict_focus(self, image_a: tf.Tensor, image_b: tf.Tensor) -> tf.Tensor:
        """F_hat of the module's mode for float sources in [0, 1]."""
        return predict_focus(self.generator, image_a, image_b, self.scales, self.mode,
                             self.refiner, self.working_side, self.coarse_refiner, self.g_side,
                             self.coarse_generator)

    def serve(self, image_a: tf.Tensor, image_b: tf.Tensor,
              min_size: Any) -> dict[str, tf.Tensor]:
        """Sources -> F_hat -> SRR -> F_final -> eq. 14, with no input checks.

        Args:
          image_a, image_b: float32 sources in [0, 1], (N, H, W, C) with C = 1 or 3.
          min_size: SRR's N: one for every map (a number or a scalar tensor), or one per pair
            (a vector of N values).

        Returns:
          `fused` (I_fused, float32 in [0, 1], (N, H, W, C)), `focus_map` (F_final, float32
          0 or 1, (N, H, W, 1)) and `focus_map_raw` (F_hat in [0, 1], (N, H, W, 1)).
        """
        f_hat = self.predict_focus(image_a, image_b)
        if tf.TensorShape(getattr(min_size, "shape", ())).rank == 0:
            f_final = small_region_removal(f_hat, min_size=min_size)
        else:
            f_final = remove_small_regions_per_pair(f_hat, min_size)
        return {"fused": fuse(image_a, image_b, f_final), "focus_map": f_final,
                "focus_map_raw": f_hat}


# ---------------------------------------------------------------- the signature table


@dataclasses.dataclass(frozen=True)
class InputKind:
    """How one kind of request reaches `FusionModule.serve` and how its answer leaves it.

    Attributes:
      name: the kind's name; the signatures of one kind share one traced graph.
      image: TensorSpec of `image_a` and of `image_b`.
      decode: `decode(image_a, image_b)` -> float32 sources in [0, 1], (N, H, W, C), after
        the input checks (assertions that name the problem). Kinds with `pair_outputs` are
        decoded pair by pair: `decode(image_a[i], image_b[i], i)` -> (1, H, W, C).
      encode: `serve`'s outputs (`fused`, `focus_map`, `focus_map_raw`) -> the signature's
        outputs (of one pair for kinds with `pair_outputs`).
      pair_outputs: for kinds whose pairs are decoded, fused and encoded one by one (each
        pair may then have its own size): the TensorSpec of each output of one pair. None:
        the whole batch goes through `serve` at once.
      check_batch: kinds with `pair_outputs`: `check_batch(image_a, image_b)` -> assertions
        on the whole batch, run before any pair.
    """

    name: str
    image: tf.TensorSpec
    decode: Callable[..., tuple[tf.Tensor, tf.Tensor]]
    encode: Callable[[dict[str, tf.Tensor]], dict[str, tf.Tensor]]
    pair_outputs: dict[str, tf.TensorSpec] | None = None
    check_batch: Callable[[tf.Tensor, tf.Tensor], list[tf.Operation]] | None = None

    @property
    def per_pair(self) -> bool:
        return self.pair_outputs is not None


# `min_size_fraction`: one number, or one per pair.
FRACTION_SPEC = tf.TensorSpec(None, tf.float32)


@dataclasses.dataclass(frozen=True)
class Signature:
    """One serving signature: its name, its input kind and whether the request gives SRR's
    `min_size_fraction` (else the export's value is used)."""

    name: str
    kind: InputKind
    fraction_input: bool = False

    @property
    def inputs(self) -> dict[str, tf.TensorSpec]:
        """The signature's inputs, in the order of its function's arguments."""
        specs = {"image_a": self.kind.image, "image_b": self.kind.image}
        if self.fraction_input:
            specs["min_size_fraction"] = FRACTION_SPEC
        return specs


def _decode_uint8(image_a: tf.Tensor, image_b: tf.Tensor):
    """uint8 pixels 0..255, after the pair checks, divided by 255."""
    with tf.control_dependencies(_check_pair(image_a, image_b)):
        a = tf.cast(image_a, tf.float32)
        b = tf.cast(image_b, tf.float32)
    return a / 255.0, b / 255.0


def _encode_uint8(outputs: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
    # F_final is 0 or 1, so eq. 14 picks whole pixels and the rounding is exact.
    return {**outputs, "fused": tf.saturate_cast(tf.round(outputs["fused"] * 255.0), tf.uint8)}


def _decode_float(image_a: tf.Tensor, image_b: tf.Tensor):
    """float pixels in [0, 1] as they are, after the pair and range checks."""
    checks = _check_pair(image_a, image_b)
    with tf.control_dependencies(checks):
        checks = [_check_unit_range(image_a, "image_a"), _check_unit_range(image_b, "image_b")]
    with tf.control_dependencies(checks):
        return tf.identity(image_a), tf.identity(image_b)


def _encode_float(outputs: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
    return outputs


def _check_encoded_batch(image_a: tf.Tensor, image_b: tf.Tensor) -> list[tf.Operation]:
    count_a, count_b = tf.size(image_a), tf.size(image_b)
    return [
        _assert(
            tf.equal(count_a, count_b),
            ["image_a and image_b must hold the same number of images; got", count_a,
             "and", count_b]),
        _assert(count_a >= 1, ["the batch holds no image pair"]),
    ]


def _decode_encoded_pair(data_a: tf.Tensor, data_b: tf.Tensor, index: tf.Tensor):
    """Pair `index` of JPEG/PNG strings -> (1, H, W, 3) divided by 255, after checks on the
    bytes and the decoded sizes that name the input and the pair."""
    checks = _check_encoded(data_a, "image_a", index) + _check_encoded(data_b, "image_b",
                                                                         index)
    with tf.control_dependencies(checks):
        a, b = decode_rgb(data_a), decode_rgb(data_b)
    shape_a, shape_b = tf.shape(a), tf.shape(b)
    checks = [
        _assert(
            tf.reduce_all(tf.equal(shape_a, shape_b)),
            ["image_a and image_b of pair", index, "must have the same size; got (H, W, C)",
             shape_a, "and", shape_b]),
        _assert(
            tf.reduce_all(shape_a[:2] >= MIN_IMAGE_SIDE),
            ["images of pair", index, f"must be at least {MIN_IMAGE_SIDE}x{MIN_IMAGE_SIDE} "
             "pixels; got (H, W, C)", shape_a]),
    ]
    with tf.control_dependencies(checks):
        a = tf.cast(a, tf.float32)[tf.newaxis]
        b = tf.cast(b, tf.float32)[tf.newaxis]
    return a / 255.0, b / 255.0


def _png(image: tf.Tensor) -> tf.Tensor:
    """One image of a batch of one, in [0, 1] -> 8-bit PNG."""
    return tf.io.encode_png(tf.saturate_cast(tf.round(image[0] * 255.0), tf.uint8))


def _encode_png_pair(outputs: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
    # fused: RGB; the maps: grey, F_final as 0/255 and round(255 F_hat).
    return {f"{name}_bytes": _png(value) for name, value in outputs.items()}


_IMAGES = lambda dtype: tf.TensorSpec([None, None, None, None], dtype)  # noqa: E731
_PNG_OUT = tf.TensorSpec([], tf.string)

UINT8 = InputKind("uint8", _IMAGES(tf.uint8), _decode_uint8, _encode_uint8)
FLOAT = InputKind("float", _IMAGES(tf.float32), _decode_float, _encode_float)
ENCODED = InputKind(
    "encoded", tf.TensorSpec([None], tf.string), _decode_encoded_pair, _encode_png_pair,
    pair_outputs={"fused_bytes": _PNG_OUT, "focus_map_bytes": _PNG_OUT,
                  "focus_map_raw_bytes": _PNG_OUT},
    check_batch=_check_encoded_batch)

# Every signature of the SavedModel; a new input format is one InputKind and its entries.
SIGNATURES: tuple[Signature, ...] = (
    Signature("serving_default", UINT8),
    Signature("fuse_float", FLOAT),
    Signature("fuse_bytes", ENCODED),
    Signature("fuse_srr", UINT8, fraction_input=True),
    Signature("fuse_float_srr", FLOAT, fraction_input=True),
    Signature("fuse_bytes_srr", ENCODED, fraction_input=True),
)


# ---------------------------------------------------------------- the serving module


class ServingModule(FusionModule):
    """G (and R) with one `tf.function` per entry of `signatures`; `signatures()` maps the
    names to them.

    Args:
      generator, scales, mode, refiner, working_side, coarse_refiner, g_side,
      coarse_generator: as `FusionModule`.
      min_size_fraction: the N / (W * H) of the signatures without a `min_size_fraction`
        input (0.001, section 3.3).
      signatures: the signature table (`SIGNATURES`).
    """

    def __init__(self, generator: Generator, min_size_fraction: float = PAPER_MIN_SIZE_FRACTION,
                 scales: tuple[float, ...] = (1.0,), mode: str = inference.DEFAULT_MODE,
                 refiner: Refiner | None = None,
                 working_side: int = inference.DEFAULT_WORKING_SIDE,
                 signatures: tuple[Signature, ...] = SIGNATURES,
                 coarse_refiner: Refiner | None = None,
                 g_side: int = inference.DEFAULT_G_SIDE,
                 coarse_generator: Generator | None = None):
        super().__init__(generator, min_size_fraction, scales, mode, refiner, working_side,
                         name="mfif_serving", coarse_refiner=coarse_refiner, g_side=g_side,
                         coarse_generator=coarse_generator)
        names = [s.name for s in signatures]
        if len(set(names)) != len(names):
            raise ValueError(f"signature names must be unique, got {names}")
        # One traced graph per input kind; the signatures without a min_size_fraction input
        # call it with the export's value.
        kinds: dict[str, InputKind] = {}
        kind_functions: dict[str, Any] = {}
        signature_functions: dict[str, Any] = {}
        for signature in signatures:
            kind = kinds.setdefault(signature.kind.name, signature.kind)
            if kind is not signature.kind:
                raise ValueError(f"two input kinds are named {kind.name!r}")
            if kind.name not in kind_functions:
                kind_functions[kind.name] = tf.function(
                    self._kind_function(kind),
                    input_signature=[kind.image, kind.image, FRACTION_SPEC])
            signature_functions[signature.name] = tf.function(
                self._signature_function(signature, kind_functions[kind.name]),
                input_signature=list(signature.inputs.values()))
        self.kind_functions = kind_functions
        self.signature_functions = signature_functions

    def signatures(self) -> dict[str, Any]:
        return dict(self.signature_functions)

    def _signature_function(self, signature: Signature, kind_function: Any):
        """The signature's Python function; its argument names are the input names."""
        if signature.fraction_input:
            def fuse_with_fraction(image_a, image_b, min_size_fraction):
                return kind_function(image_a, image_b, min_size_fraction)

            function = fuse_with_fraction
        else:
            default = self.min_size_fraction

            def fuse_with_default(image_a, image_b):
                return kind_function(image_a, image_b, tf.constant(default, tf.float32))

            function = fuse_with_default
        function.__name__ = signature.name  # names the graph function (and its errors)
        return function

    def _kind_function(self, kind: InputKind):
        def fuse_kind(image_a, image_b, min_size_fraction):
            return self.fuse_request(kind, image_a, image_b, min_size_fraction)

        fuse_kind.__name__ = f"fuse_{kind.name}"
        return fuse_kind

    def fuse_request(self, kind: InputKind, image_a: tf.Tensor, image_b: tf.Tensor,
                     min_size_fraction: tf.Tensor) -> dict[str, tf.Tensor]:
        """A request of `kind`: decode into [0, 1], SRR's N per pair from `min_size_fraction`
        (a number, or one per pair), `serve`, encode."""
        if not kind.per_pair:
            a, b = kind.decode(image_a, image_b)
            shape = tf.shape(a)
            fractions = _fractions_per_pair(min_size_fraction, shape[0])
            min_sizes = min_size_from_fraction(fractions, shape[1], shape[2])
            return kind.encode(self.serve(a, b, min_sizes))

        checks = kind.check_batch(image_a, image_b) if kind.check_batch else []
        with tf.control_dependencies(checks):
            count = tf.shape(image_a)[0]
            fractions = _fractions_per_pair(min_size_fraction, count)

        def one_pair(args):
            index, data_a, data_b, fraction = args
            a, b = kind.decode(data_a, data_b, index)
            shape = tf.shape(a)
            n = tf.reshape(min_size_from_fraction(fraction, shape[1], shape[2]), [])
            return kind.encode(self.serve(a, b, n))

        # Pairs are fused one by one, so each pair may have its own size.
        return tf.map_fn(one_pair, (tf.range(count), image_a, image_b, fractions),
                         fn_output_signature=kind.pair_outputs)


def save_serving_model(generator: Generator, directory: str,
                       min_size_fraction: float = PAPER_MIN_SIZE_FRACTION,
                       scales: tuple[float, ...] = (1.0,), mode: str = inference.DEFAULT_MODE,
                       refiner: Refiner | None = None,
                       working_side: int = inference.DEFAULT_WORKING_SIDE,
                       coarse_refiner: Refiner | None = None,
                       g_side: int = inference.DEFAULT_G_SIDE,
                       coarse_generator: Generator | None = None) -> str:
    """Writes the SavedModel with all serving signatures to `directory` (must not exist);
    refined mode with `coarse_refiner` runs G (or `coarse_generator`) at a shorter side of
    at most `g_side`."""
    module = ServingModule(generator, min_size_fraction, scales, mode, refiner, working_side,
                           coarse_refiner=coarse_refiner, g_side=g_side,
                           coarse_generator=coarse_generator)
    tf.saved_model.save(module, directory, signatures=module.signatures())
    return directory
