"""Structural-similarity and human-perception metrics: Q_Y (Yang) and Q_CB (Chen-Blum).

Section 4.1.3 of the paper, computed as in the toolbox of Liu et al. (TPAMI 2012), on 2-D
(luminance) images.

* Q_Y: local SSIM maps (7 x 7 Gaussian window, sigma 1.5, 'valid' filtering,
  C1 = C2 = 2e-16) of (A, B), (A, F) and (B, F). Where SSIM(A, B) >= 0.75 the score is
  lambda SSIM(A, F) + (1 - lambda) SSIM(B, F) with lambda = s_A^2 / (s_A^2 + s_B^2) (local
  variances); elsewhere max(SSIM(A, F), SSIM(B, F)). Q_Y is the mean. Range about 0..1.
* Q_CB: images stretched to 0..255 (``normalize1``), filtered in the frequency domain by the
  contrast sensitivity function S(r) = exp(-(r/15.3870)^2) - 0.7622 exp(-(r/1.3456)^2)
  (r in the toolbox's units: ``freqspace`` frequencies times size/30), local contrast
  C = |G_2 * I / G_4 * I - 1| with unnormalised 31 x 31 Gaussians of sigma 2 and 4, masked
  contrast C' = C^3 / (C^2 + 1e-4); per pixel Q_XF = min(C'_X/C'_F, C'_F/C'_X), saliency
  weights C'_A^2 / (C'_A^2 + C'_B^2), Q_CB the mean of the weighted sum. Range 0..1.

Where the toolbox would divide 0 by 0 (flat regions) it returns NaN; here lambda and the
saliency weights fall back to 1/2 and a ratio of two zero contrasts counts as 1.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy import ndimage

from mfif_tf.metrics import _common

_YANG_WINDOW = 7
_YANG_SIGMA = 1.5
_YANG_C = 2e-16
_YANG_THRESHOLD = 0.75

_CB_F0, _CB_F1, _CB_A = 15.3870, 1.3456, 0.7622
_CB_P, _CB_Q, _CB_Z = 3.0, 2.0, 1e-4
_CB_SIGMAS = (2.0, 4.0)
_CB_HALF = 15  # 31 x 31 Gaussians


def gaussian_1d(size: int, sigma: float) -> np.ndarray:
    """Normalised 1-D Gaussian; the outer product equals fspecial('gaussian', size, sigma)."""
    x = np.arange(size) - (size - 1) / 2.0
    g = np.exp(-(x * x) / (2.0 * sigma * sigma))
    return g / g.sum()


def filter_valid(x: np.ndarray, g: np.ndarray) -> np.ndarray:
    """Separable 'valid' correlation with outer(g, g) (filter2(window, x, 'valid'))."""
    half = len(g) // 2
    y = ndimage.correlate1d(x, g, axis=0, mode="constant")
    y = ndimage.correlate1d(y, g, axis=1, mode="constant")
    return y[half:-half, half:-half]


def _flat_valid(x: np.ndarray, size: int) -> np.ndarray:
    """True where the size x size window ('valid' positions) holds a single value."""
    half = size // 2
    flat = ndimage.maximum_filter(x, size) == ndimage.minimum_filter(x, size)
    return flat[half:-half, half:-half]


@dataclasses.dataclass(frozen=True)
class _Moments:
    """Local mean, variance and flatness of one image ('valid' positions)."""

    x: np.ndarray
    mu: np.ndarray
    var: np.ndarray
    flat: np.ndarray


def _moments(x: np.ndarray, g: np.ndarray) -> _Moments:
    mu = filter_valid(x, g)
    flat = _flat_valid(x, len(g))
    # E[x^2] - E[x]^2 leaves rounding noise of order 1e-12 in constant windows, far above
    # Yang's C2 = 2e-16, which would make the SSIM map there arbitrary; constant windows
    # get their exact variance (and covariance), 0.
    var = np.where(flat, 0.0, filter_valid(x * x, g) - mu * mu)
    return _Moments(x=x, mu=mu, var=var, flat=flat)


def _ssim_map(m: _Moments, n: _Moments, g: np.ndarray, c1: float, c2: float) -> np.ndarray:
    cov = np.where(m.flat | n.flat, 0.0, filter_valid(m.x * n.x, g) - m.mu * n.mu)
    return ((2 * m.mu * n.mu + c1) * (2 * cov + c2)) / (
        (m.mu * m.mu + n.mu * n.mu + c1) * (m.var + n.var + c2)
    )


def local_ssim(
    x: np.ndarray, y: np.ndarray, g: np.ndarray, c1: float, c2: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """SSIM map and local variances of x and y ('valid' size)."""
    m, n = _moments(x, g), _moments(y, g)
    return _ssim_map(m, n, g, c1, c2), m.var, n.var


def q_y_core(a: np.ndarray, b: np.ndarray, f: np.ndarray) -> float:
    g = gaussian_1d(_YANG_WINDOW, _YANG_SIGMA)
    m_a, m_b, m_f = (_moments(x, g) for x in (a, b, f))
    s_ab = _ssim_map(m_a, m_b, g, _YANG_C, _YANG_C)
    s_af = _ssim_map(m_a, m_f, g, _YANG_C, _YANG_C)
    s_bf = _ssim_map(m_b, m_f, g, _YANG_C, _YANG_C)
    total = m_a.var + m_b.var
    lam = np.divide(m_a.var, total, out=np.full_like(total, 0.5), where=total != 0)
    q = np.where(
        s_ab >= _YANG_THRESHOLD, lam * s_af + (1.0 - lam) * s_bf, np.maximum(s_af, s_bf)
    )
    return float(np.mean(q))


def _freqspace(n: int) -> np.ndarray:
    return (np.arange(n) - n // 2) * (2.0 / n)


def _csf_filter(shape: tuple[int, int]) -> np.ndarray:
    """The toolbox's DoG contrast sensitivity function, laid out for an unshifted rfft2."""
    rows, cols = shape
    u = _freqspace(cols)[None, :] * (cols / 30.0)
    v = _freqspace(rows)[:, None] * (rows / 30.0)
    r = np.sqrt(u * u + v * v)
    s = np.exp(-((r / _CB_F0) ** 2)) - _CB_A * np.exp(-((r / _CB_F1) ** 2))
    # S is even in each frequency, so the filtered image is real: keep the rfft2 half.
    return np.fft.ifftshift(s)[:, : cols // 2 + 1]


def _gaussian_31(sigma: float) -> np.ndarray:
    x = np.arange(-_CB_HALF, _CB_HALF + 1, dtype=np.float64)
    xx, yy = np.meshgrid(x, x)
    return np.exp(-(xx * xx + yy * yy) / (2 * sigma * sigma)) / (2 * np.pi * sigma * sigma)


class _ChenBlumFilters:
    """Frequency responses for one image size: the CSF and the two zero-padded Gaussians."""

    def __init__(self, shape: tuple[int, int]):
        self.shape = shape
        self.csf = _csf_filter(shape)
        # filter2(G, x, 'same') with zero padding, done as one padded linear convolution.
        self.padded = (shape[0] + 2 * _CB_HALF, shape[1] + 2 * _CB_HALF)
        self.g1, self.g2 = (np.fft.rfft2(_gaussian_31(s), self.padded) for s in _CB_SIGMAS)

    def masked_contrast(self, x: np.ndarray) -> np.ndarray:
        filtered = np.fft.irfft2(np.fft.rfft2(x) * self.csf, self.shape)
        spectrum = np.fft.rfft2(filtered, self.padded)
        h, w = self.shape
        crop = (slice(_CB_HALF, _CB_HALF + h), slice(_CB_HALF, _CB_HALF + w))
        num = np.fft.irfft2(spectrum * self.g1, self.padded)[crop]
        den = np.fft.irfft2(spectrum * self.g2, self.padded)[crop]
        c = np.abs(num / den - 1.0)
        return c**_CB_P / (c**_CB_Q + _CB_Z)


def _ratio_min(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    lo, hi = np.minimum(x, y), np.maximum(x, y)
    return np.divide(lo, hi, out=np.ones_like(lo), where=hi != 0)


def q_cb_core(a: np.ndarray, b: np.ndarray, f: np.ndarray) -> float:
    a, b, f = (_common.normalize1(x) for x in (a, b, f))
    filters = _ChenBlumFilters(a.shape)
    c_a, c_b, c_f = (filters.masked_contrast(x) for x in (a, b, f))
    q_af, q_bf = _ratio_min(c_a, c_f), _ratio_min(c_b, c_f)
    sal = c_a * c_a + c_b * c_b
    lam = np.divide(c_a * c_a, sal, out=np.full_like(sal, 0.5), where=sal != 0)
    return float(np.mean(lam * q_af + (1.0 - lam) * q_bf))


def q_y(
    image_a: np.ndarray, image_b: np.ndarray, fused: np.ndarray, convention: str = "paper"
) -> float:
    """Q_Y (Yang's SSIM-based metric, range about 0..1, higher is better)."""
    return q_y_core(*_common.prepare(image_a, image_b, fused, convention).gray)


def q_cb(
    image_a: np.ndarray, image_b: np.ndarray, fused: np.ndarray, convention: str = "paper"
) -> float:
    """Q_CB (Chen-Blum perceptual metric, range 0..1, higher is better)."""
    return q_cb_core(*_common.prepare(image_a, image_b, fused, convention).gray)
