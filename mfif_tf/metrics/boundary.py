"""Focus-map metrics against a true focus map: boundary F-scores (BF1, BF3) and MAP_ACC.

For data with a known focus map (a ground-truth set: ``MAP/`` is 255 where I_A is the
in-focus source), a method's binary F_final can be compared with it directly, which the
image metrics do only indirectly. Both maps are binarised first: F_final > 0.5 (values on
the 0..255 scale above 127.5), the true map likewise.

* Boundary pixels of a binary map: the pixels of each region that have a 4-neighbour in the
  other region (so a boundary is two pixels wide, one on each side; the image border is no
  boundary).
* Boundary F-score at tolerance d (``BF1``: d = 1, ``BF3``: d = 3 pixels): precision P is the
  fraction of predicted boundary pixels within Euclidean distance d of a true boundary pixel
  (``scipy.ndimage.distance_transform_edt``), recall R the fraction of true boundary pixels
  within d of a predicted one, F = 2PR / (P + R) (0 when P + R = 0).
  Degenerate cases: neither map has a boundary (both are one region; they may still disagree,
  which MAP_ACC shows) -> 1.0; exactly one has a boundary -> 0.0 (recall or precision is 0).
* ``MAP_ACC``: the fraction of pixels where F_final > 0.5 equals the true map.

Higher is better for all three, range 0..1.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from mfif_tf.metrics._common import MetricInputError

# Tolerance d in pixels of each boundary F-score. The names, best rules and
# `focus_map_metrics` are in `mfif_tf.metrics.registry`.
TOLERANCES = {"BF1": 1.0, "BF3": 3.0}


def binarize(focus_map: np.ndarray, what: str = "focus map") -> np.ndarray:
    """bool (H, W): values above half the range (0.5 for maps in [0, 1], else 127.5)."""
    arr = np.asarray(focus_map)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim != 2:
        raise MetricInputError(f"{what}: expected an H x W map, got shape {arr.shape}")
    if arr.dtype == bool:
        return arr
    x = arr.astype(np.float64)
    if not np.all(np.isfinite(x)):
        raise MetricInputError(f"{what}: contains NaN or infinite values")
    return x > (0.5 if x.max(initial=0.0) <= 1.0 else 127.5)


def boundary(region: np.ndarray) -> np.ndarray:
    """bool (H, W): pixels with a 4-neighbour of the other value (both sides of the edge)."""
    r = np.asarray(region, bool)
    out = np.zeros_like(r)
    vertical = r[1:, :] != r[:-1, :]
    horizontal = r[:, 1:] != r[:, :-1]
    out[1:, :] |= vertical
    out[:-1, :] |= vertical
    out[:, 1:] |= horizontal
    out[:, :-1] |= horizontal
    return out


def _within(source: np.ndarray, target: np.ndarray, tolerance: float) -> float:
    """Fraction of `source` pixels within `tolerance` (Euclidean) of a `target` pixel."""
    distance = ndimage.distance_transform_edt(~target)
    return float(np.mean(distance[source] <= tolerance))


def boundary_f_score(predicted: np.ndarray, true: np.ndarray, tolerance: float) -> float:
    """Boundary F-score of a binary map against the true one at `tolerance` pixels."""
    pred_b, true_b = boundary(predicted), boundary(true)
    has_pred, has_true = bool(pred_b.any()), bool(true_b.any())
    if not has_pred and not has_true:
        return 1.0
    if not has_pred or not has_true:
        return 0.0
    precision = _within(pred_b, true_b, tolerance)
    recall = _within(true_b, pred_b, tolerance)
    if precision + recall == 0:
        return 0.0
    return 2.0 * precision * recall / (precision + recall)


def map_accuracy(predicted: np.ndarray, true: np.ndarray) -> float:
    """MAP_ACC: fraction of pixels where the binary maps agree."""
    return float(np.mean(np.asarray(predicted, bool) == np.asarray(true, bool)))


def check_maps(focus_map: np.ndarray, true_map: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both maps binarised (see `binarize`); raises MetricInputError on a size mismatch."""
    pred = binarize(focus_map, "focus map")
    true = binarize(true_map, "true focus map")
    if pred.shape != true.shape:
        raise MetricInputError(f"shape mismatch: true focus map {true.shape}, focus map "
                               f"{pred.shape}")
    return pred, true


def boundary_f1(focus_map: np.ndarray, true_map: np.ndarray) -> float:
    """BF1: boundary F-score at 1 pixel."""
    return boundary_f_score(*check_maps(focus_map, true_map), TOLERANCES["BF1"])


def boundary_f3(focus_map: np.ndarray, true_map: np.ndarray) -> float:
    """BF3: boundary F-score at 3 pixels."""
    return boundary_f_score(*check_maps(focus_map, true_map), TOLERANCES["BF3"])


def map_acc(focus_map: np.ndarray, true_map: np.ndarray) -> float:
    """MAP_ACC: fraction of pixels where F_final > 0.5 equals the true map."""
    return map_accuracy(*check_maps(focus_map, true_map))
