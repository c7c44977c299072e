"""Training-pair synthesis of section 4.1.1 as TensorFlow ops (usable inside `tf.data.Dataset.map`).

Names used here and their symbols in the paper:

- `image`  I, the all-in-focus photo, float32 in [0, 1], shape (H, W, C) or (N, H, W, C).
- `mask`   F, the binary focus map (foreground = 1), float32 in {0, 1}, shape (H, W, 1) or
           (N, H, W, 1); broadcast over the colour channels.
- `sigma`  sigma of the Gaussian G(x, y; sigma); a Python float or a scalar tensor (for example a
           random draw per sample).
- `image_a`, `image_b`  the source pair I_A (foreground clear) and I_B (background clear).

The Gaussian follows MATLAB's `imgaussfilt`, which the paper authors used to make their data:
a (2*ceil(2*sigma)+1)-tap kernel normalised to sum 1, applied with 'replicate' border padding.
Because both the kernel and the padding are separable, the 2-D filter is applied as two 1-D
passes, which equals the 2-D correlation up to floating-point rounding.
"""

from __future__ import annotations

import tensorflow as tf

from data_pipeline import SYNTHESIS_METHODS

__all__ = [
    "alpha_matte_pair",
    "conventional_pair",
    "focused_frame",
    "gaussian_filter",
    "gaussian_kernel",
    "gaussian_kernel_2d",
    "kernel_radius",
    "synthesize_pair",
]


def kernel_radius(sigma: float | tf.Tensor) -> tf.Tensor:
    """Half-width ceil(2*sigma) of the `imgaussfilt` kernel, as an int32 scalar tensor."""
    sigma = tf.convert_to_tensor(sigma, tf.float32)
    return tf.cast(tf.math.ceil(2.0 * sigma), tf.int32)


def gaussian_kernel(sigma: float | tf.Tensor, max_radius: int | None = None) -> tf.Tensor:
    """1-D normalised Gaussian taps of G(x, y; sigma) (the 2-D kernel is their outer product).

    Args:
      sigma: standard deviation in pixels, > 0 (sigma == 0 gives the identity kernel [1]).
      max_radius: if given, the kernel always has 2*max_radius+1 taps: the taps beyond
        ceil(2*sigma) are zero, so the filter is the same but the shape is static. Must be
        >= ceil(2*sigma).

    Returns:
      float32 tensor of shape (2*r+1,), r = ceil(2*sigma) (or `max_radius`), summing to 1.
    """
    sigma = tf.convert_to_tensor(sigma, tf.float32)
    radius = kernel_radius(sigma)
    size_radius = radius if max_radius is None else tf.constant(max_radius, tf.int32)
    if max_radius is not None:
        tf.debugging.assert_less_equal(
            radius, size_radius, message="gaussian_kernel: ceil(2*sigma) exceeds max_radius")
    x = tf.cast(tf.range(-size_radius, size_radius + 1), tf.float32)
    safe_sigma = tf.maximum(sigma, 1e-6)
    taps = tf.exp(-tf.square(x) / (2.0 * tf.square(safe_sigma)))
    taps = tf.where(tf.abs(x) <= tf.cast(radius, tf.float32), taps, tf.zeros_like(taps))
    return taps / tf.reduce_sum(taps)


def gaussian_kernel_2d(sigma: float | tf.Tensor, max_radius: int | None = None) -> tf.Tensor:
    """2-D kernel G(x, y; sigma) of size (2*r+1, 2*r+1), normalised to sum 1 (`imgaussfilt`)."""
    k = gaussian_kernel(sigma, max_radius)
    return k[:, None] * k[None, :]


def _replicate_pad(x: tf.Tensor, radius: tf.Tensor, axis: int) -> tf.Tensor:
    """Pads `x` along `axis` by repeating its edge values `radius` times on each side."""
    n = tf.shape(x)[axis]
    idx = tf.clip_by_value(tf.range(-radius, n + radius), 0, n - 1)
    return tf.gather(x, idx, axis=axis)


def gaussian_filter(
    image: tf.Tensor, sigma: float | tf.Tensor, max_radius: int | None = None
) -> tf.Tensor:
    """G(x, y; sigma) (x) image with 'replicate' borders, like MATLAB `imgaussfilt(image, sigma)`.

    Args:
      image: float tensor (H, W, C) or (N, H, W, C).
      sigma: scalar, Python float or tensor.
      max_radius: optional fixed half-width (see `gaussian_kernel`).

    Returns:
      Filtered tensor of the input's shape and dtype float32.
    """
    image = tf.convert_to_tensor(image, tf.float32)
    rank = image.shape.rank
    if rank not in (3, 4):
        raise ValueError(f"gaussian_filter: image must have rank 3 or 4, got shape {image.shape}")
    x = image[None] if rank == 3 else image
    taps = gaussian_kernel(sigma, max_radius)
    radius = (tf.shape(taps)[0] - 1) // 2
    channels = tf.shape(x)[-1]
    # Depthwise filters: (kh, kw, C, 1), the same 1-D taps for every channel.
    k_rows = tf.tile(tf.reshape(taps, [-1, 1, 1, 1]), [1, 1, channels, 1])
    k_cols = tf.tile(tf.reshape(taps, [1, -1, 1, 1]), [1, 1, channels, 1])
    x = _replicate_pad(x, radius, axis=1)
    x = tf.nn.depthwise_conv2d(x, k_rows, strides=[1, 1, 1, 1], padding="VALID")
    x = _replicate_pad(x, radius, axis=2)
    x = tf.nn.depthwise_conv2d(x, k_cols, strides=[1, 1, 1, 1], padding="VALID")
    out = x[0] if rank == 3 else x
    return tf.ensure_shape(out, image.shape)


def _check_pair_inputs(image: tf.Tensor, mask: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    image = tf.convert_to_tensor(image, tf.float32)
    mask = tf.convert_to_tensor(mask, tf.float32)
    if image.shape.rank not in (3, 4) or mask.shape.rank != image.shape.rank:
        raise ValueError(
            f"image and mask must both have rank 3 (H, W, C) or 4 (N, H, W, C); got image "
            f"{image.shape} and mask {mask.shape}")
    if mask.shape[-1] is not None and mask.shape[-1] != 1:
        raise ValueError(f"mask must have one channel, got shape {mask.shape}")
    if image.shape[-3:-1].is_fully_defined() and mask.shape[-3:-1].is_fully_defined():
        if image.shape[-3:-1] != mask.shape[-3:-1]:
            raise ValueError(
                f"mask spatial size {mask.shape[-3:-1]} differs from image {image.shape[-3:-1]}")
    return image, mask


def _alpha_matte_layers(image, mask, sigma, max_radius):
    """FG^C, BG^C (eqs. 7-8) and their blurred versions FG^B, BG^B with F^B (eq. 9)."""
    fg_clear = mask * image  # eq. 7
    bg_clear = (1.0 - mask) * image  # eq. 8
    # One filter call over [FG^C, BG^C, F] (7 channels for RGB) gives FG^B, BG^B and F^B (eq. 9).
    blurred = gaussian_filter(tf.concat([fg_clear, bg_clear, mask], axis=-1), sigma, max_radius)
    c = tf.shape(image)[-1]
    return fg_clear, bg_clear, blurred[..., :c], blurred[..., c:2 * c], blurred[..., 2 * c:]


def alpha_matte_pair(
    image: tf.Tensor, mask: tf.Tensor, sigma: float | tf.Tensor, max_radius: int | None = None
) -> tuple[tf.Tensor, tf.Tensor]:
    """Source pair with the defocus spread effect, alpha-matte model (eqs. 7-11).

    I_A = F*I + (1-F) * [G (x) ((1-F)*I)]                  (eq. 10)
    I_B = G (x) (F*I) + (1 - G (x) F) * [(1-F)*I]           (eq. 11)

    with FG^C = F*I (eq. 7), BG^C = (1-F)*I (eq. 8), F^B = G (x) F (eq. 9).

    Args:
      image: I, float32 (H, W, C) or (N, H, W, C) in [0, 1].
      mask: F, float32 (H, W, 1) or (N, H, W, 1) in {0, 1}.
      sigma: sigma of G.
      max_radius: optional static kernel half-width (see `gaussian_kernel`).

    Returns:
      (image_a, image_b) = (I_A, I_B), same shape as `image`.
    """
    image, mask = _check_pair_inputs(image, mask)
    fg_clear, bg_clear, fg_blur, bg_blur, mask_blur = _alpha_matte_layers(
        image, mask, sigma, max_radius)
    image_a = fg_clear + (1.0 - mask) * bg_blur  # eq. 10
    image_b = fg_blur + (1.0 - mask_blur) * bg_clear  # eq. 11
    return tf.ensure_shape(image_a, image.shape), tf.ensure_shape(image_b, image.shape)


def alpha_matte_filled_pair(
    image: tf.Tensor, mask: tf.Tensor, sigma: float | tf.Tensor, max_radius: int | None = None
) -> tuple[tf.Tensor, tf.Tensor]:
    """The alpha-matte model with the hidden background filled instead of black.

    Eqs. 10-11 blur BG^C = (1-F)*I, in which the background hidden behind the object counts as
    black, so both sources get a dark seam about 2 sigma wide along the object boundary that
    real photos do not have (a lens sees the defocused background behind the object's edge).
    Here the hidden background is estimated by normalized convolution, BG^B / (G (x) (1-F)),
    the mean of the visible background under the kernel:

    I_A = F*I + (1-F) * BG^B / (G (x) (1-F))                 (eq. 10, filled)
    I_B = FG^B + (1 - F^B) * (1-F)*I + F * BG^B               (eq. 11, filled)

    In I_B the weight of the hidden background behind the object is
    (1 - F^B) * F = (G (x) (1-F)) * F, so its filled value times that weight is F * BG^B.
    Away from the boundary (farther than the kernel reaches) both equal eqs. 10-11.

    Arguments and return value as in `alpha_matte_pair`.
    """
    image, mask = _check_pair_inputs(image, mask)
    fg_clear, bg_clear, fg_blur, bg_blur, mask_blur = _alpha_matte_layers(
        image, mask, sigma, max_radius)
    visible_bg = tf.maximum(1.0 - mask_blur, 1e-3)  # G (x) (1-F); positive on background pixels
    image_a = fg_clear + (1.0 - mask) * tf.clip_by_value(bg_blur / visible_bg, 0.0, 1.0)
    image_b = fg_blur + (1.0 - mask_blur) * bg_clear + mask * bg_blur
    return tf.ensure_shape(image_a, image.shape), tf.ensure_shape(image_b, image.shape)


def conventional_pair(
    image: tf.Tensor, mask: tf.Tensor, sigma: float | tf.Tensor, max_radius: int | None = None
) -> tuple[tf.Tensor, tf.Tensor]:
    """Source pair without the defocus spread effect, used for the ablation (eqs. 12-13).

    I_A = F*I + (1-F) * (G (x) I)      (eq. 12)
    I_B = F * (G (x) I) + (1-F)*I      (eq. 13)

    Arguments and return value as in `alpha_matte_pair`.
    """
    image, mask = _check_pair_inputs(image, mask)
    blurred = gaussian_filter(image, sigma, max_radius)
    image_a = mask * image + (1.0 - mask) * blurred  # eq. 12
    image_b = mask * blurred + (1.0 - mask) * image  # eq. 13
    return image_a, image_b


def focused_frame(
    image: tf.Tensor, mask: tf.Tensor, sigma_fg: float | tf.Tensor, sigma_bg: float | tf.Tensor,
    method: str = "alpha_matte", max_radius: int | None = None,
) -> tf.Tensor:
    """A source focused anywhere between the two layers: the foreground blurred with
    `sigma_fg`, the background with `sigma_bg` (0 leaves a layer sharp), as a focus sweep's
    frame sees them.

    alpha_matte, the blurred foreground over the blurred background (eqs. 7-9's layers):

        I_t = G_F (x) (F*I) + (1 - G_F (x) F) * [G_B (x) ((1-F)*I)],

    eq. 11 at (sigma, 0); at (0, sigma) it is F*I + (1-F) * [G (x) ((1-F)*I)], eq. 10.
    conventional, eqs. 12-13 with one Gaussian per layer:

        I_t = F * (G_F (x) I) + (1-F) * (G_B (x) I),

    eq. 13 at (sigma, 0) and eq. 12 at (0, sigma). Arguments as in `alpha_matte_pair`;
    `method` "alpha_matte" or "conventional". Returns I_t, the shape of `image`.
    """
    if method not in ("alpha_matte", "conventional"):
        raise ValueError(f"focused_frame: method must be alpha_matte or conventional, got "
                         f"{method!r}")
    image, mask = _check_pair_inputs(image, mask)
    if method == "conventional":
        frame = (mask * gaussian_filter(image, sigma_fg, max_radius)
                 + (1.0 - mask) * gaussian_filter(image, sigma_bg, max_radius))
    else:
        c = tf.shape(image)[-1]
        layers = gaussian_filter(tf.concat([mask * image, mask], axis=-1), sigma_fg, max_radius)
        frame = layers[..., :c] + (1.0 - layers[..., c:]) * gaussian_filter(
            (1.0 - mask) * image, sigma_bg, max_radius)
    return tf.ensure_shape(frame, image.shape)


def synthesize_pair(
    image: tf.Tensor,
    mask: tf.Tensor,
    sigma: float | tf.Tensor,
    method: str = "alpha_matte",
    max_radius: int | None = None,
) -> tuple[tf.Tensor, tf.Tensor]:
    """Dispatches on `method`, one of `METHODS`: "alpha_matte" (eqs. 10-11),
    "alpha_matte_filled" (eqs. 10-11 without the dark seam) or "conventional" (eqs. 12-13)."""
    if method not in METHODS:
        raise ValueError(f"unknown synthesis method {method!r}; use one of {', '.join(METHODS)}")
    return METHODS[method](image, mask, sigma, max_radius)


METHODS = dict(zip(SYNTHESIS_METHODS, (alpha_matte_pair, alpha_matte_filled_pair,
                                        conventional_pair)))
