"""The inference graph of mfif-tf, in one place: sources -> F_hat -> SRR -> F_final -> eq. 14.

Symbols: I_A, I_B are the sources; F_hat the focus map in [0, 1] (1 where I_A is in focus);
F_final = SRR(F_hat) (section 3.3, N = 0.001 W H); I_fused = I_A F_final + I_B (1 - F_final)
(eq. 14) on the original pixels. `mfif_tf.fusion` (NumPy arrays, bounded memory), the
SavedModel signatures (`export/serving.py`) and the TFLite models (`export/tflite.py`) all
build F_hat with the functions here, so they give the same maps.

Three modes make F_hat:

  paper           G at the sources' full resolution, one pass (section 4.1.2); with
                  `scales` also the mean over downscaled passes (`mfif_tf.scales`).
  refined         the paper mode's F_hat, whose outline the refinement head R
                  (`mfif_tf.refiner`) then redraws on the full-resolution pixels: R runs
                  only in the band where F_hat is neither clearly 0 nor clearly 1, so the
                  regions G decided stay as they are and the added cost is linear in the
                  outline's length. Above a shorter side of 3/4 of `g_side` (480 of 640)
                  G runs on the sources box-averaged by 2, or by the smallest power of two
                  that brings them to `g_side` (at most `MAX_G_FACTOR`, 4), and an R
                  trained for that step (`COARSE_REFINER_KEY`) redraws the outline
                  instead.
  coarse_to_fine  G at a working resolution near the scale it learned, then R redraws the
                  outline on the pixels, one octave at a time, up to full resolution:

    1. Working resolution: the sources are averaged over k x k boxes (k the integer part
       of shorter side / `working_side`) and then area-resampled to a shorter side of
       `working_side` pixels. Never enlarged: a source whose shorter side is at most
       `working_side` is used as it is.
    2. G's map there, c_w.
    3. Levels j = J, ..., 0 at 1/2^j of the full resolution (sources box-averaged over
       2^j x 2^j), J the smallest level count with the level-J image no more than twice the
       working size. Level J's c is c_w resized bilinearly; each finer level's c is the
       previous level's map doubled bilinearly (half-pixel centres). R refines c in its band.
    4. F_hat is the level-0 map.

In coarse_to_fine G's cost becomes that of a `working_side` image whatever the photo's size,
but G, deciding on the downscaled sources, loses the focus cues of small blur: on the
ground-truth sets it loses to the full-resolution pass at 2 megapixels (MODEL_CARD.md), so
`refined` is the default.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import tensorflow as tf

from mfif_tf import refiner as refiner_lib
# The graph's constants and its NumPy side live in `common` (no TensorFlow there) and are
# re-exported here.
from mfif_tf.common import (  # noqa: F401
    BT601, COARSE_REFINER_KEY, DEFAULT_G_SIDE, DEFAULT_MODE, DEFAULT_WORKING_SIDE,
    FULL_SIZE_FRACTION, MAX_G_FACTOR, MIN_IMAGE_SIDE, MEASURE_BAND, MEASURE_FLOOR,
    MEASURE_PIXEL_RATIO, MEASURE_RATIO, MEASURE_REACH, MEASURE_UNSURE, MEASURE_WINDOWS,
    MIN_WORKING_SIDE, MODES,
    PAPER_MIN_SIZE_FRACTION, REFINED_MODES, check_g_side, check_measure_ratio, check_mode,
    check_working_side, fuse_with_map, g_factor, to_unit_rgb, unit_scale)
from mfif_tf import scales as scales_lib
from mfif_tf.windows import box_sum, max_square

if TYPE_CHECKING:
    from mfif_tf.refiner import Refiner

# R runs on square tiles of this side that touch its band; the rest keeps c. Each tile carries
# R's halo (6 px a side), so smaller tiles compute more halo and fewer pixels outside the band:
# 32 took 0.84-0.97x the fusion time of 64 in TensorFlow and 0.87-1.04x in LiteRT, 24 no less
# than 32 (docs/benchmarks.md, "R on 32 x 32 tiles").
REFINER_TILE = 32
_INT32_MAX = 2**31 - 1


# ---------------------------------------------------------------- eq. 14 in TensorFlow


def fuse(image_a: tf.Tensor, image_b: tf.Tensor, focus_map: tf.Tensor) -> tf.Tensor:
    """Eq. 14 in TensorFlow: I_A * F_final + I_B * (1 - F_final), in the sources' range."""
    return image_a * focus_map + image_b * (1.0 - focus_map)


def to_rgb(image: tf.Tensor) -> tf.Tensor:
    """Grey sources (1 channel) are tripled to 3 channels, as the paper does for its
    grayscale set (section 4.1.2); RGB sources pass through."""
    if image.shape[-1] == 3:
        return image
    channels = tf.shape(image)[-1]
    return tf.gather(image, tf.minimum(tf.range(3), channels - 1), axis=-1)


def min_size_from_fraction(fraction: Any, height: Any, width: Any) -> tf.Tensor:
    """N = ceil(fraction * W * H) (section 3.3) for float32 fractions, as int32 (same shape
    as `fraction`).

    A float32 fraction is read as the shortest decimal with up to 9 places that it stands
    for (0.001, not 0.0010000000475), and N is computed from that decimal in integer
    arithmetic: 0.001 * 6000 * 4000 gives 24000, where the float product would give 24001.
    This is the same N as `mfif_tf.srr.default_min_size` computes from a Python float.
    Fractions with no such decimal fall back to the float64 product.
    """
    f32 = tf.cast(fraction, tf.float32)
    flat = tf.reshape(f32, [-1])
    f64 = tf.cast(flat, tf.float64)
    places = 10
    powers = tf.constant([10.0**k for k in range(places)], tf.float64)
    digits = tf.round(f64[:, tf.newaxis] * powers)
    exact = tf.equal(tf.cast(digits / powers, tf.float32), flat[:, tf.newaxis])
    k = tf.argmax(tf.cast(exact, tf.int32), axis=1, output_type=tf.int32)  # fewest places
    p = tf.cast(tf.gather(digits, k, batch_dims=1), tf.int64)
    q = tf.gather(tf.constant([10**j for j in range(places)], tf.int64), k)
    area = tf.cast(height, tf.int64) * tf.cast(width, tf.int64)
    # ceil(p * area / q) without overflow (p <= q <= 1e9 for fractions in [0, 1]).
    n_exact = (area // q) * p + ((area % q) * p + q - 1) // q
    n_float = tf.cast(tf.math.ceil(f64 * tf.cast(area, tf.float64)), tf.int64)
    n = tf.where(tf.reduce_any(exact, axis=1), n_exact, n_float)
    n = tf.clip_by_value(n, 0, _INT32_MAX)
    return tf.reshape(tf.cast(n, tf.int32), tf.shape(f32))


# ---------------------------------------------------------------- resampling


def working_shape(height: int, width: int, side: int) -> tuple[int, int]:
    """(h, w) of the working resolution: shorter side `side`, aspect kept; never larger."""
    short = min(height, width)
    if short <= side:
        return height, width
    scale = side / short
    return max(1, round(height * scale)), max(1, round(width * scale))


def box_factor(size: int, target: int) -> int:
    """k of the k x k box mean that precedes the area resampling: the integer part of
    size / target (at least 1)."""
    return max(1, size // max(1, target))


def level_count(height: int, width: int, work_h: int, work_w: int) -> int:
    """J + 1: levels 1/2^J, ..., 1/1, level J no more than twice the working size."""
    factor = min(height / work_h, width / work_w)
    return 1 if factor <= 2.0 else math.ceil(math.log2(factor))


def level_shape(height: int, width: int, j: int) -> tuple[int, int]:
    """Size of level j: the full size divided by 2^j, rounded up."""
    k = 1 << j
    return -(-height // k), -(-width // k)


def _area_weights(size_in: tf.Tensor, size_out: tf.Tensor) -> tf.Tensor:
    """(out, in) matrix of area resampling: row i averages the input span
    [i * s, (i + 1) * s), s = in / out, weighting each input pixel by its overlap."""
    s = tf.cast(size_in, tf.float32) / tf.cast(size_out, tf.float32)
    lo = tf.cast(tf.range(size_out), tf.float32)[:, None] * s
    hi = lo + s
    left = tf.cast(tf.range(size_in), tf.float32)[None, :]
    overlap = tf.maximum(0.0, tf.minimum(hi, left + 1.0) - tf.maximum(lo, left))
    return overlap / s


def area_resample(images: tf.Tensor, height: Any, width: Any) -> tf.Tensor:
    """(N, H, W, C) -> (N, height, width, C) by area averaging (H >= height, W >= width);
    two matrix products, all builtin TFLite ops."""
    shape = tf.shape(images)
    rows = _area_weights(shape[1], height)  # (height, H)
    cols = _area_weights(shape[2], width)  # (width, W)
    x = tf.einsum("ih,nhwc->niwc", rows, images)
    return tf.einsum("jw,niwc->nijc", cols, x)


def to_working(images: tf.Tensor, side: int) -> tf.Tensor:
    """Sources (N, H, W, C) in [0, 1] at the working resolution (step 1 of the module
    docstring); static Python sizes are not needed."""
    shape = tf.shape(images)
    height, width = shape[1], shape[2]
    short = tf.minimum(height, width)
    scale = tf.cast(side, tf.float32) / tf.cast(short, tf.float32)

    def resampled():
        k = tf.maximum(1, short // side)
        boxed = box_down(images, k)
        out_h = tf.maximum(1, tf.cast(tf.round(tf.cast(height, tf.float32) * scale), tf.int32))
        out_w = tf.maximum(1, tf.cast(tf.round(tf.cast(width, tf.float32) * scale), tf.int32))
        # The box mean covers whole k x k blocks; the area step takes its valid part only.
        valid_h, valid_w = -(-height // k), -(-width // k)
        return area_resample(boxed[:, :valid_h, :valid_w], out_h, out_w)

    return tf.cond(short > side, resampled, lambda: images)


def box_down(images: tf.Tensor, k: Any) -> tf.Tensor:
    """(N, H, W, C) -> k x k box means over the edge-padded image (ceil(H/k), ceil(W/k)
    blocks); k may be a tensor."""
    shape = tf.shape(images)
    height, width = shape[1], shape[2]
    k = tf.cast(k, tf.int32)
    rows = tf.minimum(tf.range((height + k - 1) // k * k), height - 1)
    cols = tf.minimum(tf.range((width + k - 1) // k * k), width - 1)
    padded = tf.gather(tf.gather(images, rows, axis=1), cols, axis=2)
    blocks_h, blocks_w = (height + k - 1) // k, (width + k - 1) // k
    x = tf.reshape(padded, [shape[0], blocks_h, k, blocks_w, k, shape[3]])
    return tf.reduce_mean(x, axis=[2, 4])


def upsample2(focus: tf.Tensor, height: Any, width: Any) -> tf.Tensor:
    """A level's map doubled bilinearly (half-pixel centres) and cropped to the finer
    level's size."""
    return scales_lib.upscale(focus, 2, height, width)


# ---------------------------------------------------------------- the refinement head


def replicate_pad(x: tf.Tensor, top: int, bottom: Any, left: int, right: Any) -> tf.Tensor:
    """Pads (N, H, W, C) by repeating the edge rows and columns (any size, even 1 pixel)."""
    shape = tf.shape(x)
    rows = tf.clip_by_value(tf.range(-top, shape[1] + bottom), 0, shape[1] - 1)
    cols = tf.clip_by_value(tf.range(-left, shape[2] + right), 0, shape[2] - 1)
    return tf.gather(tf.gather(x, rows, axis=1), cols, axis=2)


def refine(refiner: Refiner, image_a: tf.Tensor, image_b: tf.Tensor, coarse: tf.Tensor,
           top: Any = 0, bottom: Any = 0, tile: int = REFINER_TILE) -> tf.Tensor:
    """R's map for one level: R(I_A, I_B, c) in c's band (`refiner.band`, grown by R's
    `config.band_grow`), c elsewhere.

    Args:
      refiner: R.
      image_a, image_b: the level's sources, (1, H, W, 3) in [0, 1].
      coarse: c, (1, H, W, 1).
      top, bottom: for a horizontal strip of a larger level, the number of rows above and
        below the strip that the inputs carry as context (at least `context_rows` where the
        image has them; they are not returned). 0, 0 for a whole level. Beyond the image's
        edges rows and columns are replicated, so strips give the whole level's values.
      tile: R runs on the tiles of this side that meet the band.

    Returns:
      (1, H - top - bottom, W, 1).
    """
    halo = refiner.halo
    rows_in, width = tf.shape(coarse)[1], tf.shape(coarse)[2]
    region = refiner_lib.band(coarse, refiner.config.band_grow)[:, top:rows_in - bottom]
    c = coarse[:, top:rows_in - bottom]
    height = tf.shape(c)[1]
    tiles_y, tiles_x = (height + tile - 1) // tile, (width + tile - 1) // tile
    pad_h, pad_w = tiles_y * tile - height, tiles_x * tile - width
    # Tiles that meet the band: any() over each tile's pixels.
    grid_region = tf.pad(tf.reshape(tf.cast(region, tf.float32), [height, width]),
                         [[0, pad_h], [0, pad_w]])
    active = tf.reduce_max(tf.reshape(grid_region, [tiles_y, tile, tiles_x, tile]),
                           axis=[1, 3]) > 0.5
    where = tf.cast(tf.where(active), tf.int32)  # (K, 2): tile row and column
    # One more tile, (0, 0) with weight 0, so that R never runs on an empty batch (which
    # the CPU convolution kernels reject) and the graph needs no branch.
    weight = tf.concat([tf.ones([tf.shape(where)[0]]), tf.zeros([1])], axis=0)
    where = tf.concat([where, tf.zeros([1, 2], tf.int32)], axis=0)
    # Each tile's pixels with R's halo, gathered straight from the inputs: rows and columns
    # beyond the level (or the strip's context) repeat its edge ones (clamped indices), so
    # no padded copy of the level is made and memory is K tiles.
    span = tf.range(tile + 2 * halo) - halo
    rows = tf.clip_by_value(top + where[:, 0:1] * tile + span[None, :], 0, rows_in - 1)
    cols = tf.clip_by_value(where[:, 1:2] * tile + span[None, :], 0, width - 1)
    index = rows[:, :, None] * width + cols[:, None, :]  # (K, T + 2h, T + 2h)

    def patches_of(x: tf.Tensor, depth: int) -> tf.Tensor:
        return tf.gather(tf.reshape(x[0], [-1, depth]), index)

    patches = refiner_lib.refiner_input(patches_of(image_a, 3), patches_of(image_b, 3),
                                        patches_of(coarse, 1))  # (K, T + 2h, T + 2h, 7)
    patches = tf.reshape(patches, [-1, tile + 2 * halo, tile + 2 * halo, 7])
    refined = refiner(patches)[..., 0]  # (K, T, T)
    grid = tf.pad(tf.reshape(c, [height, width]), [[0, pad_h], [0, pad_w]])
    grid = tf.transpose(tf.reshape(grid, [tiles_y, tile, tiles_x, tile]), [0, 2, 1, 3])
    grid_shape = tf.shape(grid)
    weight = weight[:, None, None] * tf.ones_like(refined)
    hit = tf.scatter_nd(where, weight, grid_shape)
    grid = grid * (1.0 - hit) + tf.scatter_nd(where, refined * weight, grid_shape)
    out = tf.reshape(tf.transpose(grid, [0, 2, 1, 3]), [tiles_y * tile, tiles_x * tile])
    # Static batch and channel sizes (1, ., ., 1) keep loop variables' shapes fixed.
    shape = [1, height, width, 1]
    return tf.where(tf.reshape(region, shape), tf.reshape(out[:height, :width], shape),
                    tf.reshape(c, shape))


def outline_zone(coarse: tf.Tensor, k: Any, reach: int = MEASURE_REACH) -> tf.Tensor:
    """(N, H, W, 1) bool: the pixels within `reach` of G's pixels (k x k each, k an int or
    a scalar int32 tensor) of the outline of G's map `coarse` > 0.5 ((N, H, W, 1) at full
    resolution, as `scales_lib.multiscale` returns it). The outline is taken on G's grid
    (every k-th pixel), where G drew it, so the cost is that of G's map."""
    shape = tf.shape(coarse)
    zone = tf.cast(outline_zone_grid(coarse, k, reach), tf.float32)
    zone = tf.repeat(tf.repeat(zone, k, axis=1), k, axis=2)[:, :shape[1], :shape[2]]
    return zone > 0.5


def outline_zone_grid(coarse: tf.Tensor, k: Any, reach: int = MEASURE_REACH) -> tf.Tensor:
    """`outline_zone` on G's grid: (N, ceil(H / k), ceil(W / k), 1) bool, pixel (i, j)
    standing for the full-resolution pixels [ik, ik + k) x [jk, jk + k)."""
    grid = tf.cast(coarse[:, ::k, ::k] > 0.5, tf.float32)
    # Outline: grid pixels whose 3 x 3 neighbourhood holds both sides.
    edge = max_square(grid, 3) + max_square(-grid, 3)
    return max_square(edge, 2 * reach + 1) > 0.5


def luminance(pixels: tf.Tensor, scale: float = 1.0) -> tf.Tensor:
    """(N, H, W, 1) float32 BT.601 luminance of (N, H, W, 3) sources (or the channel of grey
    ones), any numeric dtype, times `scale` (1/255 for uint8 values, `common.unit_scale`)."""
    x = tf.cast(pixels, tf.float32)
    if x.shape[-1] == 1:
        return x * scale
    weights = tf.constant([[[[w * scale] for w in BT601]]], tf.float32)  # (1, 1, 3, 1)
    return tf.nn.conv2d(x, weights, 1, "VALID")


def sum_modified_laplacian(grey: tf.Tensor,
                           windows: Sequence[int] = MEASURE_WINDOWS) -> list[tf.Tensor]:
    """SML of (N, H, W, 1) luminance in [0, 1]: the modified Laplacian |2I - I_left -
    I_right| + |2I - I_up - I_down| (edges replicated), summed over a w x w box (mirrored at
    the edges; `mfif_tf.classical`'s measure) for each w of `windows`, as separable sums.
    (N, H, W, 1) float32 each; the image needs at least max(windows) // 2 rows and
    columns."""
    p = tf.pad(grey, [[0, 0], [1, 1], [1, 1], [0, 0]], mode="SYMMETRIC")  # edge repeated
    twice = 2.0 * p[:, 1:-1, 1:-1]
    ml = (tf.abs(twice - p[:, 1:-1, :-2] - p[:, 1:-1, 2:])
          + tf.abs(twice - p[:, :-2, 1:-1] - p[:, 2:, 1:-1]))
    sums = []
    for window in windows:
        if window == 1:  # the modified Laplacian of the pixel itself
            sums.append(ml)
            continue
        sums.append(box_sum(ml, window))
    return sums


def measure_context_rows(windows: Sequence[int] = MEASURE_WINDOWS,
                         band: int = MEASURE_BAND) -> int:
    """Rows of context a strip of `measure_check` needs on either side: the measure's reach,
    the band and the outline's neighbours (step 3)."""
    return max(windows, default=1) // 2 + 2 + band


def _sharper(sml_a, sml_b, ratio, floor):
    """Where I_A's measure beats `ratio` times I_B's plus `floor`, and where I_B's beats
    I_A's so (never both)."""
    return sml_a > ratio * sml_b + floor, sml_b > ratio * sml_a + floor


def _take(f_hat, to_a, to_b, where):
    """1 where `where` and `to_a`, 0 where `where` and `to_b`, F_hat elsewhere."""
    return tf.where(tf.logical_and(where, to_a), tf.ones_like(f_hat),
                    tf.where(tf.logical_and(where, to_b), tf.zeros_like(f_hat), f_hat))


def measure_check(grey_a: tf.Tensor, grey_b: tf.Tensor, f_hat: tf.Tensor,
                  zone: tf.Tensor | None,
                  ratio: float = MEASURE_RATIO, top: Any = 0, bottom: Any = 0,
                  windows: Sequence[int] = MEASURE_WINDOWS, band: int = MEASURE_BAND,
                  pixel_ratio: float = MEASURE_PIXEL_RATIO,
                  unsure: float = MEASURE_UNSURE) -> tf.Tensor:
    """F_hat checked against the sources' focus measure at full resolution: all three steps
    where G ran below full size, steps 2 and 3 alone (`windows` empty, `zone` None:
    everywhere) where it ran at full size.

    1. Window by window: 1 where I_A's SML is more than `ratio` times I_B's plus
       `MEASURE_FLOOR` w^2, 0 where I_B's is more than `ratio` times I_A's plus that, both
       only inside `zone` (`outline_zone`); F_hat elsewhere. Each window w of `windows`
       decides where it is decisive, the first last, so that it has the last word; a
       smaller one reaches closer to an outline (a window that straddles it sees the sharp
       side of both sources).
    2. Within `band` pixels (a (2 band + 1)^2 square) of the outline so drawn, inside
       `zone`, the same test on the modified Laplacian of the pixel alone with
       `pixel_ratio` (0 skips it): a window of w pixels straddling the outline misplaces it
       by up to w / 2, the pixel's own measure does not, and the stricter ratio leaves the
       pixels where the defocus spread of a blurred foreground makes both look alike.
    3. With step 2 (`unsure` > 0): a pixel on the outline so drawn (both sides in its
       3 x 3 square) that its own measure leaves undecided and where F_hat lies within
       `unsure` of 0.5 takes the side that more of its 3 x 3 neighbours' own measures
       decide (their count for I_A against I_B; a tie leaves F_hat). On an outline of the
       conventional model a pixel's stencil spans both sides, so step 2 leaves it, and R
       places it within a pixel; where R is sure (the sharp outline of an in-focus
       foreground, the veil of a blurred one) its answer stands.

    G, deciding on sources averaged over k x k boxes, places its outline to within a few of
    its own pixels, i.e. several full-resolution pixels, and R moves an outline only within
    a few pixels; at the sources' own resolution the in-focus side of an outline is plain
    where one source is much sharper than the other. Where neither is (flat regions, noise,
    the defocus spread of a blurred foreground) G's answer stands.

    Args:
      grey_a, grey_b: the sources' luminance in [0, 1] (`luminance`), (N, H, W, 1), with
        `top` and `bottom` rows of context of a strip (at least `measure_context_rows` where
        the image has them; 0, 0 for a whole image).
      f_hat, zone: (N, H, W, 1), the same rows; `zone` None only with `windows` empty.
    Returns:
      (N, H - top - bottom, W, 1): the strip's own rows.
    """
    rows = tf.shape(grey_a)[1]
    pixel = bool(pixel_ratio) and band > 0
    measured = tuple(windows) + ((1,) if pixel else ())
    sums = list(zip(sum_modified_laplacian(grey_a, measured),
                    sum_modified_laplacian(grey_b, measured)))
    for window, (sml_a, sml_b) in reversed(list(zip(windows, sums))):
        f_hat = _take(f_hat, *_sharper(sml_a, sml_b, ratio, MEASURE_FLOOR * window * window),
                      zone)
    if pixel:
        # Both sides within the square (mirrored at the edges, which adds no side the
        # square does not hold): the outline's band.
        side = 2 * band + 1
        # Shaped as the measure: a static channel for converters that need one.
        side_map = tf.reshape(tf.cast(f_hat > 0.5, tf.float32), tf.shape(sums[-1][0]))
        count = box_sum(side_map, side)
        near = tf.logical_and(count > 0.5, count < side * side - 0.5)
        a_sharp, b_sharp = _sharper(*sums[-1], pixel_ratio, MEASURE_FLOOR)
        f_hat = _take(f_hat, a_sharp, b_sharp,
                      near if zone is None else tf.logical_and(zone, near))
        if unsure > 0:
            # The neighbours decided for I_A less those decided for I_B (one box sum: no
            # pixel is both).
            votes = box_sum(tf.cast(a_sharp, tf.float32) - tf.cast(b_sharp, tf.float32), 3)
            count = box_sum(tf.reshape(tf.cast(f_hat > 0.5, tf.float32), tf.shape(votes)), 3)
            settle = tf.logical_and(tf.logical_and(count > 0.5, count < 8.5),
                                    tf.abs(f_hat - 0.5) < unsure)
            settle = tf.logical_and(settle, tf.logical_not(tf.logical_or(a_sharp, b_sharp)))
            if zone is not None:
                settle = tf.logical_and(settle, zone)
            f_hat = _take(f_hat, votes > 0.5, votes < -0.5, settle)
    return f_hat[:, top:rows - bottom]


def context_rows(refiner: Refiner) -> int:
    """Rows of context a strip needs on each side: R's halo and the band's growth."""
    return max(refiner.halo, refiner.config.band_grow)


def _level_count_tensor(height, width, work_h, work_w) -> tf.Tensor:
    factor = tf.minimum(tf.cast(height, tf.float32) / tf.cast(work_h, tf.float32),
                        tf.cast(width, tf.float32) / tf.cast(work_w, tf.float32))
    levels = tf.cast(tf.math.ceil(tf.math.log(factor) / math.log(2.0) - 1e-6), tf.int32)
    return tf.where(factor <= 2.0, 1, levels)


def coarse_to_fine(predict: Callable[[tf.Tensor, tf.Tensor], tf.Tensor], refiner: Refiner,
                   image_a: tf.Tensor, image_b: tf.Tensor, working_side: int,
                   sizes: tuple[int, int] | None = None) -> tf.Tensor:
    """F_hat of coarse-to-fine mode for one pair (1, H, W, 3) in [0, 1], as a graph.

    `predict(a, b)` is G on [0, 1] sources. With `sizes` (H, W) known when the graph is
    built (fixed-size TFLite models) the levels are unrolled; otherwise a while loop runs
    them.
    """
    shape = tf.shape(image_a)
    height, width = shape[1], shape[2]
    work_a = to_working(image_a, working_side)
    work_b = to_working(image_b, working_side)
    c_work = predict(work_a, work_b)

    powers = tf.constant([1 << n for n in range(31)], tf.int32)

    def level(j, focus, first: bool):
        k = tf.gather(powers, j)  # 2^j
        level_h, level_w = (height + k - 1) // k, (width + k - 1) // k
        a, b = box_down(image_a, k), box_down(image_b, k)
        if first:
            c = tf.image.resize(focus, tf.stack([level_h, level_w]), method="bilinear")
        else:
            c = upsample2(focus, level_h, level_w)
        return refine(refiner, a, b, c)

    if sizes is not None:
        work_h, work_w = working_shape(sizes[0], sizes[1], working_side)
        count = level_count(sizes[0], sizes[1], work_h, work_w)
        focus = level(tf.constant(count - 1), c_work, True)
        for j in range(count - 2, -1, -1):
            focus = level(tf.constant(j), focus, False)
        return focus
    work = tf.shape(work_a)
    count = _level_count_tensor(height, width, work[1], work[2])
    focus = level(count - 1, c_work, True)
    _, focus = tf.while_loop(
        lambda j, f: j >= 0, lambda j, f: (j - 1, level(j, f, False)), (count - 2, focus),
        shape_invariants=(tf.TensorShape([]), tf.TensorShape([1, None, None, 1])))
    return focus


def _refine_pairs(refiner: Refiner, image_a: tf.Tensor, image_b: tf.Tensor,
                  coarse: tf.Tensor) -> tf.Tensor:
    """`refine` for a batch: at once for one pair, else pair by pair."""
    if image_a.shape[0] == 1:
        return refine(refiner, image_a, image_b, coarse)
    return tf.map_fn(
        lambda pair: refine(refiner, pair[0][None], pair[1][None], pair[2][None])[0],
        (image_a, image_b, coarse), fn_output_signature=tf.TensorSpec([None, None, 1], tf.float32))


def g_factor_tensor(height: tf.Tensor, width: tf.Tensor, g_side: int) -> tf.Tensor:
    """`common.g_factor` as a graph: 1 up to a shorter side of `FULL_SIZE_FRACTION` *
    g_side, else the smallest power of two k >= 2 (up to `MAX_G_FACTOR`) with
    min(height, width) / k <= g_side, in exact integer arithmetic."""
    shorter = tf.minimum(height, width)
    count = MAX_G_FACTOR.bit_length()
    powers = tf.constant([1 << n for n in range(count)], tf.int32)
    fits = tf.stack([shorter * FULL_SIZE_FRACTION.denominator
                     <= g_side * FULL_SIZE_FRACTION.numerator]
                    + [shorter <= g_side * (1 << n) for n in range(1, count)])
    return tf.reduce_min(tf.where(fits, powers, 1 << (count - 1)))


def focus_map(predict: Callable[[tf.Tensor, tf.Tensor], tf.Tensor], image_a: tf.Tensor,
              image_b: tf.Tensor, mode: str = DEFAULT_MODE, *,
              refiner: Refiner | None = None, working_side: int = DEFAULT_WORKING_SIDE,
              scales: Sequence[float] = (1.0,), coarse_refiner: Refiner | None = None,
              g_side: int = DEFAULT_G_SIDE, measure_ratio: float = MEASURE_RATIO,
              coarse_predict: Callable[[tf.Tensor, tf.Tensor], tf.Tensor] | None = None
              ) -> tf.Tensor:
    """F_hat (N, H, W, 1) for sources (N, H, W, 1 or 3) in [0, 1], in any of `MODES`.

    `predict(a, b)` is G on RGB sources in [0, 1] (see `generator_predict`); `scales` apply
    to G's pass (modes paper and refined). In refined mode with `coarse_refiner` given, G
    runs on the sources box-averaged by `g_factor(H, W, g_side)` and, when that factor is
    above 1, `coarse_predict` (when given: the G for that size) runs instead of `predict`
    and `coarse_refiner` (`COARSE_REFINER_KEY`'s R) redraws the outline instead of
    `refiner`; the factor is fixed when the graph is built if the size is static, else
    chosen when it runs; then the focus measure checks G's outline (`measure_check`, with
    `measure_ratio`; 0 skips it): all steps below full size, the pixel and outline steps at
    full size. Without `coarse_refiner`, G runs at full size. In coarse_to_fine a
    batch of one with a static size (fixed-size TFLite models) unrolls the levels; other
    batches run pair by pair, as R does in mode refined.
    """
    image_a, image_b = to_rgb(image_a), to_rgb(image_b)
    if check_mode(mode) == "paper":
        return scales_lib.multiscale(predict, image_a, image_b, scales)
    if refiner is None:
        raise ValueError(f"{mode} mode needs the refinement head R")
    if mode == "refined":
        def full_size(coarse):
            f_hat = _refine_pairs(refiner, image_a, image_b, coarse)
            if not measure_ratio:
                return f_hat
            return measure_check(luminance(image_a), luminance(image_b), f_hat, None,
                                 windows=())

        if coarse_refiner is None or not check_g_side(g_side):
            return full_size(scales_lib.multiscale(predict, image_a, image_b, scales))

        def below_full_size(coarse, k):
            f_hat = _refine_pairs(coarse_refiner, image_a, image_b, coarse)
            if not measure_ratio:
                return f_hat
            return measure_check(luminance(image_a), luminance(image_b), f_hat,
                                 outline_zone(coarse, k), measure_ratio)

        small_predict = coarse_predict or predict
        if None not in image_a.shape[1:3]:
            k = g_factor(image_a.shape[1], image_a.shape[2], g_side)
            coarse = scales_lib.multiscale(predict if k == 1 else small_predict, image_a,
                                           image_b, [s / k for s in scales])
            return full_size(coarse) if k == 1 else below_full_size(coarse, k)
        shape = tf.shape(image_a)
        k = g_factor_tensor(shape[1], shape[2], g_side)
        if coarse_predict is None:
            coarse = scales_lib.multiscale_by(predict, image_a, image_b, scales, k)
            f_hat = tf.cond(k > 1, lambda: below_full_size(coarse, k),
                            lambda: full_size(coarse))
        else:
            f_hat = tf.cond(
                k > 1,
                lambda: below_full_size(scales_lib.multiscale_by(coarse_predict, image_a,
                                                                 image_b, scales, k), k),
                lambda: full_size(scales_lib.multiscale_by(predict, image_a, image_b, scales,
                                                           k)))
        # The branches' static shapes differ (the measure check's is unknown); the map's is
        # the sources' with one channel, as signatures and callers declare it.
        f_hat.set_shape(image_a.shape[:3].concatenate([1]))
        return f_hat
    if image_a.shape[0] == 1:
        sizes = tuple(image_a.shape[1:3]) if None not in image_a.shape[1:3] else None
        return coarse_to_fine(predict, refiner, image_a, image_b, working_side, sizes)
    return tf.map_fn(
        lambda pair: coarse_to_fine(predict, refiner, pair[0][None], pair[1][None],
                                    working_side)[0],
        (image_a, image_b), fn_output_signature=tf.TensorSpec([None, None, 1], tf.float32))


def generator_predict(call: Callable[[tf.Tensor], tf.Tensor]):
    """`predict(a, b)` for `focus_map` from G's call on its (N, H, W, 6) [-1, 1] input."""

    def predict(image_a: tf.Tensor, image_b: tf.Tensor) -> tf.Tensor:
        x = tf.concat([to_rgb(image_a), to_rgb(image_b)], axis=-1) * 2.0 - 1.0
        return tf.cast(call(x), tf.float32)

    return predict


# ---------------------------------------------------------------- NumPy arrays, bounded memory

STRIP_ROWS = 256
_STRIP_FUNCTIONS: dict[int, Callable] = {}


def _strip_function(refiner: Refiner) -> Callable:
    """`refine` traced once per R for strips of any size."""
    key = id(refiner)
    if key not in _STRIP_FUNCTIONS:
        image = tf.TensorSpec([1, None, None, 3], tf.float32)
        if len(_STRIP_FUNCTIONS) > 4:
            _STRIP_FUNCTIONS.clear()
        _STRIP_FUNCTIONS[key] = tf.function(
            lambda a, b, c, top, bottom: refine(refiner, a, b, c, top, bottom),
            input_signature=[image, image, tf.TensorSpec([1, None, None, 1], tf.float32),
                             tf.TensorSpec([], tf.int32), tf.TensorSpec([], tf.int32)],
            autograph=False)
    return _STRIP_FUNCTIONS[key]


_MEASURE_FUNCTIONS: dict[Any, Callable] = {}


def _measure_function(key: Any) -> Callable:
    """Traced once for inputs of any size: `outline_zone_grid` ("zone"), `measure_check` on
    two luminance strips ("check"; "pixel": its steps 2-3 alone, everywhere), or `luminance` of
    a source strip of a (dtype, channels) key, read as it is (no float RGB copy)."""
    if key not in _MEASURE_FUNCTIONS:
        column = tf.TensorSpec([1, None, None, 1], tf.float32)
        scalar = tf.TensorSpec([], tf.int32)
        if key == "zone":
            function, signature = outline_zone_grid, [column, scalar]
        elif key == "check":
            function = measure_check
            signature = [column, column, column, tf.TensorSpec([1, None, None, 1], tf.bool),
                         tf.TensorSpec([], tf.float32), scalar, scalar]
        elif key == "pixel":
            function = lambda grey_a, grey_b, f_hat, top, bottom: measure_check(  # noqa: E731
                grey_a, grey_b, f_hat, None, top=top, bottom=bottom, windows=())
            signature = [column, column, column, scalar, scalar]
        else:
            dtype, channels = key
            scale = unit_scale(np.dtype(dtype))
            function = lambda pixels: luminance(pixels, scale)  # noqa: E731
            signature = [tf.TensorSpec([1, None, None, channels], tf.as_dtype(dtype))]
        _MEASURE_FUNCTIONS[key] = tf.function(function, input_signature=signature,
                                              autograph=False)
    return _MEASURE_FUNCTIONS[key]


def _luminance_strip(pixels: np.ndarray) -> tf.Tensor:
    """(1, h, w, 1) luminance in [0, 1] of a source's rows (uint8, uint16 or float; grey or
    RGB), computed from the values as they are."""
    if pixels.dtype not in (np.uint8, np.uint16):
        pixels = pixels.astype(np.float32, copy=False)
    pixels = (pixels[:, :, None] if pixels.ndim == 2 else pixels)[None]
    return _measure_function((pixels.dtype.name, pixels.shape[-1]))(tf.constant(pixels))


def measure_arrays(image_a: np.ndarray, image_b: np.ndarray, f_hat: np.ndarray,
                   coarse: np.ndarray | None, k: int = 1, ratio: float = MEASURE_RATIO,
                   strip_rows: int = STRIP_ROWS) -> np.ndarray:
    """`measure_check` of F_hat (H, W) with the zone of G's map `coarse` (H, W) at factor
    k, in horizontal strips (the values of one whole-image call, to float rounding), only
    over the rows and columns that meet the zone; `coarse` None (G at full size): steps 2-3
    alone, everywhere. Sources as for `refine_arrays` (each read as its luminance, so grey
    and RGB sources mix). (H, W) float32."""
    height, width = f_hat.shape
    f_hat = np.asarray(f_hat, np.float32)
    out = f_hat.copy()
    if coarse is None:
        pixel, context = _measure_function("pixel"), measure_context_rows(())
        for r0 in range(0, height, strip_rows):
            r1 = min(height, r0 + strip_rows)
            lo, hi = max(0, r0 - context), min(height, r1 + context)
            # Only the columns where the map's side changes, with the band and the
            # measure's reach on either side; none: no outline near these rows.
            side = f_hat[lo:hi] > 0.5
            columns = np.flatnonzero((side[1:] != side[:-1]).any(axis=0))
            across = np.flatnonzero((side[:, 1:] != side[:, :-1]).any(axis=0))
            if len(across):
                columns = np.concatenate([columns, across, across + 1])
            if not len(columns):
                continue
            c0, c1 = max(0, columns.min() - context), min(width, columns.max() + 1 + context)
            out[r0:r1, c0:c1] = pixel(
                _luminance_strip(image_a[lo:hi, c0:c1]), _luminance_strip(image_b[lo:hi, c0:c1]),
                tf.constant(f_hat[None, lo:hi, c0:c1, None]), tf.constant(r0 - lo),
                tf.constant(hi - r1)).numpy()[0, :, :, 0]
        return out
    # The zone is drawn on G's grid (every k-th pixel of `coarse`): only that grid goes to
    # TensorFlow (factor 1 there), not the full-resolution map.
    grid = _measure_function("zone")(
        tf.constant(np.ascontiguousarray(coarse[::k, ::k], np.float32)[None, :, :, None]),
        tf.constant(1, tf.int32)).numpy()[0, :, :, 0]
    context = measure_context_rows()
    check = _measure_function("check")

    def zone_rows(r0, r1):  # the zone's full-resolution rows [r0, r1)
        g0 = r0 // k
        zone = np.repeat(np.repeat(grid[g0:-(-r1 // k)], k, axis=0), k, axis=1)
        return zone[r0 - g0 * k:r1 - g0 * k, :width]

    for r0 in range(0, height, strip_rows):
        r1 = min(height, r0 + strip_rows)
        columns = np.flatnonzero(zone_rows(r0, r1).any(axis=0))
        if not len(columns):  # nothing to check in these rows
            continue
        # Only the columns that meet the zone, with the measure's reach on either side.
        c0, c1 = max(0, columns[0] - context), min(width, columns[-1] + 1 + context)
        lo, hi = max(0, r0 - context), min(height, r1 + context)
        out[r0:r1, c0:c1] = check(
            _luminance_strip(image_a[lo:hi, c0:c1]), _luminance_strip(image_b[lo:hi, c0:c1]),
            tf.constant(f_hat[None, lo:hi, c0:c1, None]),
            tf.constant(zone_rows(lo, hi)[None, :, c0:c1, None]),
            tf.constant(ratio, tf.float32), tf.constant(r0 - lo),
            tf.constant(hi - r1)).numpy()[0, :, :, 0]
    return out


def box_down_array(pixels: np.ndarray, k: int, rows_per_chunk: int = 128) -> np.ndarray:
    """A source as float32 RGB in [0, 1], k x k box means (`box_down`), in row chunks."""
    height, width = pixels.shape[:2]
    if k == 1:
        return to_unit_rgb(pixels)
    out = np.empty((-(-height // k), -(-width // k), 3), np.float32)
    for o0 in range(0, out.shape[0], rows_per_chunk):
        o1 = min(out.shape[0], o0 + rows_per_chunk)
        chunk = to_unit_rgb(pixels[o0 * k:min(height, o1 * k)])
        out[o0:o1] = box_down(tf.constant(chunk[None]), k).numpy()[0]
    return out


def coarse_to_fine_arrays(predict_arrays: Callable[[np.ndarray, np.ndarray], np.ndarray],
                          refiner: Refiner, image_a: np.ndarray, image_b: np.ndarray,
                          working_side: int = DEFAULT_WORKING_SIDE,
                          strip_rows: int = STRIP_ROWS,
                          progress: Callable[[int], None] | None = None,
                          progress_total: Callable[[int], None] | None = None) -> np.ndarray:
    """F_hat (H, W) float32 of coarse-to-fine mode for two same-sized sources (uint8, uint16
    or float in [0, 1]; grey or RGB), as `coarse_to_fine` computes it, in bounded memory.

    `predict_arrays(a, b)` is G on float32 RGB arrays in [0, 1] (`tiling.predict_focus_map`).
    Levels finer than the first are refined in strips of `strip_rows` rows (plus
    `context_rows` of context); only the full-resolution level reads the sources' own
    pixels, a strip at a time. Memory: the sources, two float32 maps of the full size and
    the level-1 sources (3/4 of a float32 RGB image of the full size, at most).
    """
    height, width = image_a.shape[:2]
    work_h, work_w = working_shape(height, width, working_side)
    if (work_h, work_w) != (height, width):
        k = box_factor(min(height, width), working_side)
        work = [area_resample(tf.constant(box_down_array(x, k)[None]), work_h, work_w)
                .numpy()[0] for x in (image_a, image_b)]
    else:
        work = [to_unit_rgb(image_a), to_unit_rgb(image_b)]
    count = level_count(height, width, work_h, work_w)
    strips = sum(-(-level_shape(height, width, j)[0] // strip_rows) for j in range(count))
    if progress_total is not None:
        progress_total(strips)
    focus = predict_arrays(work[0], work[1])[None, :, :, None]
    del work
    for j in range(count - 1, -1, -1):
        level_h, level_w = level_shape(height, width, j)
        if j == count - 1:
            c = tf.image.resize(tf.constant(focus), [level_h, level_w], method="bilinear")
        else:
            c = upsample2(tf.constant(focus), level_h, level_w)
        if j:
            sources = [box_down_array(x, 1 << j) for x in (image_a, image_b)]
        else:
            sources = [image_a, image_b]
        focus = refine_arrays(refiner, sources[0], sources[1], c.numpy()[0, :, :, 0],
                              strip_rows, progress)[None, :, :, None]
        c = sources = None
    return focus[0, :, :, 0]


def refine_arrays(refiner: Refiner, image_a: np.ndarray, image_b: np.ndarray,
                  coarse: np.ndarray, strip_rows: int = STRIP_ROWS,
                  progress: Callable[[int], None] | None = None) -> np.ndarray:
    """R's map (`refine`) for one level, (H, W) float32, in horizontal strips of
    `strip_rows` rows plus `context_rows` of context: the same values as one whole-level
    call in bounded memory. Sources as for `coarse_to_fine_arrays`, converted a strip at a
    time; `progress(1)` after each strip."""
    height = coarse.shape[0]
    strip = _strip_function(refiner)
    context = context_rows(refiner)
    coarse = np.asarray(coarse, np.float32)[None, :, :, None]
    refined = np.empty_like(coarse)
    for r0 in range(0, height, strip_rows):
        r1 = min(height, r0 + strip_rows)
        lo, hi = max(0, r0 - context), min(height, r1 + context)
        a, b = to_unit_rgb(image_a[lo:hi]), to_unit_rgb(image_b[lo:hi])
        refined[:, r0:r1] = strip(tf.constant(a[None]), tf.constant(b[None]),
                                  tf.constant(coarse[:, lo:hi]), tf.constant(r0 - lo),
                                  tf.constant(hi - r1)).numpy()
        if progress is not None:
            progress(1)
    return refined[0, :, :, 0]
