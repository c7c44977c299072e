"""Full-reference metrics for data with a ground truth: PSNR and SSIM.

* PSNR = 10 log10(255^2 / MSE) over every value (all channels; the luminance under the
  "luminance" convention); infinite when equal.
* SSIM (Wang et al. 2004, the reference ``ssim_index``): 11 x 11 Gaussian window,
  sigma 1.5, K = (0.01, 0.03), L = 255, 'valid' filtering, mean of the map. Colour
  images are scored per channel and averaged under the "paper" convention, and on
  their luminance under the "luminance" convention.
"""

from __future__ import annotations

import numpy as np

from mfif_tf.metrics import _common, perceptual

_SSIM_WINDOW, _SSIM_SIGMA = 11, 1.5
_SSIM_K = (0.01, 0.03)
_SSIM_L = 255.0


def check_pair(reference: np.ndarray, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    ref = _common.check_image(reference, "ground_truth")
    img = _common.check_image(image, "fused")
    if ref.shape != img.shape:
        raise _common.MetricInputError(
            f"shape mismatch: ground_truth {ref.shape}, fused {img.shape}"
        )
    if min(ref.shape[:2]) < _SSIM_WINDOW:
        raise _common.MetricInputError(
            f"ground_truth: image {ref.shape} is too small for SSIM (at least 11 x 11)"
        )
    return ref, img


def psnr_core(ref: np.ndarray, img: np.ndarray, convention: str = "paper") -> float:
    if convention == "luminance":
        ref, img = _common.rgb2gray(ref, False), _common.rgb2gray(img, False)
    mse = float(np.mean((ref - img) ** 2))
    if mse == 0:
        return float("inf")
    return float(10.0 * np.log10(_SSIM_L**2 / mse))


def ssim_2d(ref: np.ndarray, img: np.ndarray) -> float:
    g = perceptual.gaussian_1d(_SSIM_WINDOW, _SSIM_SIGMA)
    c1 = (_SSIM_K[0] * _SSIM_L) ** 2
    c2 = (_SSIM_K[1] * _SSIM_L) ** 2
    ssim_map, _, _ = perceptual.local_ssim(ref, img, g, c1, c2)
    return float(np.mean(ssim_map))


def ssim_core(ref: np.ndarray, img: np.ndarray, convention: str = "paper") -> float:
    if ref.ndim == 2:
        return ssim_2d(ref, img)
    if convention == "luminance":
        return ssim_2d(_common.rgb2gray(ref, False), _common.rgb2gray(img, False))
    return float(np.mean([ssim_2d(ref[:, :, c], img[:, :, c]) for c in range(ref.shape[2])]))


def psnr(ground_truth: np.ndarray, fused: np.ndarray, convention: str = "paper") -> float:
    """PSNR in dB against the ground truth (higher is better)."""
    _common.check_convention(convention)
    return psnr_core(*check_pair(ground_truth, fused), convention=convention)


def ssim(ground_truth: np.ndarray, fused: np.ndarray, convention: str = "paper") -> float:
    """SSIM against the ground truth (range -1..1, higher is better)."""
    _common.check_convention(convention)
    return ssim_core(*check_pair(ground_truth, fused), convention=convention)
