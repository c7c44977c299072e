"""Image-feature metrics: Q_G (Xydeas-Petrovic), Q_M (Wang-Liu multiscale) and SF (Zheng).

Section 4.1.3 of the paper, computed as in the toolbox of Liu et al. (TPAMI 2012).

* Q_G: Sobel gradients (3 x 3, zero padding at the border) of A, B and F give strength g
  and orientation alpha = atan(g_y / g_x) (zero g_x replaced by 1e-5). Per pixel,
  G^AF = min(g_F/g_A, g_A/g_F), A^AF = ||alpha_A - alpha_F| - pi/2| * 2/pi and
  Q^AF = 1/(1+exp(-10 (G^AF - 0.5))) * 1/(1+exp(-20 (A^AF - 0.75))); likewise for B. The
  toolbox then averages the per-pixel weighted ratio (Q^AF g_A + Q^BF g_B) / (g_A + g_B)
  over the image (not a ratio of sums). Range 0..1.
* Q_M: two-level Haar wavelet (orthonormal, non-overlapping pairs). At level s the
  detail bands H, V, D give weights W = H^2 + V^2 + D^2 and edge preservation
  EP = exp(-|H_X - H_F|) + exp(-|V_X - V_F|) + exp(-|D_X - D_F|);
  Q_s = sum(EP_A W_A + EP_B W_B) / sum(W_A + W_B) and Q_M = Q_1^(2/3) Q_2^(1/3). Range 0..3.
* SF: ratio of spatial-frequency error rSFe = (SF_F - SF_R) / SF_R, where SF_F combines the
  row, column and two diagonal (weight sqrt(2)/2) frequencies of F and SF_R the same built
  from the larger absolute difference of A or B at each position. It is negative when F
  has less detail than the sharper of the sources at each position and 0 when it matches
  them; so "higher is better" means "closer to 0 from below".
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from mfif_tf.metrics import _common

_SOBEL_X = np.array([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])
_SOBEL_Y = _SOBEL_X.T
_EPS_TOOLBOX = 1e-5
_DIAGONAL_WEIGHT = np.sqrt(2.0) / 2.0


# ---------------------------------------------------------------------------- Q_G


def _sobel(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Strength and orientation as the toolbox computes them (filter2 'same', zero pad)."""
    gx = ndimage.correlate(x, _SOBEL_X, mode="constant", cval=0.0)
    gy = ndimage.correlate(x, _SOBEL_Y, mode="constant", cval=0.0)
    g = np.sqrt(gx * gx + gy * gy)
    gx = np.where(gx == 0, _EPS_TOOLBOX, gx)
    return g, np.arctan(gy / gx)


def _edge_preservation(g_x: np.ndarray, a_x: np.ndarray, g_f: np.ndarray, a_f: np.ndarray):
    """Q^XF per pixel; returns (Q^XF, g_X with the toolbox's zero guard, guarded g_F)."""
    bimap = g_x > g_f
    g_x = np.where(g_x == 0, _EPS_TOOLBOX, g_x)
    g_f = np.where(g_f == 0, _EPS_TOOLBOX, g_f)
    g_rel = np.where(bimap, g_f / g_x, g_x / g_f)
    a_rel = np.abs(np.abs(a_x - a_f) - np.pi / 2.0) * 2.0 / np.pi
    q_g = 1.0 / (1.0 + np.exp(-10.0 * (g_rel - 0.5)))
    q_a = 1.0 / (1.0 + np.exp(-20.0 * (a_rel - 0.75)))
    return q_g * q_a, g_x, g_f


def q_g_core(a: np.ndarray, b: np.ndarray, f: np.ndarray) -> float:
    g_a, a_a = _sobel(a)
    g_b, a_b = _sobel(b)
    g_f, a_f = _sobel(f)
    q_af, w_a, g_f = _edge_preservation(g_a, a_a, g_f, a_f)
    q_bf, w_b, _ = _edge_preservation(g_b, a_b, g_f, a_f)
    return float(np.mean((q_af * w_a + q_bf * w_b) / (w_a + w_b)))


# ---------------------------------------------------------------------------- Q_M


def _haar_level(x: np.ndarray) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """One orthonormal 2-D Haar step on pairs (0,1), (2,3), ...; odd last row/column dropped."""
    h, w = (x.shape[0] // 2) * 2, (x.shape[1] // 2) * 2
    x = x[:h, :w]
    lo = (x[0::2] + x[1::2]) / np.sqrt(2.0)
    hi = (x[1::2] - x[0::2]) / np.sqrt(2.0)
    lolo = (lo[:, 0::2] + lo[:, 1::2]) / np.sqrt(2.0)
    lohi = (hi[:, 0::2] + hi[:, 1::2]) / np.sqrt(2.0)
    hilo = (lo[:, 1::2] - lo[:, 0::2]) / np.sqrt(2.0)
    hihi = (hi[:, 1::2] - hi[:, 0::2]) / np.sqrt(2.0)
    return lolo, (lohi, hilo, hihi)


def q_m_core(a: np.ndarray, b: np.ndarray, f: np.ndarray, levels: int = 2) -> float:
    alphas = (2.0 / 3.0, 1.0 / 3.0)
    if levels != 2:
        raise ValueError("Q_M is defined with 2 levels (weights 2/3 and 1/3)")
    result = 1.0
    for level in range(levels):
        a, bands_a = _haar_level(a)
        b, bands_b = _haar_level(b)
        f, bands_f = _haar_level(f)
        w_a = sum(band * band for band in bands_a)
        w_b = sum(band * band for band in bands_b)
        ep_a = sum(np.exp(-np.abs(x - y)) for x, y in zip(bands_a, bands_f))
        ep_b = sum(np.exp(-np.abs(x - y)) for x, y in zip(bands_b, bands_f))
        denom = np.sum(w_a + w_b)
        q = np.sum(ep_a * w_a + ep_b * w_b) / denom if denom > 0 else 0.0
        result *= q ** alphas[level]
    return float(result)


# ---------------------------------------------------------------------------- SF


def _row_differences(x: np.ndarray, pages: int) -> np.ndarray:
    """x(i, j) - x(i, j+1) as the toolbox gets them from circshift on an H x W x C array.

    circshift wraps within each colour plane, then all columns but the very last of the
    side-by-side matrix are kept: planes other than the last keep their wrap-around column.
    """
    h, total = x.shape
    w = total // pages
    planes = x.reshape(h, pages, w)
    diff = planes - np.roll(planes, -1, axis=2)
    return diff.reshape(h, total)[:, :-1]


def _directional_differences(x: np.ndarray, pages: int) -> list[np.ndarray]:
    """Row, column, main-diagonal and secondary-diagonal differences (toolbox order)."""
    return [
        _row_differences(x, pages),
        x[:-1, :] - x[1:, :],
        x[1:, 1:] - x[:-1, :-1],
        x[1:, :-1] - x[:-1, 1:],
    ]


def sf_core(a: np.ndarray, b: np.ndarray, f: np.ndarray, pages: int = 1) -> float:
    n = f.size
    weights = (1.0, 1.0, _DIAGONAL_WEIGHT, _DIAGONAL_WEIGHT)
    d_f = _directional_differences(f, pages)
    d_a = _directional_differences(a, pages)
    d_b = _directional_differences(b, pages)
    sf_f = np.sqrt(sum(wt * np.sum(d * d) / n for wt, d in zip(weights, d_f)))
    sf_r = np.sqrt(
        sum(
            wt * np.sum(np.maximum(np.abs(da), np.abs(db)) ** 2) / n
            for wt, da, db in zip(weights, d_a, d_b)
        )
    )
    if sf_r == 0:
        return 0.0 if sf_f == 0 else float("inf")
    return float((sf_f - sf_r) / sf_r)


# ---------------------------------------------------------------------------- public


def q_g(
    image_a: np.ndarray, image_b: np.ndarray, fused: np.ndarray, convention: str = "paper"
) -> float:
    """Q_G (Xydeas-Petrovic gradient metric, range 0..1, higher is better)."""
    return q_g_core(*_common.prepare(image_a, image_b, fused, convention).gray)


def q_m(
    image_a: np.ndarray, image_b: np.ndarray, fused: np.ndarray, convention: str = "paper"
) -> float:
    """Q_M (multiscale Haar edge preservation, range 0..3, higher is better)."""
    return q_m_core(*_common.prepare(image_a, image_b, fused, convention).layout)


def spatial_frequency(
    image_a: np.ndarray, image_b: np.ndarray, fused: np.ndarray, convention: str = "paper"
) -> float:
    """SF (ratio of spatial-frequency error; <= 0 typically, closer to 0 is better)."""
    prep = _common.prepare(image_a, image_b, fused, convention)
    return sf_core(*prep.layout, pages=prep.pages)
