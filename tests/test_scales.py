"""F_hat over several scales (`mfif_tf.scales`): parsing, box-mean downscaling, the mean of
the passes, and the same maps from the NumPy path of `fuse` and the exported graph."""

import numpy as np
import pytest
import tensorflow as tf

from export.serving import predict_focus
from mfif_tf import scales, tiling
from tests.conftest import decisive_generator


@pytest.fixture(scope="module")
def generator():
    return decisive_generator(5)


def test_parse_scales():
    assert scales.parse_scales("1,0.5") == (1.0, 0.5)
    assert scales.parse_scales([1, 0.25, 1 / 3]) == (1.0, 0.25, 1 / 3)
    assert scales.parse_scales(" 0.5 ") == (0.5,)
    for bad, message in [("", "at least one"), ("1,x", "not a number"), ("0", r"\(0, 1\]"),
                         ("2", r"\(0, 1\]"), ("0.3", "1/k"), ("1,1.0", "twice"),
                         ([0.5, 0.5], "twice")]:
        with pytest.raises(ValueError, match=message):
            scales.parse_scales(bad)


@pytest.mark.parametrize("height,width,k", [(7, 10, 2), (9, 9, 3), (2, 3, 2), (1, 5, 4)])
def test_downscale_is_the_box_mean_of_the_edge_padded_image(height, width, k):
    rng = np.random.default_rng(height * width)
    image = rng.random((1, height, width, 3)).astype(np.float32)
    ph, pw = scales.padded_side(height, k), scales.padded_side(width, k)
    assert ph % k == 0 and ph >= max(height, 2 * k) and pw >= max(width, 2 * k)
    padded = np.pad(image, ((0, 0), (0, ph - height), (0, pw - width), (0, 0)), mode="edge")
    want = padded.reshape(1, ph // k, k, pw // k, k, 3).mean(axis=(2, 4))
    got = scales.downscale(tf.constant(image), k).numpy()
    np.testing.assert_allclose(got, want, atol=1e-6)
    # The dynamic-shape graph pads the same way as the Python integers do.
    fn = tf.function(lambda x: scales.downscale(x, k),
                     input_signature=[tf.TensorSpec([1, None, None, 3], tf.float32)])
    np.testing.assert_allclose(fn(tf.constant(image)).numpy(), want, atol=1e-6)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32, np.float64])
@pytest.mark.parametrize("height,width,k,grey", [(7, 10, 2, False), (9, 9, 3, True),
                                                  (2, 3, 2, False), (37, 50, 4, False)])
def test_numpy_downscale_of_fuse_matches_the_graph(height, width, k, grey, dtype):
    """`fuse`'s NumPy path (`tiling._downscaled`, integer sums for integer sources) gives the
    graph's box means of the source scaled to [0, 1], to float32 rounding."""
    rng = np.random.default_rng(k * height)
    shape = (height, width) if grey else (height, width, 3)
    if np.dtype(dtype).kind == "u":
        high = np.iinfo(dtype).max
        pixels = rng.integers(0, high + 1, shape).astype(dtype)
        unit = pixels.astype(np.float32) / np.float32(high)
    else:
        pixels = rng.random(shape).astype(dtype)
        unit = pixels.astype(np.float32)
    x = unit[None, :, :, None] if grey else unit[None]
    want = scales.downscale(tf.constant(x), k).numpy()[0]
    got = tiling._downscaled(pixels, k)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, want[:, :, 0] if grey else want, atol=3e-7)


def bilinear_half_pixel(small: np.ndarray, k: int) -> np.ndarray:
    """(h, w) -> (k h, k w): output pixel o samples the small map at (o + 1/2) / k - 1/2."""
    def weights(n):
        pos = np.clip((np.arange(n * k) + 0.5) / k - 0.5, 0, n - 1)
        lo = np.floor(pos).astype(int)
        hi = np.minimum(lo + 1, n - 1)
        matrix = np.zeros((n * k, n))
        matrix[np.arange(n * k), lo] += 1 - (pos - lo)
        matrix[np.arange(n * k), hi] += pos - lo
        return matrix
    return weights(small.shape[0]) @ small @ weights(small.shape[1]).T


def test_upscale_is_half_pixel_bilinear_then_cropped():
    small = np.random.default_rng(0).random((3, 4)).astype(np.float32)
    full = scales.upscale(tf.constant(small[None, :, :, None]), 2, 5, 7).numpy()
    assert full.shape == (1, 5, 7, 1)
    np.testing.assert_allclose(full[0, :, :, 0], bilinear_half_pixel(small, 2)[:5, :7],
                               atol=1e-6)


def textured_pair(height, width, seed=0):
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 255, (height, width, 3), dtype=np.uint8, endpoint=True)
    b = a.copy()
    smooth = ((a.astype(np.float64) + np.roll(a, 1, 0) + np.roll(a, 1, 1)) / 3).astype(np.uint8)
    a[:, : width // 2] = smooth[:, : width // 2]
    b[:, width // 2:] = smooth[:, width // 2:]
    return a, b


def test_f_hat_is_the_mean_of_the_passes(generator):
    a, b = textured_pair(45, 70, seed=1)
    full = tiling.predict_focus_map(generator, a, b, tile_size=0)
    half_a = scales.downscale(tf.constant(a[None] / np.float32(255)), 2)
    half_b = scales.downscale(tf.constant(b[None] / np.float32(255)), 2)
    assert half_a.shape == (1, 23, 35, 3)
    half = generator(tf.concat([half_a, half_b], -1) * 2.0 - 1.0, training=False)
    half = scales.upscale(half, 2, 45, 70).numpy()[0, :, :, 0]
    totals = []
    got = tiling.predict_focus_map(generator, a, b, tile_size=0, scales=(1, 0.5),
                                   progress_total=totals.append)
    assert got.shape == (45, 70) and got.dtype == np.float32 and len(totals) == 2
    np.testing.assert_allclose(got, (full + half) / 2, atol=1e-5)
    # The test can fail: the half-resolution pass gives another map.
    assert np.abs(got - full).max() > 1e-2
    # Tiles, grey and uint16 sources take the same path.
    tiled = tiling.predict_focus_map(generator, a, b, tile_size=16, scales=(1, 0.5))
    np.testing.assert_allclose(tiled, got, atol=2e-5)
    wide = tiling.predict_focus_map(generator, a.astype(np.uint16) * 257,
                                    b.astype(np.uint16) * 257, scales=(1, 0.5))
    np.testing.assert_allclose(wide, got, atol=2e-5)
    grey = tiling.predict_focus_map(generator, a[..., 0], b[..., 0], scales=(1, 0.5, 0.25))
    assert grey.shape == (45, 70)


@pytest.mark.parametrize("height,width", [(37, 53), (3, 2)])
def test_graph_and_numpy_paths_agree(generator, height, width):
    a, b = textured_pair(height, width, seed=2)
    want = tiling.predict_focus_map(generator, a, b, scales=(1, 0.5, 1 / 3))
    graph = tf.function(lambda x, y: predict_focus(generator, x, y, (1.0, 0.5, 1 / 3)),
                        input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32)] * 2)
    got = graph(tf.constant(a[None] / np.float32(255)), tf.constant(b[None] / np.float32(255)))
    assert got.shape == (1, height, width, 1)
    np.testing.assert_allclose(got.numpy()[0, :, :, 0], want, atol=2e-5)
