"""Sums and maxima over sliding windows of (N, H, W, C) maps, separable: the focus measure's
box sums (`inference.sum_modified_laplacian`, `inference.measure_check`) and the squares
that grow R's band and G's outline zone (`refiner.band`, `inference.outline_zone`).

TensorFlow computes them by doubling: sums (or maxima) of 2, 4, 8 ... consecutive elements
from shifted slices of the last, then one piece per set bit of the window, about
2 log2(window) whole-map additions (or maxima) per axis. On CPUs without AMX or AVX-512 that
is an order of magnitude faster than TensorFlow's one-channel convolutions and pooling ops
(docs/benchmarks.md, "Window sums and maxima by doubling"); maxima are exact, sums equal up
to float32 rounding (a running sum's differences would lose precision along a long row).

The LiteRT graphs take the convolution and pooling ops instead (`litert_window_ops`): in a
dynamic-size graph LiteRT runs slices and additions in reference kernels, several times
slower than the convolutions and pools its CPU delegate takes.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import tensorflow as tf

# Whether window ops trace as convolutions and pools (`litert_window_ops`).
_LITERT = [False]


@contextlib.contextmanager
def litert_window_ops() -> Iterator[None]:
    """Functions traced in this block compute `box_sum` as two one-channel convolutions and
    `max_square` as two max pools, the ops LiteRT's CPU delegate takes at any size."""
    _LITERT[0], before = True, _LITERT[0]
    try:
        yield
    finally:
        _LITERT[0] = before


def box_sum(x: tf.Tensor, window: int) -> tf.Tensor:
    """Sums of (N, H, W, 1) over window x window boxes (window odd), mirrored at the
    edges."""
    h = window // 2
    padded = tf.pad(x, [[0, 0], [h, h], [h, h], [0, 0]], mode="SYMMETRIC")
    if _LITERT[0]:
        rows = tf.nn.conv2d(padded, tf.ones([window, 1, 1, 1]), 1, "VALID")
        return tf.nn.conv2d(rows, tf.ones([1, window, 1, 1]), 1, "VALID")
    return window_reduce(window_reduce(padded, window, 1, tf.add), window, 2, tf.add)


def max_square(x: tf.Tensor, side: int) -> tf.Tensor:
    """Maximum of (N, H, W, C) float over a side x side square (centred, as a SAME max
    pool: beyond the edges nothing counts)."""
    if _LITERT[0]:
        x = tf.nn.max_pool2d(x, [1, side], 1, "SAME")
        return tf.nn.max_pool2d(x, [side, 1], 1, "SAME")
    before = (side - 1) // 2
    padded = tf.pad(x, [[0, 0], [before, side - 1 - before], [before, side - 1 - before],
                        [0, 0]], constant_values=x.dtype.min)
    return window_reduce(window_reduce(padded, side, 2, tf.maximum), side, 1, tf.maximum)


def window_reduce(x: tf.Tensor, window: int, axis: int,
                  combine: Callable[[tf.Tensor, tf.Tensor], tf.Tensor]) -> tf.Tensor:
    """`combine` (tf.add, tf.maximum) of `window` consecutive elements along `axis` (1 or 2)
    of (N, H, W, C), by doubling: that axis shrinks by window - 1."""
    length = tf.shape(x)[axis]
    count = length - (window - 1)  # the results wanted

    def part(t, start, size):
        return t[:, start:start + size] if axis == 1 else t[:, :, start:start + size]

    total, offset, run, width = None, 0, x, 1  # run: `width` consecutive elements combined
    remaining = window
    while True:
        if remaining & 1:
            piece = part(run, offset, count)
            total = piece if total is None else combine(total, piece)
            offset += width
        remaining >>= 1
        if not remaining:
            return total
        run = combine(part(run, 0, length - 2 * width + 1),
                      part(run, width, length - 2 * width + 1))
        width *= 2
