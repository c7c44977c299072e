"""Input handling shared by the fusion metrics: layouts, MATLAB-style rounding, histograms.

The published numbers of the paper (Table 1) come from the MATLAB toolbox of Liu et al.
(TPAMI 2012). Its functions read whatever array they are given, so two details of MATLAB
decide the values and are reproduced here:

* A colour image H x W x 3 indexed with two subscripts (``im(i, j)``, ``size(im)`` with two
  outputs) reads as one H x 3W grey matrix, the R, G and B planes side by side
  (column-major storage). :func:`side_by_side` builds that matrix.
* ``rgb2gray`` of a uint8 image rounds the luminance back to uint8 (half away from zero).
  :func:`rgb2gray` does the same.

All images are on the 0..255 scale (MATLAB's ``double()`` of uint8); float inputs are taken
to be on that scale as well.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from mfif_tf.common import BT601

CONVENTIONS = ("paper", "luminance")
MIN_SIZE = 8  # Q_Y's 7 x 7 window and Q_M's two Haar levels need this much

# MATLAB's rgb2gray: the first row of inv([1 0.956 0.621; 1 -0.272 -0.647; 1 -1.106 1.703]).
RGB2GRAY_WEIGHTS = np.array(BT601)


class MetricInputError(ValueError):
    """An image given to a metric has the wrong type, shape or size."""


def matlab_round(x: np.ndarray) -> np.ndarray:
    """MATLAB's ``round``: halves go away from zero (NumPy rounds them to even)."""
    return np.sign(x) * np.floor(np.abs(x) + 0.5)


def check_image(image: np.ndarray, name: str) -> np.ndarray:
    """Returns ``image`` as float64 (0..255 scale), H x W or H x W x 3; raises on bad input."""
    if not isinstance(image, np.ndarray):
        raise MetricInputError(f"{name}: expected a numpy array, got {type(image).__name__}")
    if image.dtype == bool or not (
        np.issubdtype(image.dtype, np.integer) or np.issubdtype(image.dtype, np.floating)
    ):
        raise MetricInputError(f"{name}: unsupported dtype {image.dtype}")
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim == 3 and image.shape[2] == 4:
        raise MetricInputError(f"{name}: shape {image.shape} has an alpha channel; pass RGB")
    if not (image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 3)):
        raise MetricInputError(f"{name}: expected H x W or H x W x 3, got shape {image.shape}")
    if image.shape[0] < MIN_SIZE or image.shape[1] < MIN_SIZE:
        raise MetricInputError(
            f"{name}: image {image.shape} is too small (at least {MIN_SIZE} x {MIN_SIZE})"
        )
    out = image.astype(np.float64)
    if not np.all(np.isfinite(out)):
        raise MetricInputError(f"{name}: contains NaN or infinite values")
    return out


def check_triple(
    image_a: np.ndarray, image_b: np.ndarray, fused: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Validates two sources and a fused image of one shape."""
    a = check_image(image_a, "image_a")
    b = check_image(image_b, "image_b")
    f = check_image(fused, "fused")
    if not (a.shape == b.shape == f.shape):
        raise MetricInputError(
            f"shape mismatch: image_a {a.shape}, image_b {b.shape}, fused {f.shape}"
        )
    return a, b, f


def check_convention(convention: str) -> None:
    if convention not in CONVENTIONS:
        raise MetricInputError(f"unknown convention {convention!r}; use one of {CONVENTIONS}")


def side_by_side(image: np.ndarray) -> np.ndarray:
    """H x W x C -> H x CW with the planes side by side (MATLAB's 2-D view); 2-D unchanged."""
    if image.ndim == 2:
        return image
    return np.concatenate([image[:, :, c] for c in range(image.shape[2])], axis=1)


def rgb2gray(image: np.ndarray, quantize: bool = True) -> np.ndarray:
    """MATLAB rgb2gray luminance; ``quantize`` rounds to integers as for uint8 input."""
    if image.ndim == 2:
        return image
    gray = image @ RGB2GRAY_WEIGHTS
    if quantize:
        gray = np.clip(matlab_round(gray), 0, 255)
    return gray


def normalize1(image: np.ndarray) -> np.ndarray:
    """Min-max stretch to 0..255, rounded to integers (toolbox ``normalize1``)."""
    hi, lo = image.max(), image.min()
    if hi == 0 and lo == 0:
        return image
    if hi == lo:
        # MATLAB divides 0 by 0 here and the metric becomes NaN; a constant image carries
        # no information, so map it to zeros instead.
        return np.zeros_like(image)
    return matlab_round((image - lo) / (hi - lo) * 255.0)


def joint_histogram(x: np.ndarray, y: np.ndarray, bins: int = 256) -> np.ndarray:
    """Joint probability p[i, j] of integer images x (rows) and y (columns), values 0..bins-1."""
    xi = x.astype(np.int64).ravel()
    yi = y.astype(np.int64).ravel()
    counts = np.bincount(xi * bins + yi, minlength=bins * bins).astype(np.float64)
    return counts.reshape(bins, bins) / xi.size


def entropy_bits(p: np.ndarray) -> float:
    """Shannon entropy in bits of a probability array (0 log 0 = 0)."""
    nz = p[p > 0]
    return float(-np.sum(nz * np.log2(nz)))


@dataclasses.dataclass(frozen=True)
class Prepared:
    """The arrays each metric family reads, under one convention.

    Attributes:
      layout: (A, B, F) as the "layout" metrics read them (MI, TE, NCIE, Q_M, SF, LIF, AG,
        MSD, GLD): side by side H x 3W for "paper", luminance for "luminance".
      pages: number of colour planes side by side in ``layout`` (3 or 1); SF needs it.
      gray: (A, B, F) luminance images for Q_G, Q_Y and Q_CB (2-D in the toolbox).
      full: the validated inputs (H x W or H x W x 3) for PSNR and SSIM.
      convention: "paper" or "luminance".
    """

    layout: tuple[np.ndarray, np.ndarray, np.ndarray]
    pages: int
    gray: tuple[np.ndarray, np.ndarray, np.ndarray]
    full: tuple[np.ndarray, np.ndarray, np.ndarray]
    convention: str


def _gray_of(checked: np.ndarray) -> np.ndarray:
    return rgb2gray(checked, quantize=False)


def prepare_one(image: np.ndarray, name: str, convention: str) -> tuple[np.ndarray, int]:
    """One image in the layout of the "layout" metrics; returns (array, pages)."""
    check_convention(convention)
    x = check_image(image, name)
    if convention == "paper" or x.ndim == 2:
        return side_by_side(x), (x.shape[2] if x.ndim == 3 else 1)
    return _gray_of(x), 1


def prepare(
    image_a: np.ndarray, image_b: np.ndarray, fused: np.ndarray, convention: str = "paper"
) -> Prepared:
    """Validates the inputs once and builds every view the metrics need."""
    check_convention(convention)
    full = check_triple(image_a, image_b, fused)
    gray = tuple(_gray_of(c) for c in full)
    if convention == "paper":
        layout = tuple(side_by_side(c) for c in full)
        pages = full[0].shape[2] if full[0].ndim == 3 else 1
    else:
        layout, pages = gray, 1
    return Prepared(layout=layout, pages=pages, gray=gray, full=full, convention=convention)
