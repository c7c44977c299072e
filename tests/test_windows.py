"""Window sums and maxima (`mfif_tf.windows`): by doubling in TensorFlow, by convolution and
pooling in the LiteRT graphs (`litert_window_ops`), the same values either way."""

import numpy as np
import pytest
import tensorflow as tf

from mfif_tf import windows


def _box_sums64(x: np.ndarray, window: int) -> np.ndarray:
    """Exact (float64) window x window sums, mirrored at the edges."""
    h = window // 2
    padded = np.pad(x.astype(np.float64), [(0, 0), (h, h), (h, h), (0, 0)], mode="symmetric")
    cumulative = np.pad(padded.cumsum(1).cumsum(2), [(0, 0), (1, 0), (1, 0), (0, 0)])
    return (cumulative[:, window:, window:] - cumulative[:, :-window, window:]
            - cumulative[:, window:, :-window] + cumulative[:, :-window, :-window])


@pytest.mark.parametrize("window", [1, 3, 5, 9, 15, 31])
def test_box_sums_by_doubling_and_by_convolution_agree(window):
    """Both forms are the float64 sums up to float32 rounding, on sizes that are not
    multiples of the window, in a graph of unknown size as well."""
    rng = np.random.default_rng(window)
    x = rng.exponential(0.05, (2, 37, 61, 1)).astype(np.float32)
    want = _box_sums64(x, window)
    dynamic = tf.TensorSpec([None, None, None, 1], tf.float32)
    doubled = windows.box_sum(tf.constant(x), window).numpy()
    traced = tf.function(lambda t: windows.box_sum(t, window), input_signature=[dynamic])(x)
    with windows.litert_window_ops():
        convolved = tf.function(lambda t: windows.box_sum(t, window))(tf.constant(x))
    assert doubled.shape == convolved.shape == x.shape
    for got in (doubled, traced.numpy(), convolved.numpy()):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("side", [1, 2, 3, 4, 9, 25, 33])
def test_max_square_is_the_same_pool_as_max_pool2d(side):
    """Exactly the SAME max pool's values (even sides too), negative values included, so
    that beyond the edges nothing counts; on maps smaller than the square as well."""
    rng = np.random.default_rng(side)
    for shape in [(2, 41, 57, 1), (1, 5, 7, 2)]:
        x = rng.normal(0, 1, shape).astype(np.float32) - 3.0
        want = tf.nn.max_pool2d(tf.nn.max_pool2d(x, [1, side], 1, "SAME"), [side, 1], 1,
                                "SAME").numpy()
        np.testing.assert_array_equal(windows.max_square(tf.constant(x), side).numpy(), want)
        with windows.litert_window_ops():
            pooled = windows.max_square(tf.constant(x), side).numpy()
        np.testing.assert_array_equal(pooled, want)
    grid = (rng.uniform(0, 1, (1, 30, 40, 1)) > 0.95).astype(np.float32)
    np.testing.assert_array_equal(windows.max_square(tf.constant(grid), side).numpy(),
                                  tf.nn.max_pool2d(tf.nn.max_pool2d(grid, [1, side], 1, "SAME"),
                                                   [side, 1], 1, "SAME").numpy())


def test_litert_window_ops_is_restored_after_the_block():
    x = tf.ones([1, 8, 8, 1])
    with pytest.raises(RuntimeError):
        with windows.litert_window_ops():
            assert windows._LITERT[0]
            raise RuntimeError("inside")
    assert not windows._LITERT[0]
    np.testing.assert_allclose(windows.box_sum(x, 3).numpy(), 9.0)
