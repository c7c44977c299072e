"""Edge-detail and contrast metrics of the fused image alone: LIF, AG, MSD and GLD.

Section 4.1.3 of the paper takes these four from Zhao et al. (TCSVT 2018), which gives no
code; the definitions below are the ones checked against Table 1(a) (docs/metrics.md has
the numbers). All read F on the 0..255 scale; A and B are not used.

* LIF, linear index of fuzziness (Bai et al. 2012), lower is better:
  p = sin(pi/2 * (1 - F / max(F))), LIF = 2/(MN) * sum min(p, 1 - p). Range 0..1.
  Reproduces Table 1(a).
* AG, average gradient, higher is better: mean over all pixels of
  sqrt((g_x^2 + g_y^2) / 2) with g = MATLAB ``gradient`` (central differences, one-sided
  at the borders). The paper's numbers are reproduced only by evaluating this as MATLAB
  does on uint8 data, so with ``uint8_arithmetic=True`` (the "paper" convention):
  differences saturate at 0 (only increasing steps count), the halved central difference
  is rounded, and each square saturates at 255 before the sum and the square root. The
  "luminance" convention uses plain floating point.
* MSD, mean square deviation, higher is better: mean((F/255 - mean(F/255))^2), the
  variance on the 0..1 scale. Table 1(a)'s values are about 13 % larger and were not
  reproduced.
* GLD, gray level difference, higher is better: mean |F(i, j+1) - F(i, j)| +
  mean |F(i+1, j) - F(i, j)| (0..255 scale). Table 1(a)'s values are about 2 % larger and
  were not reproduced.
"""

from __future__ import annotations

import numpy as np

from mfif_tf.metrics import _common


def lif_core(f: np.ndarray) -> float:
    peak = f.max()
    if peak <= 0:
        return 0.0
    p = np.sin(np.pi / 2.0 * (1.0 - f / peak))
    return float(2.0 * np.mean(np.minimum(p, 1.0 - p)))


def _gradient_uint8(x: np.ndarray, axis: int) -> np.ndarray:
    """MATLAB ``gradient`` of a uint8 array: saturating differences, rounded halving."""
    x = np.moveaxis(x, axis, 0)
    g = np.zeros_like(x)
    if x.shape[0] > 1:
        g[0] = np.clip(x[1] - x[0], 0, 255)
        g[-1] = np.clip(x[-1] - x[-2], 0, 255)
    if x.shape[0] > 2:
        g[1:-1] = _common.matlab_round(np.clip(x[2:] - x[:-2], 0, 255) / 2.0)
    return np.moveaxis(g, 0, axis)


def ag_core(f: np.ndarray, uint8_arithmetic: bool = False) -> float:
    if uint8_arithmetic:
        f = np.clip(_common.matlab_round(f), 0, 255)
        gx, gy = _gradient_uint8(f, 1), _gradient_uint8(f, 0)
        squares = np.minimum(gx * gx, 255.0) + np.minimum(gy * gy, 255.0)
    else:
        gy, gx = np.gradient(f)
        squares = gx * gx + gy * gy
    return float(np.mean(np.sqrt(squares / 2.0)))


def msd_core(f: np.ndarray) -> float:
    return float(np.var(f / 255.0))


def gld_core(f: np.ndarray) -> float:
    return float(np.mean(np.abs(np.diff(f, axis=1))) + np.mean(np.abs(np.diff(f, axis=0))))


def lif(fused: np.ndarray, convention: str = "paper") -> float:
    """LIF (linear index of fuzziness, range 0..1, LOWER is better)."""
    return lif_core(_common.prepare_one(fused, "fused", convention)[0])


def average_gradient(fused: np.ndarray, convention: str = "paper") -> float:
    """AG (average gradient, 0..255 scale, higher is better)."""
    f, _ = _common.prepare_one(fused, "fused", convention)
    return ag_core(f, uint8_arithmetic=convention == "paper")


def msd(fused: np.ndarray, convention: str = "paper") -> float:
    """MSD (variance on the 0..1 scale, higher is better)."""
    return msd_core(_common.prepare_one(fused, "fused", convention)[0])


def gld(fused: np.ndarray, convention: str = "paper") -> float:
    """GLD (mean absolute difference of adjacent pixels, 0..255 scale, higher is better)."""
    return gld_core(_common.prepare_one(fused, "fused", convention)[0])
