"""The classical baseline: sum-modified-Laplacian focus measure, SRR and eq. 14."""

import numpy as np
import pytest
from scipy import ndimage

from mfif_tf import classical
from mfif_tf.image_io import InputError


def texture(height=96, width=128, seed=0):
    """An RGB uint8 texture with detail at several scales."""
    rng = np.random.default_rng(seed)
    image = np.zeros((height, width, 3), np.float64)
    for sigma in (4.0, 1.5, 0.7):
        image += ndimage.gaussian_filter(rng.standard_normal((height, width, 3)), (sigma, sigma, 0))
    image = (image - image.min()) / (image.max() - image.min())
    return np.round(255 * image).astype(np.uint8)


def blur(image, sigma=2.5):
    return np.round(ndimage.gaussian_filter(image.astype(np.float64), (sigma, sigma, 0))).astype(
        np.uint8)


def test_sml_of_an_impulse_by_hand():
    grey = np.zeros((7, 7), np.float32)
    grey[3, 3] = 1.0
    ml = classical.modified_laplacian(grey)
    # Centre |2 - 0 - 0| + |2 - 0 - 0| = 4; the four neighbours |0 - 1 - 0| = 1; others 0.
    assert ml[3, 3] == 4.0
    assert ml[2, 3] == ml[4, 3] == ml[3, 2] == ml[3, 4] == 1.0
    assert ml.sum() == 8.0
    sml = classical.sum_modified_laplacian(grey, window=3)
    np.testing.assert_allclose(sml[3, 3], 8.0, rtol=1e-6)
    np.testing.assert_allclose(sml[2, 2], 6.0, rtol=1e-6)  # the centre and two neighbours
    np.testing.assert_allclose(sml[1, 3], 1.0, rtol=1e-6)  # one neighbour
    assert sml[0, 0] == 0.0
    # A threshold above the neighbours' ML leaves only the centre.
    np.testing.assert_allclose(classical.sum_modified_laplacian(grey, 3, threshold=2.0)[3, 3], 4.0)


def test_picks_the_sharp_half_of_a_half_blurred_pair():
    sharp = texture()
    blurred = blur(sharp)
    left = np.zeros(sharp.shape[:2], bool)
    left[:, :64] = True
    a = np.where(left[..., None], sharp, blurred)  # I_A sharp on the left
    b = np.where(left[..., None], blurred, sharp)
    result = classical.fuse_classical([a, b])
    window = classical.DEFAULT_WINDOW
    # Away from the seam (one window), F_final is 1 on the left and 0 on the right.
    assert np.all(result.f_final[:, :64 - window] == 1.0)
    assert np.all(result.f_final[:, 64 + window:] == 0.0)
    np.testing.assert_array_equal(result.fused[:, :64 - window], sharp[:, :64 - window])
    np.testing.assert_array_equal(result.fused[:, 64 + window:], sharp[:, 64 + window:])
    # Eq. 14 with a binary F_final: every pixel is a source pixel.
    mask = result.f_final[..., None] > 0.5
    np.testing.assert_array_equal(result.fused, np.where(mask, a, b))
    assert set(result.timings) == {"focus", "srr", "fusion", "total"}
    # Swapping the sources swaps the map.
    swapped = classical.fuse_classical([b, a])
    np.testing.assert_array_equal(swapped.f_final, 1.0 - result.f_final)


def test_bands_equal_the_whole_image():
    a, b = texture(seed=1), texture(seed=2)
    whole = classical.focus_map(a, b, window=9, step=2, rows_per_band=10_000)
    for rows in (1, 7, 40):
        np.testing.assert_array_equal(classical.focus_map(a, b, 9, 2, rows_per_band=rows), whole)


def test_ties_are_one_half_and_blend_without_srr():
    flat = np.full((40, 40, 3), 100, np.uint8)
    other = np.full((40, 40, 3), 50, np.uint8)
    f_hat = classical.focus_map(flat, other)
    assert np.all(f_hat == 0.5)
    result = classical.fuse_classical([flat, other], srr=False)
    assert np.all(result.fused == 75)


def test_stack_of_three_takes_each_frame_where_it_is_sharp():
    sharp = texture(96, 144, seed=3)
    blurred = blur(sharp, 3.0)
    frames = []
    for k in range(3):
        zone = np.zeros(sharp.shape[:2], bool)
        zone[:, 48 * k:48 * (k + 1)] = True
        frames.append(np.where(zone[..., None], sharp, blurred))
    result = classical.fuse_classical(frames)
    assert result.f_final is None and result.index_map.dtype == np.uint8
    margin = classical.DEFAULT_WINDOW
    for k in range(3):
        lo, hi = 48 * k + margin, 48 * (k + 1) - margin
        assert np.all(result.index_map[:, lo:hi] == k), k
        np.testing.assert_array_equal(result.fused[:, lo:hi], sharp[:, lo:hi])


@pytest.mark.parametrize("dtype", [np.uint16, np.float32])
def test_grey_and_other_dtypes_keep_their_dtype(dtype):
    sharp = texture(64, 64)[..., 0]
    blurred = ndimage.gaussian_filter(sharp.astype(np.float64), 2.0)
    top = 65535 if dtype == np.uint16 else 1.0
    a = (sharp / 255.0 * top).astype(dtype)
    b = (blurred / 255.0 * top).astype(dtype)
    result = classical.fuse_classical([a, b])
    assert result.fused.dtype == dtype and result.fused.shape == (64, 64)
    assert result.f_final.mean() > 0.9  # I_A is the sharp one everywhere


def test_bad_input_gives_one_line_errors():
    a = texture(32, 32)
    with pytest.raises(InputError, match="at least two sources"):
        classical.fuse_classical([a])
    with pytest.raises(InputError, match="source 1: shape"):
        classical.fuse_classical([a, texture(32, 40)])
    with pytest.raises(InputError, match="dtype"):
        classical.fuse_classical([a, a.astype(np.float32) / 255.0])
    with pytest.raises(ValueError, match="odd"):
        classical.fuse_classical([a, a], window=4)
