"""F_hat = G(I_A, I_B) for images of any size: in one call, or in tiles in bounded memory.

Symbols: I_A, I_B are the sources (`image_a`, `image_b`: uint8, uint16 or float in [0, 1],
grey (H, W) or RGB (H, W, 3)); F_hat is G's focus map in [0, 1], 1 where I_A is in focus
(section 3.1). G sees each source scaled from its own range to [-1, 1] (uint8 / 255,
uint16 / 65535), grey sources as three equal channels (section 4.1.2).

Why tiles need care: every SE block of G squeezes its residual branch by a mean over the
whole image (Fig. 3), so G run on a tile sees other means than G run on the whole image.
The tiled scheme here gives the whole-image result (up to float rounding). Its sizes are
read off G's layers (`tile_geometry`), so they follow the model configuration; below, m is
`Generator.size_multiple` (4 for the presets: two stride-2 stages) and an encoded position
covers m x m image pixels:

  1. G pads the image to a multiple of m and its encoder branches (one per colour channel,
     shared weights) never mix until `merge`. Each branch b is encoded on its own, so only
     one branch's features are held at a time.
  2. Stem: for each tile (T x T full-resolution pixels, at multiples of m) the stem runs on
     the tile plus a halo of `stem_halo` pixels (the stem's reach rounded up to a multiple
     of m: 3 pixels before and 6 after give 8 for the presets, so the tile's own padding
     never reaches the kept part); the encoded result goes into a feature buffer
     (H/m, W/m, C).
  3. SE blocks, one at a time over the whole buffer: pass 1 runs the block's residual branch
     on every block tile with a halo of `block_halo` (2: two 3x3 convs), stores it and sums
     it over the tile interiors; the sum / pixel count is exactly the whole-image mean the SE
     block squeezes. Pass 2 applies the excitation with that mean and the identity addition
     (y = ReLU(x + s * r)) element-wise, in place. Block tiles are T/2 x T/2 encoded
     positions (2T x 2T image pixels for the presets): the blocks' maps take 16 times less
     memory per image pixel than the stem's, and small convolutions run less efficiently
     (docs/benchmarks.md, "Tiled inference", has the measured figures).
  4. The branch's output is added to its source's accumulator (Feature_A or Feature_B, the
     channel mean of `merge`).
  5. Decoder: per tile with a halo of `decode_halo` encoded positions (2: the transposed
     convs and the 7x7 head), cropped back to the tile.

Cost: every layer runs once per pixel plus the halos (with T = 768: 4 % more work in the
stem and in the decoder, 2 % in the blocks, which do about 85 % of G's work), plus one
element-wise pass per SE block (in cache-sized row bands, on every CPU of the process) and
the copies between tiles and buffers (docs/benchmarks.md
has measured times against one whole-image call). Memory (m = 4): four (H/4, W/4, C)
float32 buffers (working pair, two accumulators), i.e. 4 * 4 * C / 16 = C bytes per image
pixel (64 for the compact preset, 256 for the paper's), plus one tile's activations (about
0.4 GB at the default T), independent of the image size.

Precision: the stem is fed in float32 (`Generator.stem_dtype`: G's first convolution is
float32 under every policy), every other piece of G in G's compute dtype
(`Generator.compute_dtype`; bfloat16 under the mixed_bfloat16 policy), and each output is
kept in the float32 buffers, where the SE means are summed per row in float32 and over rows
and tiles in float64, and the excitation, identity addition and ReLU run in float32.
A bfloat16 G in tiles therefore rounds less often than the same G in one call (which keeps
bfloat16 between its blocks): the two agree to bfloat16 rounding, not float32's. The memory
plan assumes float32 activations either way (bfloat16 needs less).
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import math
from collections.abc import Callable, Sequence

import numpy as np
import tensorflow as tf

from mfif_tf import scales as scales_lib
from mfif_tf.common import usable_cpus
from mfif_tf.inference import MIN_IMAGE_SIDE, unit_scale  # noqa: F401 (re-exported)
from mfif_tf.networks import Generator

WHOLE_IMAGE_BUDGET = 2 << 30  # bytes of activations allowed for one whole-image call
TILE_BUDGET = 448 << 20  # bytes of activations of one stem or decoder tile


class CompiledPieces:
    """G's forward pass and the pieces that tiles run, each a `tf.function` traced once for
    inputs of any height and width (`get_compiled`).

    Traced, TensorFlow's graph optimiser runs each convolution with its bias and ReLU as one
    oneDNN kernel; eager execution runs them op by op, which took 1.3x the time (G on a
    1416 x 1416 pair: 2.72 s eager, 2.07 s traced; docs/benchmarks.md)."""

    def __init__(self, generator: Generator):
        stem_dtype, dtype = generator.stem_dtype, tf.as_dtype(generator.compute_dtype)
        channels = generator.config.down_channels[-1]

        def spec(depth: int, tensor_dtype: tf.DType) -> list[tf.TensorSpec]:
            return [tf.TensorSpec([None, None, None, depth], tensor_dtype)]

        self.forward = tf.function(lambda x: generator(x, training=False),
                                   input_signature=spec(6, stem_dtype), autograph=False)
        self.stem = tf.function(lambda x: generator.stem(x, training=False),
                                input_signature=spec(1, stem_dtype), autograph=False)
        # Blocks with SE give their residual branch (the tiles' SE means are summed apart);
        # blocks without it the whole block.
        self.blocks = [
            tf.function((lambda x, blk=block: blk.residual(x, training=False))
                        if block.se is not None
                        else (lambda x, blk=block: blk(x, training=False)),
                        input_signature=spec(channels, dtype), autograph=False)
            for block in generator.blocks]
        self.decode = tf.function(lambda x: generator.decode(x, training=False),
                                  input_signature=spec(2 * channels, dtype), autograph=False)


_COMPILED: dict[int, CompiledPieces] = {}


def get_compiled(generator: Generator) -> CompiledPieces:
    """The `CompiledPieces` of G, made on first use and kept for the last few G's (they hold
    G, so its id stays unique while it is kept)."""
    key = id(generator)
    if key not in _COMPILED:
        if len(_COMPILED) >= 4:
            _COMPILED.clear()
        _COMPILED[key] = CompiledPieces(generator)
    return _COMPILED[key]


@dataclasses.dataclass(frozen=True)
class TileGeometry:
    """How tiles of one G fit together, read off G's layers (`Generator.stem_reach` etc.).

    Attributes:
      factor: full-resolution pixels per encoded position (`Generator.size_multiple`, 4
        for the paper's two stride-2 stages); tiles start at multiples of it.
      stem_halo: full-resolution pixels around a stem tile: the stem's reach (3 before and
        6 after in the paper's G), rounded up to a multiple of `factor`.
      block_halo: encoded positions around a block tile: the reach of one block's two 3x3
        convs (2).
      decode_halo: encoded positions around a decoder tile: the reach of the transposed
        convs and the 7x7 head (2).
    """

    factor: int
    stem_halo: int
    block_halo: int
    decode_halo: int


def tile_geometry(generator: Generator) -> TileGeometry:
    """The `TileGeometry` of G: each halo is the least that keeps the tile's own padding
    out of the kept part (the tests check that one position less changes the result)."""
    factor = generator.size_multiple
    return TileGeometry(
        factor=factor,
        stem_halo=-(-generator.stem_reach().most // factor) * factor,
        block_halo=generator.block_reach().most,
        decode_halo=generator.decode_reach().most,
    )


def to_network_range(pixels: np.ndarray) -> np.ndarray:
    """uint8 / 255, uint16 / 65535, float as is, mapped to [-1, 1]; grey to 3 channels."""
    x = (pixels.astype(np.float32) * np.float32(2.0 * unit_scale(pixels.dtype))
         - np.float32(1.0))
    if x.ndim == 2:
        x = np.repeat(x[:, :, None], 3, axis=2)
    return x


def network_input(image_a: np.ndarray, image_b: np.ndarray) -> np.ndarray:
    """G's input (1, H, W, 6): I_A and I_B in [-1, 1], concatenated on channels."""
    return np.concatenate([to_network_range(image_a), to_network_range(image_b)], axis=-1)[None]


def _activation_bytes_per_pixel(generator: Generator) -> int:
    """Bytes per image pixel budgeted for one whole-image call: four float32 copies of the
    full-resolution stem maps of all branches. Measured peak RSS growth of the traced call
    (`CompiledPieces.forward`): 715-861 for the compact preset at 1-3.2 MP (1440 when G ran
    op by op). The budget keeps the margin: with 10 instead of 16 bytes (2 MP in one call)
    the 24 MP benchmark's peak rose from 2.8 to 4.1 GB, its tiles unchanged (most likely
    memory of an earlier whole-image call that the allocator keeps)."""
    return 16 * generator.num_branches * generator.config.stem_channels


def _tile_bytes_per_pixel(generator: Generator) -> int:
    """Peak bytes per tile pixel (one branch's stem maps, the decoder's last maps; measured:
    about 630 for the compact preset)."""
    cfg = generator.config
    return 20 * max(cfg.stem_channels, cfg.down_channels[0])


def default_tile_size(generator: Generator) -> int:
    """The largest multiple of 128 whose tile (with halo) fits `TILE_BUDGET` (768 for the
    compact preset, 384 for the paper's)."""
    halo = tile_geometry(generator).stem_halo
    side = math.sqrt(TILE_BUDGET / _tile_bytes_per_pixel(generator)) - 2 * halo
    return max(128, int(side) // 128 * 128)


def plan_tile_size(generator: Generator, height: int, width: int,
                   tile_size: int | None = None) -> int:
    """0 for one whole-image call, else the tile side T (a multiple of G's
    `size_multiple`, 4 for the presets).

    `tile_size` None picks whole-image when its activations fit `WHOLE_IMAGE_BUDGET`, else
    `default_tile_size`; 0 forces whole-image; T > 0 is rounded up to a multiple of
    `size_multiple`, and to at least twice it.
    """
    if tile_size is None:
        if height * width * _activation_bytes_per_pixel(generator) <= WHOLE_IMAGE_BUDGET:
            return 0
        tile_size = default_tile_size(generator)
    if tile_size < 0:
        raise ValueError(f"tile_size must be >= 0, got {tile_size}")
    if tile_size == 0:
        return 0
    multiple = generator.size_multiple
    tile = -(-int(tile_size) // multiple) * multiple
    return max(tile, 2 * multiple)


def _mirror_index(size: int, padded: int) -> np.ndarray:
    """Indices of G's symmetric padding of `size` pixels to `padded`: ..., n-1, n-1, n-2, ..."""
    idx = np.arange(padded)
    return np.where(idx < size, idx, 2 * size - 1 - idx)


def _quarter_tiles(hq: int, wq: int, tq: int) -> list[tuple[int, int, int, int]]:
    return [(y, min(y + tq, hq), x, min(x + tq, wq))
            for y in range(0, hq, tq) for x in range(0, wq, tq)]


def _halo(lo: int, hi: int, halo: int, size: int) -> tuple[int, int]:
    return max(0, lo - halo), min(size, hi + halo)


def predict_focus_map(generator: Generator, image_a: np.ndarray, image_b: np.ndarray,
                      tile_size: int | None = None,
                      progress: Callable[[int], None] | None = None,
                      progress_total: Callable[[int], None] | None = None,
                      flips: bool = False, scales: Sequence[float] = (1.0,)) -> np.ndarray:
    """F_hat (H, W) float32 in [0, 1] for two same-sized sources.

    Args:
      generator: G.
      image_a, image_b: I_A, I_B (uint8, uint16 or float in [0, 1]; grey or RGB).
      tile_size: None (whole image when it fits in memory, else tiles), 0 (whole image) or
        the tile side T in pixels.
      progress: called with the number of finished tile steps (for a progress bar).
      progress_total: called with the number of tile steps to come (once per network pass).
      flips: test-time augmentation: the mean of F_hat for the sources as given, mirrored
        left-right and mirrored top-bottom (each mirrored back); three network passes.
      scales: F_hat is the mean of G's maps at these scales (1/k, integer k; `mfif_tf.scales`),
        each brought back to (H, W); one network pass per scale (and per flip).
    """
    scales = scales_lib.parse_scales(scales)
    if flips:
        views = [(slice(None), slice(None)), (slice(None), slice(None, None, -1)),
                 (slice(None, None, -1), slice(None))]
        total = np.zeros(image_a.shape[:2], np.float32)
        for view in views:
            total += predict_focus_map(generator, image_a[view], image_b[view], tile_size,
                                       progress, progress_total, scales=scales)[view]
        return total / np.float32(len(views))
    if scales != (1.0,):
        height, width = image_a.shape[:2]
        total = None  # one scale (G below full size): its map as it is, no copies
        for scale in scales:
            k = scales_lib.factor(scale)
            if k == 1:
                term = predict_focus_map(generator, image_a, image_b, tile_size, progress,
                                         progress_total)
            else:
                small = predict_focus_map(generator, _downscaled(image_a, k),
                                          _downscaled(image_b, k), tile_size, progress,
                                          progress_total)
                term = scales_lib.upscale(tf.constant(small[None, :, :, None]), k, height,
                                          width).numpy()[0, :, :, 0]
            total = term if total is None else total + term
        return total if len(scales) == 1 else total / np.float32(len(scales))
    height, width = image_a.shape[:2]
    tile = plan_tile_size(generator, height, width, tile_size)
    if tile == 0 or (tile >= height and tile >= width):
        if progress_total is not None:
            progress_total(1)
        x = tf.convert_to_tensor(network_input(image_a, image_b), generator.stem_dtype)
        out = get_compiled(generator).forward(x)
        if progress is not None:
            progress(1)
        return np.asarray(out[0, :, :, 0], np.float32)
    return _tiled_focus_map(generator, image_a, image_b, tile, progress, progress_total)


def _downscaled(pixels: np.ndarray, k: int) -> np.ndarray:
    """A source as float32 in [0, 1], downscaled by k as `scales.downscale` does (edge rows
    and columns repeated up to `scales.padded_side`, then k x k means), in NumPy: a view
    reshaped to the blocks, no gathered copy of the image. Integer sources are summed as
    integers (exact) and scaled once, so no float32 copy of the full image is made."""
    height, width = pixels.shape[:2]
    rows, cols = scales_lib.padded_side(height, k), scales_lib.padded_side(width, k)
    if (rows, cols) != (height, width):
        pixels = np.pad(pixels, [(0, rows - height), (0, cols - width)]
                        + [(0, 0)] * (pixels.ndim - 2), mode="edge")
    integer = pixels.dtype.kind in "ui"
    blocks = pixels.reshape(rows // k, k, cols // k, k, *pixels.shape[2:])
    # k^2 strided adds: 4x faster than mean() over the block axes.
    total = blocks[:, 0, :, 0].astype(np.uint32 if integer else np.float32)
    for i in range(k):
        for j in range(k):
            if i or j:
                total += blocks[:, i, :, j]
    if integer:
        return total.astype(np.float32) * np.float32(unit_scale(pixels.dtype) / (k * k))
    return total * np.float32(unit_scale(pixels.dtype)) / np.float32(k * k)


# Rows of the (H/m, W/m, C) buffers per step of `_excite`: a few hundred kB, so that the
# three element-wise passes over a step stay in the CPU's cache.
_EXCITE_BYTES = 1 << 19
# Threads of `_excite` at most: the pass is bound by memory bandwidth beyond a few cores.
_EXCITE_THREADS = 8


def _excite_rows(y: np.ndarray, x: np.ndarray, scale: np.ndarray, r0: int, r1: int) -> None:
    rows = max(1, _EXCITE_BYTES // max(1, y[0].nbytes))
    for start in range(r0, r1, rows):
        stop = min(start + rows, r1)
        part = y[start:stop]
        np.multiply(part, scale, out=part)  # excitation (SE)
        np.add(part, x[start:stop], out=part)  # identity branch
        np.maximum(part, 0.0, out=part)


def _excite(y: np.ndarray, x: np.ndarray, scale: np.ndarray) -> None:
    """y = ReLU(x + scale * y) in place: an SE block's excitation and identity addition,
    in row bands on the process's CPUs (NumPy releases the GIL in these loops)."""
    workers = min(usable_cpus(), _EXCITE_THREADS, y.shape[0])
    if workers <= 1 or y.nbytes < 8 * _EXCITE_BYTES:
        _excite_rows(y, x, scale, 0, y.shape[0])
        return
    bounds = np.linspace(0, y.shape[0], workers + 1).astype(int)
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        for done in [pool.submit(_excite_rows, y, x, scale, int(r0), int(r1))
                     for r0, r1 in zip(bounds[:-1], bounds[1:])]:
            done.result()


def _tiled_focus_map(generator: Generator, image_a: np.ndarray, image_b: np.ndarray,
                     tile: int, progress, progress_total,
                     geometry: TileGeometry | None = None) -> np.ndarray:
    geo = geometry or tile_geometry(generator)
    m = geo.factor  # full-resolution pixels per encoded position
    height, width = image_a.shape[:2]
    padded_h = -(-height // m) * m
    padded_w = -(-width // m) * m
    hq, wq = padded_h // m, padded_w // m
    rows, cols = _mirror_index(height, padded_h), _mirror_index(width, padded_w)
    tiles = _quarter_tiles(hq, wq, tile // m)
    block_tiles = _quarter_tiles(hq, wq, max(1, tile // 2))
    channels = generator.config.down_channels[-1]
    branches = generator.num_branches
    per_source = branches // 2
    dtype = generator.compute_dtype
    compiled = get_compiled(generator)
    if progress_total is not None:
        progress_total(branches * (len(tiles) + len(block_tiles) * len(generator.blocks))
                       + len(tiles))
    step = progress or (lambda n: None)

    accumulators = np.zeros((2, hq, wq, channels), np.float32)  # Feature_A, Feature_B sums
    x = np.empty((hq, wq, channels), np.float32)
    y = np.empty((hq, wq, channels), np.float32)
    ones = tf.ones([1, 1, 1, channels], dtype)
    for branch in range(branches):
        for qy0, qy1, qx0, qx1 in tiles:  # stem
            fy0, fy1 = _halo(m * qy0, m * qy1, geo.stem_halo, padded_h)
            fx0, fx1 = _halo(m * qx0, m * qx1, geo.stem_halo, padded_w)
            r, c = np.ix_(rows[fy0:fy1], cols[fx0:fx1])
            if generator.config.branches == "six":  # branch b is channel b of concat(A, B)
                source = image_a if branch < 3 else image_b
                part = source[r, c] if source.ndim == 2 else source[r, c, branch % 3]
                inputs = to_network_range(part)[None, :, :, :1]
            else:
                inputs = generator.to_branches(tf.convert_to_tensor(
                    network_input(image_a[r, c], image_b[r, c]),
                    generator.stem_dtype))[branch:branch + 1]
            out = compiled.stem(tf.convert_to_tensor(inputs, generator.stem_dtype))
            out = np.asarray(out[0], np.float32)
            oy, ox = qy0 - fy0 // m, qx0 - fx0 // m
            x[qy0:qy1, qx0:qx1] = out[oy:oy + qy1 - qy0, ox:ox + qx1 - qx0]
            step(1)
        for block, block_fn in zip(generator.blocks, compiled.blocks):  # SE: whole-image means
            total = np.zeros(channels, np.float64)
            for qy0, qy1, qx0, qx1 in block_tiles:
                ry0, ry1 = _halo(qy0, qy1, geo.block_halo, hq)
                rx0, rx1 = _halo(qx0, qx1, geo.block_halo, wq)
                part = tf.convert_to_tensor(x[None, ry0:ry1, rx0:rx1], dtype)
                out = np.asarray(block_fn(part)[0], np.float32)
                core = out[qy0 - ry0:qy1 - ry0, qx0 - rx0:qx1 - rx0]
                y[qy0:qy1, qx0:qx1] = core
                if block.se is not None:  # rows summed in float32, then in float64
                    total += np.add.reduce(core, axis=0).sum(axis=0, dtype=np.float64)
                step(1)
            if block.se is not None:
                pooled = tf.convert_to_tensor((total / (hq * wq))[None], dtype)
                scale = np.asarray(block.se(ones, pooled=pooled), np.float32).reshape(channels)
                _excite(y, x, scale)
            x, y = y, x
        accumulators[branch // per_source] += x
    del x, y
    accumulators *= np.float32(1.0 / per_source)  # merge: channel mean per source

    focus = np.empty((height, width), np.float32)
    for qy0, qy1, qx0, qx1 in tiles:  # decoder
        ry0, ry1 = _halo(qy0, qy1, geo.decode_halo, hq)
        rx0, rx1 = _halo(qx0, qx1, geo.decode_halo, wq)
        features = np.concatenate([accumulators[0, ry0:ry1, rx0:rx1],
                                   accumulators[1, ry0:ry1, rx0:rx1]], axis=-1)
        out = compiled.decode(tf.convert_to_tensor(features[None], dtype))
        out = np.asarray(out[0, :, :, 0], np.float32)
        y0, y1 = m * qy0, min(m * qy1, height)
        x0, x1 = m * qx0, min(m * qx1, width)
        if y0 < y1 and x0 < x1:
            focus[y0:y1, x0:x1] = out[y0 - m * ry0:y1 - m * ry0, x0 - m * rx0:x1 - m * rx0]
        step(1)
    return focus
