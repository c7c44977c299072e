"""TFLite (LiteRT) models of MFIF-GAN for phones: G, SRR and eq. 14 as built-in ops only.

Every model takes two float32 RGB images in [0, 1], `image_a` (I_A) and `image_b` (I_B), of
shape (1, H, W, 3), and returns `fused` (I_fused of eq. 14, float32 in [0, 1], (1, H, W, 3)),
`focus_map` (F_final, float32 0/1, (1, H, W, 1)) and `focus_map_raw` (F_hat, float32 in
[0, 1], built by `mfif_tf.inference` in the export's mode: refined by default, G at full
resolution and its outline redrawn by the refinement head R). SRR uses the paper's
N = ceil(0.001 * W * H) (section 3.3).

Variants: "dynamic" (any H and W: resize the inputs before `allocate_tensors`) and "fixed"
(1 x S x S x 3, for delegates that want static shapes), each as "float32", "float16" (weights
stored as float16) and "int8" (dynamic-range quantisation: int8 weights, float activations).
The graphs contain no assertions (LiteRT has no Assert op); `TFLiteFuser` checks the inputs
on the host instead. The graph is the SavedModel's core, `export.serving.FusionModule.serve`,
with N computed from the model's fixed or dynamic input size.
"""

from __future__ import annotations

import dataclasses
import os
import numpy as np
import tensorflow as tf

from export.serving import FusionModule
from mfif_tf import inference
from mfif_tf.inference import PAPER_MIN_SIZE_FRACTION
from mfif_tf.layers import subpixel_upsampling
from mfif_tf.networks import Generator
from mfif_tf.refiner import Refiner
from mfif_tf.scales import parse_scales
from mfif_tf.srr import default_min_size

QUANTIZATIONS = ("float32", "float16", "int8")
VARIANTS = ("dynamic", "fixed")
OUTPUTS = ("fused", "focus_map", "focus_map_raw")


@dataclasses.dataclass
class TFLiteConfig:
    """What `export_tflite` writes.

    Attributes:
      fixed_size: side S of the fixed-size model (1 x S x S x 3).
      variants: subset of ("dynamic", "fixed").
      quantizations: subset of ("float32", "float16", "int8").
      min_size_fraction: N / (W * H) of SRR (0.001, section 3.3).
      scales: modes "refined" and "paper": G's map is the mean of its maps at these scales
        (`mfif_tf.scales`).
      mode: "refined", "paper" or "coarse_to_fine" (`mfif_tf.inference`).
      working_side: coarse-to-fine: shorter side of G's working resolution.
    """

    fixed_size: int = 512
    variants: tuple[str, ...] = VARIANTS
    quantizations: tuple[str, ...] = QUANTIZATIONS
    min_size_fraction: float = PAPER_MIN_SIZE_FRACTION
    scales: tuple[float, ...] | str = (1.0,)
    mode: str = inference.DEFAULT_MODE
    working_side: int = inference.DEFAULT_WORKING_SIDE

    def validate(self) -> None:
        try:
            self.scales = parse_scales(self.scales)
            inference.check_mode(self.mode)
            inference.check_working_side(self.working_side)
        except ValueError as err:
            raise ValueError(f"scales: {err}" if "scale" in str(err) else str(err)) from None
        if self.fixed_size < 2:
            raise ValueError(f"fixed_size must be at least 2, got {self.fixed_size}")
        for v in self.variants:
            if v not in VARIANTS:
                raise ValueError(f"unknown TFLite variant {v!r}; choose from {VARIANTS}")
        for q in self.quantizations:
            if q not in QUANTIZATIONS:
                raise ValueError(f"unknown quantization {q!r}; choose from {QUANTIZATIONS}")
        if not 0.0 <= self.min_size_fraction <= 1.0:
            raise ValueError(f"min_size_fraction must lie in [0, 1], got {self.min_size_fraction}")


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


class TFLiteModule(FusionModule):
    """G with SRR and eq. 14 (`FusionModule.serve`, the SavedModel's core) for float32 [0, 1]
    RGB sources; `function(variant)` gives the concrete function to convert."""

    def __init__(self, generator: Generator, fixed_size: int = 512,
                 min_size_fraction: float = PAPER_MIN_SIZE_FRACTION,
                 scales: tuple[float, ...] = (1.0,), mode: str = inference.DEFAULT_MODE,
                 refiner: Refiner | None = None,
                 working_side: int = inference.DEFAULT_WORKING_SIDE):
        super().__init__(generator, min_size_fraction, scales, mode, refiner, working_side,
                         name="mfif_tflite")
        self.fixed_size = int(fixed_size)

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


def convert(module: TFLiteModule, variant: str, quantization: str) -> bytes:
    """One .tflite flatbuffer, built-in ops only (conversion fails rather than use Flex)."""
    if quantization not in QUANTIZATIONS:
        raise ValueError(f"unknown quantization {quantization!r}; choose from {QUANTIZATIONS}")
    # The decoder's transposed convolutions are traced in sub-pixel form: LiteRT's CPU
    # delegate does not take a transposed convolution whose output shape is computed at run
    # time (every dynamic-size model), and runs the equal convolution + depth-to-space.
    with subpixel_upsampling():
        concrete = module.function(variant)
    converter = tf.lite.TFLiteConverter.from_concrete_functions([concrete], module)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if quantization in ("float16", "int8"):
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if quantization == "float16":
        converter.target_spec.supported_types = [tf.float16]
    return converter.convert()


def export_tflite(generator: Generator, directory: str,
                  config: TFLiteConfig | None = None,
                  refiner: Refiner | None = None) -> dict[str, str]:
    """Writes every (variant, quantization) model to `directory`; returns name -> path.
    Coarse-to-fine mode needs the refinement head `refiner`."""
    config = config or TFLiteConfig()
    config.validate()
    os.makedirs(directory, exist_ok=True)
    module = TFLiteModule(generator, config.fixed_size, config.min_size_fraction,
                          config.scales, config.mode, refiner, config.working_side)
    paths = {}
    for variant in config.variants:
        for quantization in config.quantizations:
            name = model_filename(variant, quantization, config.fixed_size)
            path = os.path.join(directory, name)
            with open(path, "wb") as f:
                f.write(convert(module, variant, quantization))
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


def _interpreter(model: str | bytes, num_threads: int | None):
    from ai_edge_litert.interpreter import Interpreter

    if isinstance(model, bytes):
        return Interpreter(model_content=model, num_threads=num_threads)
    return Interpreter(model_path=model, num_threads=num_threads)


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
