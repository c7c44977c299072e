"""The TF Serving graphs of MFIF-GAN: decoding, scaling, F_hat, SRR and eq. 14 in one SavedModel.

Symbols: `image_a`, `image_b` are the sources I_A and I_B; `focus_map_raw` is F_hat in
[0, 1], built by `mfif_tf.inference` in the export's mode (refined by default: G's
full-resolution pass, optionally averaged over `scales`, its outline redrawn by the
refinement head R; paper: the pass alone; coarse_to_fine: G at a working resolution and R up
to full resolution), the same graph `mfif_tf.fuse` runs; `focus_map` is F_final, F_hat binarised at 0.5 with regions of fewer than
N = `min_size_fraction` * W * H pixels removed (SRR, section 3.3, 0.001 in the paper);
`fused` is I_fused = I_A * F_final + I_B * (1 - F_final) (eq. 14).

Signatures (one `tf.function` per input kind, see docs/serving.md):

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
                  working_side: int = inference.DEFAULT_WORKING_SIDE) -> tf.Tensor:
    """F_hat for float sources in [0, 1] of shape (N, H, W, 1 or 3), by `mfif_tf.inference`.

    G (a `Generator` or a `ModelHolder`) sees the sources concatenated on channels and
    scaled to [-1, 1]. Mode "paper": one full-resolution pass, or the mean over `scales`;
    "refined": that map, its outline redrawn by R (a `Refiner` or a `ModelHolder`);
    "coarse_to_fine": G at `working_side`, then R.
    Returns float32 (N, H, W, 1) in [0, 1].
    """
    if isinstance(generator, Generator):
        generator = ModelHolder(generator)
    if isinstance(refiner, Refiner):
        refiner = ModelHolder(refiner)
    return inference.focus_map(inference.generator_predict(generator), image_a, image_b, mode,
                               refiner=refiner, working_side=working_side, scales=scales)


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


# ---------------------------------------------------------------- the module


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

    def __call__(self, x: tf.Tensor) -> tf.Tensor:
        return self.model(x, training=False)


GeneratorHolder = ModelHolder


def model_variables(model: Generator | Refiner | None) -> list[tf.Variable]:
    """The `tf.Variable`s under G's (or R's) Keras variables, for a module to track."""
    if model is None:
        return []
    return [v.value if hasattr(v, "value") and isinstance(v.value, tf.Variable) else v
            for v in model.variables]


class ServingModule(tf.Module):
    """Holds G and the serving `tf.function`s; `signatures()` maps names to them.

    Args:
      generator: the trained G.
      min_size_fraction: the N / (W * H) of the signatures without a `min_size_fraction`
        input (0.001, section 3.3).
      scales: modes "refined" and "paper": G's map is the mean of its maps at these scales
        (`mfif_tf.scales`).
      mode: "refined" (G at full resolution, then R), "paper" (G alone) or
        "coarse_to_fine" (G at `working_side`, then R); `mfif_tf.inference`.
      refiner: R (modes refined and coarse_to_fine).
      working_side: the working resolution's shorter side (coarse-to-fine mode).
    """

    def __init__(self, generator: Generator, min_size_fraction: float = PAPER_MIN_SIZE_FRACTION,
                 scales: tuple[float, ...] = (1.0,), mode: str = inference.DEFAULT_MODE,
                 refiner: Refiner | None = None,
                 working_side: int = inference.DEFAULT_WORKING_SIDE):
        super().__init__(name="mfif_serving")
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
        self.min_size_fraction = float(min_size_fraction)
        image = lambda dtype: tf.TensorSpec([None, None, None, None], dtype)  # noqa: E731
        encoded = tf.TensorSpec([None], tf.string)
        fraction = tf.TensorSpec(None, tf.float32)

        # One traced graph per input kind; the default-N signatures call it with a constant.
        self._fuse_uint8 = tf.function(
            self._fuse_uint8_impl, input_signature=[image(tf.uint8), image(tf.uint8), fraction])
        self._fuse_float = tf.function(
            self._fuse_float_impl,
            input_signature=[image(tf.float32), image(tf.float32), fraction])
        self._fuse_bytes = tf.function(
            self._fuse_bytes_impl, input_signature=[encoded, encoded, fraction])

        default = lambda: tf.constant(self.min_size_fraction, tf.float32)  # noqa: E731

        def fuse_uint8(image_a, image_b):
            return self._fuse_uint8(image_a, image_b, default())

        def fuse_float(image_a, image_b):
            return self._fuse_float(image_a, image_b, default())

        def fuse_bytes(image_a, image_b):
            return self._fuse_bytes(image_a, image_b, default())

        def fuse_srr(image_a, image_b, min_size_fraction):
            return self._fuse_uint8(image_a, image_b, min_size_fraction)

        def fuse_float_srr(image_a, image_b, min_size_fraction):
            return self._fuse_float(image_a, image_b, min_size_fraction)

        def fuse_bytes_srr(image_a, image_b, min_size_fraction):
            return self._fuse_bytes(image_a, image_b, min_size_fraction)

        self.fuse_uint8 = tf.function(fuse_uint8, input_signature=[image(tf.uint8)] * 2)
        self.fuse_float = tf.function(fuse_float, input_signature=[image(tf.float32)] * 2)
        self.fuse_bytes = tf.function(fuse_bytes, input_signature=[encoded] * 2)
        self.fuse_srr = tf.function(
            fuse_srr, input_signature=[image(tf.uint8), image(tf.uint8), fraction])
        self.fuse_float_srr = tf.function(
            fuse_float_srr, input_signature=[image(tf.float32), image(tf.float32), fraction])
        self.fuse_bytes_srr = tf.function(
            fuse_bytes_srr, input_signature=[encoded, encoded, fraction])

    def signatures(self) -> dict[str, Any]:
        return {
            "serving_default": self.fuse_uint8,
            "fuse_float": self.fuse_float,
            "fuse_bytes": self.fuse_bytes,
            "fuse_srr": self.fuse_srr,
            "fuse_float_srr": self.fuse_float_srr,
            "fuse_bytes_srr": self.fuse_bytes_srr,
        }

    def predict_focus(self, image_a: tf.Tensor, image_b: tf.Tensor) -> tf.Tensor:
        """F_hat of the module's mode for float sources in [0, 1]."""
        return predict_focus(self.generator, image_a, image_b, self.scales, self.mode,
                             self.refiner, self.working_side)

    # -------------------------------------------------------- tensors

    def _fuse_tensors(self, image_a, image_b, min_size_fraction, scale: float):
        """Sources as float in [0, scale] -> float outputs; `fused` in [0, scale]."""
        shape = tf.shape(image_a)
        fractions = _fractions_per_pair(min_size_fraction, shape[0])
        min_sizes = min_size_from_fraction(fractions, shape[1], shape[2])
        f_hat = self.predict_focus(image_a / scale, image_b / scale)
        f_final = remove_small_regions_per_pair(f_hat, min_sizes)
        return fuse(image_a, image_b, f_final), f_final, f_hat

    def _fuse_uint8_impl(self, image_a, image_b, min_size_fraction):
        with tf.control_dependencies(_check_pair(image_a, image_b)):
            a = tf.cast(image_a, tf.float32)
            b = tf.cast(image_b, tf.float32)
        fused, f_final, f_hat = self._fuse_tensors(a, b, min_size_fraction, 255.0)
        # F_final is 0 or 1, so eq. 14 picks whole pixels and the rounding is exact.
        fused = tf.saturate_cast(tf.round(fused), tf.uint8)
        return {"fused": fused, "focus_map": f_final, "focus_map_raw": f_hat}

    def _fuse_float_impl(self, image_a, image_b, min_size_fraction):
        checks = _check_pair(image_a, image_b)
        with tf.control_dependencies(checks):
            checks = [_check_unit_range(image_a, "image_a"), _check_unit_range(image_b, "image_b")]
        with tf.control_dependencies(checks):
            a = tf.identity(image_a)
            b = tf.identity(image_b)
        fused, f_final, f_hat = self._fuse_tensors(a, b, min_size_fraction, 1.0)
        return {"fused": fused, "focus_map": f_final, "focus_map_raw": f_hat}

    # -------------------------------------------------------- encoded images

    def _fuse_bytes_impl(self, image_a, image_b, min_size_fraction):
        count_a, count_b = tf.size(image_a), tf.size(image_b)
        checks = [
            _assert(
                tf.equal(count_a, count_b),
                ["image_a and image_b must hold the same number of images; got", count_a,
                 "and", count_b]),
            _assert(count_a >= 1, ["the batch holds no image pair"]),
        ]
        with tf.control_dependencies(checks):
            fractions = _fractions_per_pair(min_size_fraction, count_a)
        # Pairs are fused one by one, so each pair may have its own size.
        fused, focus, raw = tf.map_fn(
            lambda args: self._fuse_encoded_pair(*args),
            (tf.range(count_a), image_a, image_b, fractions),
            fn_output_signature=(tf.string, tf.string, tf.string),
        )
        return {"fused_bytes": fused, "focus_map_bytes": focus, "focus_map_raw_bytes": raw}

    def _fuse_encoded_pair(self, index, data_a, data_b, fraction):
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
        f_hat = self.predict_focus(a / 255.0, b / 255.0)
        n = min_size_from_fraction(fraction, shape_a[0], shape_a[1])
        f_final = small_region_removal(f_hat, min_size=n)
        fused = tf.saturate_cast(tf.round(fuse(a, b, f_final)), tf.uint8)
        return (
            tf.io.encode_png(fused[0]),
            tf.io.encode_png(tf.saturate_cast(tf.round(f_final[0] * 255.0), tf.uint8)),
            tf.io.encode_png(tf.saturate_cast(tf.round(f_hat[0] * 255.0), tf.uint8)),
        )


def save_serving_model(generator: Generator, directory: str,
                       min_size_fraction: float = PAPER_MIN_SIZE_FRACTION,
                       scales: tuple[float, ...] = (1.0,), mode: str = inference.DEFAULT_MODE,
                       refiner: Refiner | None = None,
                       working_side: int = inference.DEFAULT_WORKING_SIDE) -> str:
    """Writes the SavedModel with all serving signatures to `directory` (must not exist)."""
    module = ServingModule(generator, min_size_fraction, scales, mode, refiner, working_side)
    tf.saved_model.save(module, directory, signatures=module.signatures())
    return directory
