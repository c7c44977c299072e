"""F_hat over several scales: G also run on the sources downscaled by integer factors.

G learns from images about 320 pixels on their shorter side (the training pipeline's
`resize_shorter`), with Gaussian blur of 1 to 4.5 pixels (eq. 9's sigma). On a 520 x 520
Lytro pair objects and blur are about 1.6 times that size in pixels, and flat regions are
decided on less context. Running G once more on the sources downscaled by 2 (the box mean of 2 x 2
pixels) and averaging the two focus maps at full resolution gives it both views: the
full-resolution pass places the boundaries, the half-resolution pass sees the objects at the
scale it was trained on. The final map is still F_hat binarised at full resolution, and eq. 14
still takes the original pixels.

Scales are 1/k for integer k. For a factor k the sources are padded to a multiple of k (and
to at least 2k pixels a side, the smallest input G takes) by repeating their last row and
column, averaged over k x k blocks, and G's map is resized back bilinearly (half-pixel
centres) and cropped. The same code builds the exported graphs (`export/serving.py`), so the
SavedModel, the TFLite models and `mfif_tf.fuse` give the same maps.

The default (1, 1/2) was chosen on real pairs outside the test set (the 12 pairs of the
`lytro_triple` stacks): see MODEL_CARD.md.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import tensorflow as tf

# TensorFlow is imported inside the graph functions only, so that checking a --scales flag
# does not load it.
DEFAULT_SCALES = (1.0,)  # the paper's single pass; (1.0, 0.5) adds a half-resolution pass
# G pads by mirroring to a multiple of 4, which needs at least 2 pixels a side.
MIN_SIDE = 2


def parse_scales(scales: Iterable[float | str] | str) -> tuple[float, ...]:
    """Checks scales (floats or a comma-separated string such as "1,0.5"): each 1/k for an
    integer k >= 1, no repeats. Raises ValueError naming the bad value."""
    if isinstance(scales, str):
        items = [s.strip() for s in scales.split(",") if s.strip()]
    else:
        items = list(scales)
    if not items:
        raise ValueError("scales must name at least one scale, e.g. 1,0.5")
    out: list[float] = []
    for item in items:
        try:
            value = float(item)
        except (TypeError, ValueError):
            raise ValueError(f"scale {item!r} is not a number") from None
        if not 0.0 < value <= 1.0:
            raise ValueError(f"scale {item!r} must be in (0, 1] (1 is full resolution)")
        k = round(1.0 / value)
        if abs(1.0 / value - k) > 1e-6 * k:
            raise ValueError(f"scale {item!r} must be 1/k for an integer k "
                             "(1, 0.5, 0.333..., 0.25, ...)")
        if 1.0 / k in out:
            raise ValueError(f"scale {item!r} is given twice")
        out.append(1.0 / k)
    return tuple(out)


def factor(scale: float) -> int:
    """The integer downscaling factor k of scale 1/k."""
    return round(1.0 / scale)


def padded_side(size, k: int):
    """The side the sources are padded to before a k x k box mean: a multiple of k, and at
    least `MIN_SIDE` * k so that the downscaled image is one G takes (works on ints and
    scalar tensors)."""
    if isinstance(size, int):
        return max(-(-size // k) * k, MIN_SIDE * k)
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    return tf.maximum((size + k - 1) // k * k, MIN_SIDE * k)


def _edge_padded(images: tf.Tensor, k) -> tf.Tensor:
    """`images` with their last row and column repeated up to `padded_side` (k an int or a
    scalar int32 tensor)."""
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    shape = tf.shape(images)
    height, width = shape[1], shape[2]
    rows = tf.minimum(tf.range(padded_side(height, k)), height - 1)
    cols = tf.minimum(tf.range(padded_side(width, k)), width - 1)
    return tf.gather(tf.gather(images, rows, axis=1), cols, axis=2)


def downscale(images: tf.Tensor, k: int) -> tf.Tensor:
    """(N, H, W, C) float -> (N, Hp/k, Wp/k, C): edge-padded to `padded_side`, k x k means."""
    if k == 1:
        return images
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    return tf.nn.avg_pool2d(_edge_padded(images, k), ksize=k, strides=k, padding="VALID")


def upscale(focus: tf.Tensor, k, height, width) -> tf.Tensor:
    """(N, h, w, 1) map of a k-downscaled pass -> (N, height, width, 1): bilinear to the
    padded size (half-pixel centres), then cropped (k an int or a scalar int32 tensor)."""
    if isinstance(k, int) and k == 1:
        return focus
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    shape = tf.shape(focus)
    full = tf.image.resize(focus, tf.stack([shape[1] * k, shape[2] * k]), method="bilinear")
    return full[:, :height, :width, :]


def multiscale(predict: Callable[[tf.Tensor, tf.Tensor], tf.Tensor], image_a: tf.Tensor,
               image_b: tf.Tensor, scales: Sequence[float] = DEFAULT_SCALES) -> tf.Tensor:
    """The mean over `scales` of F_hat = `predict`(I_A, I_B) for (N, H, W, C) float sources,
    each pass brought back to (N, H, W, 1); scales (1,) is `predict` alone, no extra ops."""
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    shape = tf.shape(image_a)
    total = None
    for scale in scales:
        k = factor(scale)
        f_hat = upscale(predict(downscale(image_a, k), downscale(image_b, k)), k,
                        shape[1], shape[2])
        total = f_hat if total is None else total + f_hat
    return total if len(scales) == 1 else total / float(len(scales))


def downscale_by(images: tf.Tensor, k: tf.Tensor) -> tf.Tensor:
    """`downscale` with k a scalar int32 tensor (a factor known only when the graph runs):
    the k x k box means as a reshape and a mean."""
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    padded = _edge_padded(images, k)
    shape = tf.shape(padded)
    blocks = tf.reshape(padded, tf.stack([shape[0], shape[1] // k, k, shape[2] // k, k,
                                          shape[3]]))
    return tf.reduce_mean(blocks, axis=[2, 4])


def multiscale_by(predict: Callable[[tf.Tensor, tf.Tensor], tf.Tensor], image_a: tf.Tensor,
                  image_b: tf.Tensor, scales: Sequence[float], k: tf.Tensor) -> tf.Tensor:
    """`multiscale` on the sources box-averaged by a further factor k (a scalar int32
    tensor, 1 included): each scale s runs G at 1 / (k round(1/s)) of the size."""
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    shape = tf.shape(image_a)
    total = None
    for scale in scales:
        kk = k * factor(scale)
        f_hat = upscale(predict(downscale_by(image_a, kk), downscale_by(image_b, kk)), kk,
                        shape[1], shape[2])
        total = f_hat if total is None else total + f_hat
    return total if len(scales) == 1 else total / float(len(scales))
