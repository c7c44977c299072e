"""A classical multi-focus fusion baseline: sum-modified-Laplacian, then SRR and eq. 14.

The focus map is chosen per pixel by a hand-made focus measure instead of G: the
sum-modified-Laplacian (SML, Nayar and Nakagawa 1994) of each source's luminance,

  ML(x, y) = |2 I(x, y) - I(x - s, y) - I(x + s, y)| + |2 I(x, y) - I(x, y - s) - I(x, y + s)|
  SML(x, y) = sum of ML over a `window` x `window` box around (x, y), ML below `threshold`
              counted as 0,

and F_hat = 1 where SML_A > SML_B, 0 where SML_A < SML_B, 0.5 on ties (flat areas). The rest
is MFIF-GAN's pipeline unchanged: small region removal (section 3.3, N = 0.001 W H) gives
F_final and eq. 14, I_fused = I_A * F_final + I_B * (1 - F_final), picks the original pixels.
Stacks are fused sequentially, in input order: R_k = fuse(R_{k-1}, frame k) (`mfif_tf.fusion.fuse_stack`
with `stack_order="sequential"`).

Cost: a few passes over the image per source (the box sum is a running sum, so the time
does not depend on `window`), computed in row bands with a halo, so the extra memory is a few
float32 bands, not whole-image arrays; the bands give exactly the whole-image result.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from mfif_tf.fusion import FusionResult, check_source, final_map
from mfif_tf.image_io import InputError
from mfif_tf.inference import BT601, PAPER_MIN_SIZE_FRACTION, fuse_with_map

DEFAULT_WINDOW = 15
DEFAULT_STEP = 1
_BT601 = np.array(BT601, np.float32)
_ROWS_PER_BAND = 1024


def luminance(pixels: np.ndarray) -> np.ndarray:
    """(H, W) float32 in [0, 1]: uint8 / 255, uint16 / 65535, float as is; RGB through the
    BT.601 weights of MATLAB's rgb2gray."""
    if pixels.dtype == np.uint8:
        scale = np.float32(1.0 / 255.0)
    elif pixels.dtype == np.uint16:
        scale = np.float32(1.0 / 65535.0)
    else:
        scale = np.float32(1.0)
    if pixels.ndim == 3:
        grey = pixels[:, :, 0] * (_BT601[0] * scale)
        grey += pixels[:, :, 1] * (_BT601[1] * scale)
        grey += pixels[:, :, 2] * (_BT601[2] * scale)
        return grey.astype(np.float32, copy=False)
    return pixels.astype(np.float32) * scale


def modified_laplacian(grey: np.ndarray, step: int = DEFAULT_STEP) -> np.ndarray:
    """ML of a (H, W) float image, neighbours `step` pixels away, borders replicated."""
    if step < 1:
        raise ValueError(f"step must be at least 1, got {step}")
    padded = np.pad(grey, step, mode="edge")
    h, w = grey.shape
    centre = padded[step:step + h, step:step + w]
    twice = 2.0 * centre
    horizontal = np.abs(twice - padded[step:step + h, :w] - padded[step:step + h, 2 * step:])
    vertical = np.abs(twice - padded[:h, step:step + w] - padded[2 * step:, step:step + w])
    return horizontal + vertical


def sum_modified_laplacian(grey: np.ndarray, window: int = DEFAULT_WINDOW,
                           step: int = DEFAULT_STEP, threshold: float = 0.0) -> np.ndarray:
    """SML of a (H, W) float image: ML summed over a `window` x `window` box (mirrored at the
    borders), values of ML below `threshold` ignored. float32 (H, W)."""
    if window < 1 or window % 2 == 0:
        raise ValueError(f"window must be a positive odd number, got {window}")
    ml = modified_laplacian(np.asarray(grey, np.float32), step)
    if threshold > 0:
        ml[ml < threshold] = 0.0
    # A box mean times its area: a running sum, linear in the pixel count whatever the window.
    return ndimage.uniform_filter(ml, size=window, mode="reflect") * np.float32(window * window)


def focus_map(image_a: np.ndarray, image_b: np.ndarray, window: int = DEFAULT_WINDOW,
              step: int = DEFAULT_STEP, threshold: float = 0.0,
              rows_per_band: int = _ROWS_PER_BAND) -> np.ndarray:
    """F_hat (H, W) float32: 1 where I_A's SML is larger, 0 where I_B's is, 0.5 on ties.

    Computed in bands of `rows_per_band` rows plus a halo of window // 2 + step rows, which
    covers everything one output row depends on, so bands equal the whole-image result.
    """
    if image_a.shape[:2] != image_b.shape[:2]:
        raise InputError(f"sources differ in size: {image_a.shape[1]}x{image_a.shape[0]} and "
                         f"{image_b.shape[1]}x{image_b.shape[0]}")
    if rows_per_band < 1:
        raise ValueError(f"rows_per_band must be at least 1, got {rows_per_band}")
    height = image_a.shape[0]
    halo = window // 2 + step
    out = np.empty(image_a.shape[:2], np.float32)
    for r0 in range(0, height, rows_per_band):
        r1 = min(height, r0 + rows_per_band)
        h0, h1 = max(0, r0 - halo), min(height, r1 + halo)
        sml_a = sum_modified_laplacian(luminance(image_a[h0:h1]), window, step, threshold)
        sml_b = sum_modified_laplacian(luminance(image_b[h0:h1]), window, step, threshold)
        core = slice(r0 - h0, r1 - h0)
        diff = sml_a[core] - sml_b[core]
        out[r0:r1] = np.where(diff > 0, np.float32(1.0),
                              np.where(diff < 0, np.float32(0.0), np.float32(0.5)))
    return out


def fuse_classical(sources: Sequence[np.ndarray], srr: bool = True,
                   window: int = DEFAULT_WINDOW, step: int = DEFAULT_STEP,
                   threshold: float = 0.0, min_size: int | None = None,
                   min_size_fraction: float = PAPER_MIN_SIZE_FRACTION,
                   names: Sequence[str] | None = None) -> FusionResult:
    """Fuses a pair (I_A, I_B) or a stack with the SML focus measure, SRR and eq. 14.

    Args:
      sources: two or more same-sized images, uint8, uint16 or float in [0, 1], (H, W) grey
        or (H, W, 3) RGB, as for `mfif_tf.fusion.fuse_arrays` (grey and RGB are not mixed).
      srr: apply small region removal (section 3.3); without it eq. 14 blends with F_hat,
        so ties take the mean of the sources.
      window: side of the SML box (odd).
      step: distance of the neighbours in ML.
      threshold: ML values below it do not count (grey levels in [0, 1]).
      min_size: SRR's N; None for ceil(`min_size_fraction` * W * H).
      min_size_fraction: the 0.001 of N = 0.001 W H.
      names: names of the sources for error messages.

    Returns:
      `mfif_tf.fusion.FusionResult`; timings are "focus" (the focus measure), "srr",
      "fusion" (eq. 14) and "total", in seconds.
    """
    start_total = time.perf_counter()
    if isinstance(sources, np.ndarray) or not isinstance(sources, Sequence):
        raise InputError("sources must be a list of images")
    if len(sources) < 2:
        raise InputError(f"need at least two sources to fuse, got {len(sources)}")
    names = list(names) if names is not None else []
    name = lambda k: names[k] if k < len(names) else f"source {k}"  # noqa: E731
    frames = [check_source(s, name(k)) for k, s in enumerate(sources)]
    first = frames[0]
    for k, frame in enumerate(frames[1:], start=1):
        if frame.shape != first.shape:
            raise InputError(f"{name(k)}: shape {frame.shape} differs from {name(0)}'s "
                             f"{first.shape}; sources must have the same size and layout")
        if frame.dtype != first.dtype:
            raise InputError(f"{name(k)}: dtype {frame.dtype} differs from {name(0)}'s "
                             f"{first.dtype}; all sources need the same bit depth")
    timings = {"focus": 0.0, "srr": 0.0, "fusion": 0.0, "total": 0.0}
    running = first
    index = np.zeros(first.shape[:2], np.uint8 if len(frames) <= 256 else np.uint16)
    f_hat = f_final = None
    for k, frame in enumerate(frames[1:], start=1):
        start = time.perf_counter()
        f_hat = focus_map(running, frame, window, step, threshold)
        timings["focus"] += time.perf_counter() - start
        f_final, _ = final_map(f_hat, srr, min_size, min_size_fraction, 0, timings)
        start = time.perf_counter()
        running = fuse_with_map(running, frame, f_final, binary=srr)
        index[f_final < 0.5] = k
        timings["fusion"] += time.perf_counter() - start
    timings["total"] = time.perf_counter() - start_total
    pair = len(frames) == 2
    return FusionResult(running, f_hat if pair else None, f_final if pair else None, index,
                        timings)
