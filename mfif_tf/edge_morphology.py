"""Edge diffusion and contraction of a binary focus map (section 4.2.4, Fig. 6).

Paper symbols: ``focus_map`` is F_final (1 where I_A is in focus, the foreground),
``image_a``/``image_b`` are I_A/I_B. A degree of diffusion k > 0 grows the foreground by
k pixels, k < 0 shrinks it by |k| pixels (contraction), k = 0 keeps the map; the grown or
shrunk map then fuses the sources by eq. 14, I_fused = I_A * F + I_B * (1 - F).

Structuring element: ``"disk"`` (default) moves the boundary by a Euclidean distance k,
the same as a morphological dilation/erosion with the disk {|d| <= k} (MATLAB
``strel('disk', k, 0)``); ``"square"`` moves it by a chessboard distance k, the
(2k+1) x (2k+1) square. Pixels outside the image count neither as foreground when
growing nor as background when shrinking (MATLAB's imdilate/imerode padding), so the image
border does not erode the foreground.

NumPy/SciPy only.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from scipy import ndimage

from mfif_tf import metrics as metrics_lib

ELEMENTS = ("disk", "square")


def _as_binary(focus_map: np.ndarray) -> np.ndarray:
    if not isinstance(focus_map, np.ndarray):
        raise ValueError(f"focus_map: expected a numpy array, got {type(focus_map).__name__}")
    if focus_map.ndim == 3 and focus_map.shape[2] == 1:
        focus_map = focus_map[:, :, 0]
    if focus_map.ndim != 2:
        raise ValueError(f"focus_map: expected an H x W map, got shape {focus_map.shape}")
    values = np.unique(focus_map)
    if focus_map.dtype == bool:
        return focus_map
    if not np.all(np.isin(values, (0, 1))) and not np.all(np.isin(values, (0, 255))):
        raise ValueError(
            "focus_map: expected a binary map (values 0/1 or 0/255), "
            f"got values {values[:6].tolist()}{'...' if values.size > 6 else ''}"
        )
    return focus_map > 0


def _distance(mask: np.ndarray, element: str) -> np.ndarray:
    """Distance from each True pixel of ``mask`` to the nearest False pixel."""
    if element == "disk":
        return ndimage.distance_transform_edt(mask)
    return ndimage.distance_transform_cdt(mask, metric="chessboard").astype(np.float64)


def diffuse(focus_map: np.ndarray, k: int, element: str = "disk") -> np.ndarray:
    """Grows (k > 0) or shrinks (k < 0) the foreground of a binary F_final by |k| pixels.

    Args:
      focus_map: H x W binary map (bool, 0/1 or 0/255); 1 = foreground (take I_A).
      k: degree of diffusion in pixels; negative values contract.
      element: "disk" (Euclidean) or "square" (chessboard).

    Returns:
      H x W bool map.
    """
    if element not in ELEMENTS:
        raise ValueError(f"element must be one of {ELEMENTS}, got {element!r}")
    if int(k) != k:
        raise ValueError(f"k must be an integer number of pixels, got {k!r}")
    k = int(k)
    fg = _as_binary(focus_map)
    if k == 0:
        return fg.copy()
    if k > 0:
        if not fg.any():
            return fg.copy()
        # Background pixels within distance k of the foreground join it.
        return _distance(~fg, element) <= k
    if fg.all() or not fg.any():
        return fg.copy()
    # Foreground pixels within distance |k| of the background leave it.
    return _distance(fg, element) > -k


def fuse_with_map(image_a: np.ndarray, image_b: np.ndarray, focus_map: np.ndarray) -> np.ndarray:
    """Eq. 14: I_fused = I_A * F + I_B * (1 - F) with a binary F (exact pixel selection)."""
    if image_a.shape != image_b.shape:
        raise ValueError(f"shape mismatch: image_a {image_a.shape}, image_b {image_b.shape}")
    fg = _as_binary(focus_map)
    if fg.shape != image_a.shape[:2]:
        raise ValueError(f"focus_map shape {fg.shape} does not match images {image_a.shape[:2]}")
    from mfif_tf.inference import fuse_with_map as eq14  # TensorFlow only when fusing

    return eq14(image_a, image_b, fg, binary=True)


def diffusion_metrics(
    image_a: np.ndarray,
    image_b: np.ndarray,
    focus_map: np.ndarray,
    ks: Sequence[int] = tuple(range(-10, 11)),
    element: str = "disk",
    convention: str = "paper",
    metrics: Sequence[str] | None = None,
) -> dict[int, dict[str, float]]:
    """Metrics of I_A, I_B fused by eq. 14 with F_final grown/shrunk by each k (Fig. 6)."""
    fg = _as_binary(focus_map)
    out: dict[int, dict[str, float]] = {}
    for k in ks:
        fused = fuse_with_map(image_a, image_b, diffuse(fg, k, element))
        out[int(k)] = metrics_lib.compute_all(
            image_a, image_b, fused, convention, metrics=tuple(metrics) if metrics else None
        )
    return out
