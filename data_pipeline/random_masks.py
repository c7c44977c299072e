"""Random smooth-edged focus maps F for images that come without a mask (TensorFlow ops).

A few Gaussian noise values on a coarse grid are upsampled (bicubic) into a smooth field and
thresholded at a random quantile, giving one or several blobs with smooth, curved boundaries
that cover 30-70 % of the image. Everything is drawn with stateless random ops from a seed, so
the same seed gives the same mask.
"""

from __future__ import annotations

import tensorflow as tf

__all__ = ["random_smooth_mask"]

_FIELD_SIZE = 64  # resolution at which the threshold quantile is taken


def random_smooth_mask(
    height: tf.Tensor | int,
    width: tf.Tensor | int,
    seed: tf.Tensor,
    min_cells: int = 2,
    max_cells: int = 5,
    min_fraction: float = 0.3,
    max_fraction: float = 0.7,
) -> tf.Tensor:
    """Draws F, float32 (height, width, 1) in {0, 1}.

    Args:
      height, width: output size.
      seed: int32/int64 tensor of shape (2,), as for `tf.random.stateless_uniform`.
      min_cells, max_cells: range of the coarse noise grid size; more cells, more blobs.
      min_fraction, max_fraction: range of the foreground share of the image.
    """
    seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), num=4)
    cells_h = tf.random.stateless_uniform([], seeds[0], min_cells, max_cells + 1, tf.int32)
    cells_w = tf.random.stateless_uniform([], seeds[1], min_cells, max_cells + 1, tf.int32)
    noise = tf.random.stateless_normal(tf.stack([1, cells_h, cells_w, 1]), seeds[2])
    field = tf.image.resize(noise, [_FIELD_SIZE, _FIELD_SIZE], method="bicubic")
    fraction = tf.random.stateless_uniform([], seeds[3], min_fraction, max_fraction)
    values = tf.sort(tf.reshape(field, [-1]), direction="DESCENDING")
    index = tf.cast(fraction * (_FIELD_SIZE * _FIELD_SIZE - 1), tf.int32)
    threshold = values[index]
    full = tf.image.resize(field, tf.stack([height, width]), method="bilinear")[0]
    return tf.cast(full > threshold, tf.float32)
