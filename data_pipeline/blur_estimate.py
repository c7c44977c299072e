"""Estimates the defocus blur of real multi-focus pairs as a Gaussian sigma.

  python -m data_pipeline.blur_estimate --test_dir=DIR   (DIR holds A/ and B/)

For each pair and each direction (A sharp / B blurred, then B sharp / A blurred) it finds the
regions where one source has at least 4 times the local gradient energy of the other, and picks
the sigma on a grid for which G(x, y; sigma) (x) sharp best matches blurred there (least squares,
MATLAB imgaussfilt kernel, replicate borders). A direction without such a region is skipped.
The result tells which sigma range of synthetic training data resembles the test photos.
"""

from __future__ import annotations

import math

import numpy as np
from absl import app, flags
from scipy import ndimage

from data_pipeline import readers
from data_pipeline.cli import fail, parse_flags

SIGMA_GRID = (0.5, 0.75, 1.0, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 8.0)

_TEST_DIR = flags.DEFINE_string("test_dir", None, "Folder with A/ and B/ source images.")


def imgaussfilt(image: np.ndarray, sigma: float) -> np.ndarray:
    """2-D Gaussian blur with imgaussfilt's kernel size 2*ceil(2*sigma)+1, replicate borders."""
    r = math.ceil(2 * sigma)
    x = np.arange(-r, r + 1, dtype=np.float64)
    k = np.exp(-(x**2) / (2 * sigma**2))
    k /= k.sum()
    out = ndimage.correlate1d(image, k, axis=0, mode="nearest")
    return ndimage.correlate1d(out, k, axis=1, mode="nearest")


def estimate_pair(a: np.ndarray, b: np.ndarray, window: int = 31,
                  ratio: float = 4.0) -> list[float]:
    """Best-fitting sigmas [A->B, B->A] of two gray float images in [0, 1] (NaN if no region)."""
    out = []
    for sharp, blurred in ((a, b), (b, a)):
        e_sharp = ndimage.uniform_filter(ndimage.gaussian_gradient_magnitude(sharp, 1) ** 2,
                                         window)
        e_blur = ndimage.uniform_filter(ndimage.gaussian_gradient_magnitude(blurred, 1) ** 2,
                                        window)
        region = (e_sharp > ratio * e_blur) & (e_sharp > np.median(e_sharp))
        region = ndimage.binary_erosion(region, iterations=20)  # away from the focus boundary
        if region.sum() < 500:
            out.append(float("nan"))
            continue
        errors = [np.mean((imgaussfilt(sharp, s) - blurred)[region] ** 2) for s in SIGMA_GRID]
        out.append(float(SIGMA_GRID[int(np.argmin(errors))]))
    return out


def estimate_folder(test_dir: str) -> dict[str, list[float]]:
    """{pair id: [sigma A->B, sigma B->A]} for the A/ B/ pairs of `test_dir`."""
    result = {}
    for pair in readers.list_test_pairs(test_dir):
        a, b = (readers.read_rgb(p).mean(axis=-1) / 255.0 for p in pair["sources"][:2])
        if a.shape != b.shape:
            raise readers.DataError(f"{pair['A']} and {pair['B']} differ in size")
        result[pair["id"]] = estimate_pair(a, b)
    return result


def main(argv):
    if len(argv) > 1:
        fail(f"unexpected arguments: {' '.join(argv[1:])}")
    if not _TEST_DIR.value:
        fail("--test_dir is required")
    try:
        result = estimate_folder(_TEST_DIR.value)
    except readers.DataError as err:
        fail(str(err))
    for k, v in result.items():
        print(k, " ".join("-" if math.isnan(s) else f"{s:g}" for s in v))
    values = np.array([s for v in result.values() for s in v if not math.isnan(s)])
    if values.size:
        print(f"{values.size} estimates: median {np.median(values):g}, "
              f"range {values.min():g}-{values.max():g}")


if __name__ == "__main__":
    app.run(main, flags_parser=parse_flags)
