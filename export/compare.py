"""Checks of an export against the SavedModel: F_final agreement, latency, test pairs.

`synthetic_pair` makes a real-looking multi-focus pair without data files: a textured RGB
image I, a disc-shaped focus map F, I_A = F * I + (1 - F) * blur(I) and
I_B = F * blur(I) + (1 - F) * I (the conventional synthesis of eqs. 12-13).
"""

from __future__ import annotations

import dataclasses
import statistics
import time
from collections.abc import Callable

import numpy as np
from scipy import ndimage

from mfif_tf.scales import DEFAULT_SCALES


def textured_image(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A float32 RGB texture in [0, 1], (H, W, 3): noise smoothed at several scales, so it
    has edges and detail at every scale like a photo."""
    rng = np.random.default_rng(seed)
    image = np.zeros((height, width, 3), np.float64)
    for sigma, weight in ((12.0, 1.0), (4.0, 0.6), (1.5, 0.4), (0.5, 0.25)):
        noise = rng.standard_normal((height, width, 3))
        smooth = ndimage.gaussian_filter(noise, (sigma, sigma, 0))
        image += weight * smooth / (smooth.std() + 1e-12)
    # Correlated channels, as in natural images.
    mix = np.array([[0.7, 0.2, 0.1], [0.2, 0.6, 0.2], [0.1, 0.3, 0.6]])
    image = image @ mix.T
    lo, hi = np.percentile(image, 1), np.percentile(image, 99)
    return np.clip((image - lo) / (hi - lo), 0.0, 1.0).astype(np.float32)


def disc_mask(height: int, width: int) -> np.ndarray:
    """F: 1 inside a centred disc of radius min(H, W) / 3, (H, W) float32."""
    y, x = np.mgrid[:height, :width]
    radius = min(height, width) / 3.0
    return (((y - height / 2) ** 2 + (x - width / 2) ** 2) <= radius**2).astype(np.float32)


def synthetic_pair(height: int, width: int, sigma: float = 2.5,
                   seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(I_A, I_B, F): float32 sources in [0, 1], (H, W, 3), and the focus map, (H, W)."""
    image = textured_image(height, width, seed)
    blurred = ndimage.gaussian_filter(image, (sigma, sigma, 0))
    focus = disc_mask(height, width)[..., None]
    image_a = focus * image + (1 - focus) * blurred
    image_b = focus * blurred + (1 - focus) * image
    return image_a.astype(np.float32), image_b.astype(np.float32), focus[..., 0]


def to_uint8(image: np.ndarray) -> np.ndarray:
    return np.clip(np.round(np.asarray(image) * 255.0), 0, 255).astype(np.uint8)


def agreement(focus_a: np.ndarray, focus_b: np.ndarray) -> float:
    """Percentage of pixels where two F_final maps agree."""
    a = np.asarray(focus_a) > 0.5
    b = np.asarray(focus_b) > 0.5
    if a.shape != b.shape:
        raise ValueError(f"focus maps differ in shape: {a.shape} and {b.shape}")
    return 100.0 * float(np.mean(a == b))


@dataclasses.dataclass
class Timing:
    """Seconds per call: median wall-clock and median process CPU time over `repeats`."""

    wall: float
    cpu: float
    repeats: int


def time_call(fn: Callable[[], object], repeats: int = 5, warmup: int = 1) -> Timing:
    for _ in range(warmup):
        fn()
    walls, cpus = [], []
    for _ in range(repeats):
        w, c = time.perf_counter(), time.process_time()
        fn()
        walls.append(time.perf_counter() - w)
        cpus.append(time.process_time() - c)
    return Timing(statistics.median(walls), statistics.median(cpus), repeats)


@dataclasses.dataclass
class BenchmarkRow:
    """One model of `benchmark_export`: its latency and how it agrees with the SavedModel.

    Attributes:
      model: "SavedModel serving_default" or a .tflite file name.
      size_bytes: file size (the whole version folder for the SavedModel).
      input_size: (H, W) the model ran on.
      timing: seconds per pair.
      agreement: % of F_final pixels equal to the SavedModel's on the same input (None for
        the SavedModel itself).
      max_raw_diff: largest |F_hat - F_hat of the SavedModel|.
      max_fused_diff: largest difference of the fused image, in grey levels (0..255).
    """

    model: str
    size_bytes: int
    input_size: tuple[int, int]
    timing: Timing
    agreement: float | None = None
    max_raw_diff: float | None = None
    max_fused_diff: float | None = None


def benchmark_export(generator, image_a: np.ndarray, image_b: np.ndarray, workdir: str,
                     repeats: int = 5, threads: int | None = None, fixed_size: int = 512,
                     quantizations: tuple[str, ...] = ("float32", "float16", "int8"),
                     scales: tuple[float, ...] | str = DEFAULT_SCALES,
                     mode: str | None = None, refiner=None) -> list[BenchmarkRow]:
    """Exports G to `workdir`, then times the SavedModel (`serving_default`, uint8) and every
    TFLite model on the pair and compares their F_final with the SavedModel's.

    `image_a`, `image_b`: uint8 RGB (H, W, 3). The fixed-size models run on the pair resized
    to `fixed_size` (bilinear), compared with the SavedModel on that same resized pair.
    `scales`: the F_hat passes built into every graph (`mfif_tf.scales`); `mode` the fusion
    mode of `mfif_tf.inference` (default: its default), `refiner` R for the modes that use it.
    """
    import tensorflow as tf

    from export import export_lib
    from export.tflite import TFLiteConfig, TFLiteFuser

    from mfif_tf import inference

    mode = mode or inference.DEFAULT_MODE
    config = export_lib.ExportConfig(
        export_dir=workdir, version=1, tflite=True, scales=scales, mode=mode,
        tflite_config=TFLiteConfig(fixed_size=fixed_size, quantizations=quantizations,
                                   scales=scales, mode=mode))
    result = export_lib.export_model(generator, config, refiner)
    loaded = tf.saved_model.load(result.saved_model_dir)
    signature = loaded.signatures["serving_default"]

    def resized(image: np.ndarray) -> np.ndarray:
        out = tf.image.resize(image.astype(np.float32), [fixed_size, fixed_size], "bilinear")
        return np.clip(np.round(out.numpy()), 0, 255).astype(np.uint8)

    pairs = {"dynamic": (image_a, image_b), "fixed": (resized(image_a), resized(image_b))}
    references = {}
    rows = []
    for variant, (a, b) in pairs.items():
        feed = dict(image_a=tf.constant(a[None]), image_b=tf.constant(b[None]))
        references[variant] = {k: v.numpy()[0] for k, v in signature(**feed).items()}
        if variant == "dynamic":
            rows.append(BenchmarkRow(
                "SavedModel serving_default (uint8)", result.sizes["saved_model"],
                a.shape[:2], time_call(lambda: signature(**feed), repeats)))
    for name, path in sorted(result.tflite_models.items()):
        variant = "dynamic" if "dynamic" in name else "fixed"
        a, b = pairs[variant]
        a01, b01 = a.astype(np.float32) / 255.0, b.astype(np.float32) / 255.0
        fuser = TFLiteFuser(path, num_threads=threads)
        out = {k: v[0] for k, v in fuser(a01, b01).items()}
        ref = references[variant]
        rows.append(BenchmarkRow(
            name, result.sizes[name], a.shape[:2],
            time_call(lambda: fuser(a01, b01), repeats),
            agreement=agreement(out["focus_map"], ref["focus_map"]),
            max_raw_diff=float(np.abs(out["focus_map_raw"] - ref["focus_map_raw"]).max()),
            max_fused_diff=float(np.abs(out["fused"] * 255.0 - ref["fused"]).max())))
    return rows


def format_rows(rows: list[BenchmarkRow]) -> str:
    """A markdown table of `benchmark_export`'s rows."""
    lines = ["| model | size (MB) | input | wall (s) | CPU (s) | F_final agreement | "
             "max abs F_hat diff | max fused diff (grey levels) |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        agree = "reference" if r.agreement is None else f"{r.agreement:.3f} %"
        raw = "" if r.max_raw_diff is None else f"{r.max_raw_diff:.2e}"
        fused = "" if r.max_fused_diff is None else f"{r.max_fused_diff:.1f}"
        lines.append(f"| {r.model} | {r.size_bytes / 1e6:.2f} | {r.input_size[0]}x"
                     f"{r.input_size[1]} | {r.timing.wall:.3f} | {r.timing.cpu:.3f} | {agree} | "
                     f"{raw} | {fused} |")
    return "\n".join(lines)
