"""Holds eqs. 9-13 (section 4.1.1) against a plain NumPy/SciPy rendering, pixel by pixel."""

import math

import numpy as np
import pytest
import tensorflow as tf
from scipy import ndimage

from data_pipeline import synthesis


def _np_kernel_2d(sigma: float) -> np.ndarray:
    """MATLAB imgaussfilt kernel: (2*ceil(2*sigma)+1)^2 taps of exp(-(x^2+y^2)/(2 sigma^2)),
    normalised to sum 1."""
    r = math.ceil(2 * sigma)
    x = np.arange(-r, r + 1, dtype=np.float64)
    k = np.exp(-(x[:, None] ** 2 + x[None, :] ** 2) / (2 * sigma**2))
    return k / k.sum()


def _np_blur(x: np.ndarray, sigma: float) -> np.ndarray:
    """G (x) x per channel, 2-D correlation with 'replicate' (scipy 'nearest') borders."""
    k = _np_kernel_2d(sigma)
    return np.stack(
        [ndimage.correlate(x[..., c], k, mode="nearest") for c in range(x.shape[-1])], axis=-1)


def _sample(h=23, w=31, seed=0):
    rng = np.random.default_rng(seed)
    image = rng.random((h, w, 3))
    mask = np.zeros((h, w, 1))
    mask[5:17, 8:22] = 1.0
    mask[0:3, 0:4] = 1.0  # a foreground patch touching the border exercises the padding
    return image, mask


@pytest.mark.parametrize("sigma", [0.5, 1.0, 1.7, 3.0])
def test_kernel_matches_imgaussfilt_convention(sigma):
    k2 = synthesis.gaussian_kernel_2d(sigma).numpy()
    expected = _np_kernel_2d(sigma)
    assert k2.shape == expected.shape == (2 * math.ceil(2 * sigma) + 1,) * 2
    np.testing.assert_allclose(k2, expected, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(k2.sum(), 1.0, rtol=1e-6)


def test_kernel_sizes_by_hand():
    # sigma = 1 -> 5 taps, sigma = 2 -> 9 taps, sigma = 0.3 -> 3 taps.
    assert synthesis.gaussian_kernel(1.0).shape == (5,)
    assert synthesis.gaussian_kernel(2.0).shape == (9,)
    assert synthesis.gaussian_kernel(0.3).shape == (3,)
    # sigma = 1: taps exp(-x^2/2) for x = -2..2, normalised.
    t = np.exp(-np.arange(-2, 3) ** 2 / 2.0)
    np.testing.assert_allclose(synthesis.gaussian_kernel(1.0).numpy(), t / t.sum(), rtol=1e-6)


def test_padded_kernel_filters_like_exact_kernel():
    image, _ = _sample()
    exact = synthesis.gaussian_filter(image, 1.2).numpy()
    padded = synthesis.gaussian_filter(image, 1.2, max_radius=8).numpy()
    assert synthesis.gaussian_kernel(1.2, max_radius=8).shape == (17,)
    np.testing.assert_allclose(padded, exact, atol=1e-6)


def test_padded_kernel_rejects_too_small_radius():
    with pytest.raises(tf.errors.InvalidArgumentError, match="max_radius"):
        synthesis.gaussian_kernel(3.0, max_radius=2)


@pytest.mark.parametrize("sigma", [1.0, 2.5])
def test_gaussian_filter_matches_replicate_correlation(sigma):
    image, _ = _sample()
    got = synthesis.gaussian_filter(image.astype(np.float32), sigma).numpy()
    np.testing.assert_allclose(got, _np_blur(image, sigma), atol=2e-6)


@pytest.mark.parametrize("sigma", [1.0, 2.5])
def test_alpha_matte_pair_eqs_10_11(sigma):
    image, f = _sample(seed=1)
    # eq. 10: I_A = F*I + (1-F) * {G (x) [(1-F)*I]}
    want_a = f * image + (1 - f) * _np_blur((1 - f) * image, sigma)
    # eq. 11: I_B = G (x) (F*I) + (1 - G (x) F) * [(1-F)*I]
    want_b = _np_blur(f * image, sigma) + (1 - _np_blur(f, sigma)) * ((1 - f) * image)
    got_a, got_b = synthesis.alpha_matte_pair(
        image.astype(np.float32), f.astype(np.float32), sigma)
    np.testing.assert_allclose(got_a.numpy(), want_a, atol=2e-6)
    np.testing.assert_allclose(got_b.numpy(), want_b, atol=2e-6)


@pytest.mark.parametrize("sigma", [1.0, 2.5])
def test_alpha_matte_filled_pair_against_numpy(sigma):
    image, f = _sample(seed=5)
    visible_bg = np.maximum(1 - _np_blur(f, sigma), 1e-3)  # G (x) (1-F)
    bg_blur = _np_blur((1 - f) * image, sigma)
    want_a = f * image + (1 - f) * np.clip(bg_blur / visible_bg, 0, 1)
    want_b = _np_blur(f * image, sigma) + (1 - _np_blur(f, sigma)) * ((1 - f) * image) + f * bg_blur
    got_a, got_b = synthesis.alpha_matte_filled_pair(
        image.astype(np.float32), f.astype(np.float32), sigma)
    np.testing.assert_allclose(got_a.numpy(), want_a, atol=1e-5)
    np.testing.assert_allclose(got_b.numpy(), want_b, atol=2e-6)


def test_filled_pair_has_no_dark_seam():
    # On a uniform grey photo no source should change anywhere, whatever the mask: the
    # filled model keeps every pixel at 0.6, while eqs. 10-11 darken both sides of the
    # boundary because the hidden background counts as black.
    _, f = _sample(seed=6)
    image = np.full(f.shape[:2] + (3,), 0.6, np.float32)
    a, b = synthesis.alpha_matte_filled_pair(image, f.astype(np.float32), 2.0)
    np.testing.assert_allclose(a.numpy(), image, atol=1e-5)
    np.testing.assert_allclose(b.numpy(), image, atol=1e-5)
    a_paper, b_paper = synthesis.alpha_matte_pair(image, f.astype(np.float32), 2.0)
    assert a_paper.numpy().min() < 0.45 and b_paper.numpy().min() < 0.45


def test_filled_pair_equals_eqs_10_11_beyond_the_kernel():
    image, f = _sample(seed=7)
    image, f = image.astype(np.float32), f.astype(np.float32)
    a_fill, b_fill = synthesis.alpha_matte_filled_pair(image, f, 1.5)
    a_paper, b_paper = synthesis.alpha_matte_pair(image, f, 1.5)
    edge = f[..., 0] != ndimage.binary_erosion(f[..., 0], np.ones((3, 3)), border_value=1)
    far = ~ndimage.binary_dilation(edge, structure=np.ones((3, 3)), iterations=4)
    assert far.sum() > 100
    np.testing.assert_allclose(a_fill.numpy()[far], a_paper.numpy()[far], atol=1e-5)
    np.testing.assert_allclose(b_fill.numpy()[far], b_paper.numpy()[far], atol=1e-5)
    by_name = synthesis.synthesize_pair(image, f, 1.5, method="alpha_matte_filled")
    np.testing.assert_array_equal(by_name[0].numpy(), a_fill.numpy())


@pytest.mark.parametrize("sigma", [1.0, 2.5])
def test_conventional_pair_eqs_12_13(sigma):
    image, f = _sample(seed=2)
    blur = _np_blur(image, sigma)
    want_a = f * image + (1 - f) * blur  # eq. 12
    want_b = f * blur + (1 - f) * image  # eq. 13
    got_a, got_b = synthesis.conventional_pair(
        image.astype(np.float32), f.astype(np.float32), sigma)
    np.testing.assert_allclose(got_a.numpy(), want_a, atol=2e-6)
    np.testing.assert_allclose(got_b.numpy(), want_b, atol=2e-6)


@pytest.mark.parametrize("method", ["alpha_matte", "conventional"])
def test_focused_frame_between_the_layers(method):
    image, f = _sample(seed=5)
    image, f = image.astype(np.float32), f.astype(np.float32)
    sigma_fg, sigma_bg = 1.2, 2.5
    if method == "conventional":  # eqs. 12-13, one Gaussian per layer
        want = f * _np_blur(image, sigma_fg) + (1 - f) * _np_blur(image, sigma_bg)
    else:  # the blurred foreground over the blurred background (eqs. 7-9)
        fg, alpha = _np_blur(f * image, sigma_fg), _np_blur(f, sigma_fg)
        want = fg + (1 - alpha) * _np_blur((1 - f) * image, sigma_bg)
    got = synthesis.focused_frame(image, f, sigma_fg, sigma_bg, method)
    np.testing.assert_allclose(got.numpy(), want, atol=2e-6)
    # The ends of the sweep are the pair: (0, sigma) is I_A, (sigma, 0) is I_B.
    a, b = synthesis.synthesize_pair(image, f, 2.0, method)
    np.testing.assert_allclose(synthesis.focused_frame(image, f, 0.0, 2.0, method), a, atol=1e-6)
    np.testing.assert_allclose(synthesis.focused_frame(image, f, 2.0, 0.0, method), b, atol=1e-6)


def test_focused_frame_agrees_with_the_ground_truth_sets_frames():
    from data_pipeline import ground_truth

    image, f = _sample(h=40, w=48, seed=6)
    pixels = np.round(image * 255).astype(np.uint8)
    for method in ("alpha_matte", "conventional"):
        want = ground_truth.synthesize_stack(pixels, f[..., 0] > 0.5, 4.0, method, 1,
                                             positions=(0.4,))[0]
        got = synthesis.focused_frame(pixels.astype(np.float32) / 255, f.astype(np.float32),
                                      0.4 * 4.0, 0.6 * 4.0, method).numpy() * 255
        assert np.abs(got - want).max() <= 0.5 + 1e-3
    with pytest.raises(ValueError, match="alpha_matte or conventional"):
        synthesis.focused_frame(image, f, 1.0, 1.0, "alpha_matte_filled")


def test_defocus_spread_differs_from_conventional():
    # The alpha-matte I_B spreads the blurred foreground over the clear background next to the
    # boundary (the DSE); the conventional I_B keeps that background sharp.
    image, f = _sample(seed=3)
    image, f = image.astype(np.float32), f.astype(np.float32)
    _, b_alpha = synthesis.alpha_matte_pair(image, f, 2.0)
    _, b_conv = synthesis.conventional_pair(image, f, 2.0)
    outside_ring = (ndimage.binary_dilation(f[..., 0], iterations=2) & (f[..., 0] == 0))
    diff = np.abs(b_alpha.numpy() - b_conv.numpy())[outside_ring]
    assert diff.mean() > 0.01
    # Beyond the kernel's reach (radius ceil(2*2) = 4, Chebyshev distance) both keep the clear
    # background exactly.
    far = ~ndimage.binary_dilation(f[..., 0], structure=np.ones((3, 3)), iterations=4)
    np.testing.assert_allclose(b_alpha.numpy()[far], image[far], atol=1e-6)
    np.testing.assert_allclose(b_conv.numpy()[far], image[far], atol=1e-6)


def test_tensor_sigma_inside_tf_data_map():
    image, f = _sample(seed=4)
    sigmas = np.array([0.8, 1.6, 2.9], np.float32)
    ds = tf.data.Dataset.from_tensor_slices(sigmas).map(
        lambda s: (s,) + synthesis.alpha_matte_pair(
            tf.constant(image, tf.float32), tf.constant(f, tf.float32), s))
    for s, got_a, got_b in ds:
        s = float(s)
        want_a = f * image + (1 - f) * _np_blur((1 - f) * image, s)
        want_b = _np_blur(f * image, s) + (1 - _np_blur(f, s)) * ((1 - f) * image)
        np.testing.assert_allclose(got_a.numpy(), want_a, atol=2e-6)
        np.testing.assert_allclose(got_b.numpy(), want_b, atol=2e-6)


def test_batched_input_equals_per_image():
    image, f = _sample(seed=5)
    image2, f2 = _sample(seed=6)
    images = np.stack([image, image2]).astype(np.float32)
    masks = np.stack([f, 1 - f]).astype(np.float32)
    a, b = synthesis.alpha_matte_pair(images, masks, 1.0)
    for i in range(2):
        ai, bi = synthesis.alpha_matte_pair(images[i], masks[i], 1.0)
        np.testing.assert_allclose(a[i].numpy(), ai.numpy(), atol=1e-6)
        np.testing.assert_allclose(b[i].numpy(), bi.numpy(), atol=1e-6)


def test_bad_shapes_raise_clear_errors():
    image = np.zeros((8, 8, 3), np.float32)
    with pytest.raises(ValueError, match="differs from image"):
        synthesis.alpha_matte_pair(image, np.zeros((8, 9, 1), np.float32), 1.0)
    with pytest.raises(ValueError, match="one channel"):
        synthesis.alpha_matte_pair(image, np.zeros((8, 8, 3), np.float32), 1.0)
    with pytest.raises(ValueError, match="rank"):
        synthesis.conventional_pair(image[..., 0], np.zeros((8, 8), np.float32), 1.0)
    with pytest.raises(ValueError, match="unknown synthesis"):
        synthesis.synthesize_pair(image, np.zeros((8, 8, 1), np.float32), 1.0, method="nope")
