"""Small region removal (SRR, section 3.3) as a pure TensorFlow graph op.

Paper symbols: `focus_map` is the generator's focus map F_hat, the returned map is
F_final, `min_size` is N (N = 0.001 * W * H by default, section 3.3).

SRR binarises F_hat (`F_hat > threshold`, as MATLAB's `im2bw(F_hat, 0.5)` does), removes
foreground (1) regions of fewer than N pixels, then removes background (0) regions of fewer
than N pixels of that result (they become foreground). Regions are 4-connected. The result
equals `skimage.morphology.remove_small_objects(b, max_size=N - 1, connectivity=1)` applied
to the binary map and then to the inverted result (inverted back).

How the components are found (all builtin TFLite ops: no Flex):
  1. Runs: maximal horizontal stretches of equal value in a row. A cumulative sum over run
     starts gives every pixel its run id, so rows cost no iterations at all.
  2. Run graph: two runs are joined when they touch vertically with the same value. Only the
     columns where a run starts in either row can bring a new pair, so at most ~2 pairs per
     run are kept (`tf.where` on those columns).
  3. Union-find in parallel: every round hooks each tree root to the smallest root across its
     edges (`unsorted_segment_min`, always to a smaller index, so no cycles), then pointer
     jumping (`parent = parent[parent]`) until all paths are one step long. Trees of a path of
     length L merge in about log2(L) rounds instead of the L rounds of plain min-label
     propagation.
  4. Sizes: `unsorted_segment_sum` of run lengths per root.
  5. The background pass reuses the first pass's labels: a removed foreground region only
     joins the background regions that it touches, so only those adjacencies are added and
     the second union-find starts from the first one's result.

Memory is a few arrays of H*W elements (binary map, run ids, masks) plus arrays of the size of
the number of runs, so it is largest when every pixel is a run (a one-pixel serpentine).
docs/srr.md has measured times and peak memory.
"""

from __future__ import annotations

import fractions
import math
import numbers
from typing import Any, NamedTuple

import tensorflow as tf

_MAX_DENOMINATOR = 46340  # numerator * denominator stays below 2**31 for fractions <= 1.


class SRRStats(NamedTuple):
    """Work done by one call (scalar int32 tensors).

    Attributes:
      min_size: N actually used.
      num_runs: number of horizontal runs (nodes of the union-find) over the whole batch.
      num_edges: vertical same-value run adjacencies used by the foreground pass.
      rounds_fg: hooking rounds of the foreground pass (the last one only confirms).
      rounds_bg: hooking rounds of the background pass.
      jumps: pointer-jumping steps summed over all rounds of both passes.
    """

    min_size: tf.Tensor
    num_runs: tf.Tensor
    num_edges: tf.Tensor
    rounds_fg: tf.Tensor
    rounds_bg: tf.Tensor
    jumps: tf.Tensor


_BLOCK = 64


def _inclusive_count(flags: tf.Tensor) -> tf.Tensor:
    """Inclusive prefix count of a 1-D bool tensor, as int32.

    Equals `tf.cumsum(tf.cast(flags, tf.int32))`, but faster on CPU (docs/srr.md has the
    measured ratio): counts within blocks of 64 come from one matmul with a triangular matrix
    of ones (exact in float32, since they are at most 64), and only the block totals go
    through `cumsum`.
    """
    n = tf.shape(flags)[0]
    padded = tf.pad(tf.cast(flags, tf.float32), [[0, (-n) % _BLOCK]])
    triangle = tf.linalg.band_part(tf.ones([_BLOCK, _BLOCK]), 0, -1)
    # Rounding keeps the counts exact under TFLite's hybrid (dynamic-range int8) and float16
    # kernels, whose float results may be off by a few ulps.
    within = tf.cast(tf.round(tf.matmul(tf.reshape(padded, [-1, _BLOCK]), triangle)), tf.int32)
    offsets = tf.cumsum(within[:, -1], exclusive=True)
    return tf.reshape(within + offsets[:, tf.newaxis], [-1])[:n]


def _compress(parent: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """Pointer jumping until every node points at its root; returns (parent, steps)."""

    def body(p, _, steps):
        jumped = tf.gather(p, p)
        return jumped, tf.reduce_any(tf.not_equal(jumped, p)), steps + 1

    parent, _, steps = tf.while_loop(
        lambda p, changed, steps: changed,
        body,
        (parent, tf.constant(True), tf.constant(0, tf.int32)),
    )
    return parent, steps


def _connect(
    parent: tf.Tensor, u: tf.Tensor, v: tf.Tensor
) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """Union-find over edges (u[i], v[i]) starting from a compressed forest `parent`.

    Returns the compressed forest (every node holds the smallest node of its component,
    since hooks always go to a smaller root), the number of rounds and of jumps.
    """
    num_nodes = tf.shape(parent)[0]

    def body(p, _, rounds, jumps):
        a = tf.gather(p, u)
        b = tf.gather(p, v)
        hooks = tf.math.unsorted_segment_min(tf.minimum(a, b), tf.maximum(a, b), num_nodes)
        p, steps = _compress(tf.minimum(p, hooks))
        return p, tf.reduce_any(tf.not_equal(a, b)), rounds + 1, jumps + steps

    zero = tf.constant(0, tf.int32)
    parent, _, rounds, jumps = tf.while_loop(
        lambda p, active, rounds, jumps: active,
        body,
        (parent, tf.constant(True), zero, zero),
    )
    return parent, rounds, jumps


@tf.function(
    input_signature=(
        tf.TensorSpec([None, None, None], tf.bool),
        tf.TensorSpec([], tf.int32),
    ),
    autograph=False,
)
def remove_small_regions_binary(
    binary: tf.Tensor, min_size: tf.Tensor
) -> tuple[tf.Tensor, SRRStats]:
    """Both SRR passes on a binary batch (N, H, W); returns (F_final as float32 0/1, stats).

    A region is removed when it has fewer than `min_size` pixels.
    """
    shape = tf.shape(binary)
    height, width = shape[1], shape[2]
    rows = shape[0] * height
    total = rows * width
    # Images are stacked row-wise; vertical adjacencies across image borders are dropped below.
    x = tf.reshape(binary, [rows, width])

    # 1. Runs.
    starts = tf.concat(
        [tf.ones([rows, 1], tf.bool), tf.not_equal(x[:, 1:], x[:, :-1])], axis=1
    )
    starts_flat = tf.reshape(starts, [-1])
    run_id = _inclusive_count(starts_flat) - 1
    run_start = tf.cast(tf.reshape(tf.where(starts_flat), [-1]), tf.int32)
    num_runs = tf.shape(run_start)[0]
    run_len = tf.concat([run_start[1:], tf.reshape(total, [1])], axis=0) - run_start
    run_value = tf.gather(tf.reshape(x, [-1]), run_start)

    # 2. Vertical pairs of runs (row r, row r + 1 of the same image), once per distinct pair.
    not_last_row = tf.not_equal(tf.math.floormod(tf.range(rows - 1), height), height - 1)
    new_pair = tf.logical_and(
        tf.logical_or(starts[:-1], starts[1:]), tf.expand_dims(not_last_row, 1)
    )
    top = tf.cast(tf.reshape(tf.where(tf.reshape(new_pair, [-1])), [-1]), tf.int32)
    upper = tf.gather(run_id, top)
    lower = tf.gather(run_id, top + width)
    same = tf.equal(tf.gather(run_value, upper), tf.gather(run_value, lower))

    # 3./4. Foreground pass: F_hat's regions, sizes, small foreground regions removed.
    nodes = tf.range(num_runs)
    parent_fg, rounds_fg, jumps_fg = _connect(
        nodes, tf.boolean_mask(upper, same), tf.boolean_mask(lower, same)
    )
    size_fg = tf.math.unsorted_segment_sum(run_len, parent_fg, num_runs)
    removed = tf.logical_and(run_value, tf.gather(size_fg, parent_fg) < min_size)
    value_fg = tf.logical_and(run_value, tf.logical_not(removed))

    # 5. Background pass: a removed region merges with the background regions it touches,
    # horizontally (run i - 1 left of run i in the same row) or vertically.
    left_touch = tf.logical_and(
        tf.not_equal(tf.math.floormod(run_start[1:], width), 0),
        tf.logical_or(removed[1:], removed[:-1]),
    )
    vertical_touch = tf.logical_and(
        tf.logical_not(same),
        tf.logical_or(tf.gather(removed, upper), tf.gather(removed, lower)),
    )
    u = tf.concat(
        [tf.boolean_mask(nodes[1:], left_touch), tf.boolean_mask(upper, vertical_touch)], 0
    )
    v = tf.concat(
        [tf.boolean_mask(nodes[:-1], left_touch), tf.boolean_mask(lower, vertical_touch)], 0
    )
    parent_bg, rounds_bg, jumps_bg = _connect(parent_fg, u, v)
    size_bg = tf.math.unsorted_segment_sum(run_len, parent_bg, num_runs)
    filled = tf.logical_and(tf.logical_not(value_fg), tf.gather(size_bg, parent_bg) < min_size)
    value_final = tf.logical_or(value_fg, filled)

    out = tf.reshape(tf.gather(tf.cast(value_final, tf.float32), run_id), shape)
    stats = SRRStats(
        min_size=min_size,
        num_runs=num_runs,
        num_edges=tf.reduce_sum(tf.cast(same, tf.int32)),
        rounds_fg=rounds_fg,
        rounds_bg=rounds_bg,
        jumps=jumps_fg + jumps_bg,
    )
    return out, stats


def default_min_size(height: Any, width: Any, fraction: float = 0.001) -> tf.Tensor:
    """N = ceil(fraction * W * H) (section 3.3) in integer arithmetic, as an int32 scalar.

    `fraction` is read as the decimal it was written as (0.001 is exactly 1/1000), so an integer
    product such as 0.001 * 6000 * 4000 = 24000 is not pushed to 24001 by float rounding. A
    region is removed when its size is below fraction * W * H, i.e. below this ceiling. With
    Python ints for `height` and `width` the result is exact; with tensors (dynamic shapes) the
    fraction is first rounded to the nearest ratio with denominator <= 46340 so that the
    arithmetic fits in int32 (exact for up to four decimal places, such as 0.001 or 0.0025).
    """
    if (
        isinstance(fraction, bool)
        or not isinstance(fraction, (int, float))
        or not 0.0 <= fraction <= 1.0
    ):
        raise ValueError(f"min_size_fraction must be a number in [0, 1], got {fraction!r}")
    exact = fractions.Fraction(repr(float(fraction)))
    if isinstance(height, numbers.Integral) and isinstance(width, numbers.Integral):
        return tf.constant(min(math.ceil(exact * int(height) * int(width)), 2**31 - 1), tf.int32)
    exact = exact.limit_denominator(_MAX_DENOMINATOR)
    p, q = exact.numerator, exact.denominator
    area = tf.cast(height, tf.int32) * tf.cast(width, tf.int32)
    # ceil(p * area / q) without overflowing int32: area = q * k + r.
    return (area // q) * p + ((area % q) * p + q - 1) // q


def _min_size_tensor(min_size: Any) -> tf.Tensor:
    """An explicit N (Python number or scalar tensor) as int32: fewer than N pixels go."""
    if isinstance(min_size, bool):
        raise TypeError("min_size must be a number or a scalar tensor, got a bool")
    if isinstance(min_size, (int, float)):
        if math.isnan(min_size) or min_size < 0:
            raise ValueError(f"min_size must be >= 0, got {min_size!r}")
        return tf.constant(2**31 - 1 if min_size >= 2**31 - 1 else math.ceil(min_size), tf.int32)
    n = tf.convert_to_tensor(min_size)
    if n.shape.rank not in (None, 0):
        raise ValueError(f"min_size must be a scalar, got shape {n.shape}")
    n = tf.reshape(n, [])
    if n.dtype.is_floating:
        return tf.cast(tf.math.ceil(tf.cast(n, tf.float32)), tf.int32)
    if n.dtype.is_integer:
        return tf.cast(n, tf.int32)
    raise TypeError(f"min_size must be an integer or float tensor, got dtype {n.dtype.name}")


def _in_xla_function() -> bool:
    try:
        from tensorflow.python.ops import control_flow_util
    except ImportError:  # private module; without it the check is skipped
        return False
    return control_flow_util.GraphOrParentsInXlaContext(tf.compat.v1.get_default_graph())


def _prepare(focus_map: Any, threshold: float) -> tuple[tf.Tensor, tf.Tensor]:
    """Checks F_hat's shape and dtype; returns (binary (N, H, W), original shape)."""
    if _in_xla_function():
        # XLA pads the data-dependent sizes of tf.where and gives wrong maps; refuse instead.
        raise RuntimeError(
            "small_region_removal cannot run inside an XLA-compiled function "
            "(jit_compile=True); call it outside the compiled part"
        )
    x = tf.convert_to_tensor(focus_map)
    if not (x.dtype.is_floating or x.dtype.is_integer or x.dtype == tf.bool):
        raise TypeError(
            f"focus_map must be a float, integer or bool tensor, got dtype {x.dtype.name}"
        )
    rank = x.shape.rank
    if rank is None:
        raise ValueError("focus_map must have a known rank: (H, W), (H, W, 1) or (N, H, W, 1)")
    if rank not in (2, 3, 4) or (rank >= 3 and x.shape[-1] not in (1, None)):
        raise ValueError(
            f"focus_map must have shape (H, W), (H, W, 1) or (N, H, W, 1), got {x.shape}"
        )
    if any(d == 0 for d in x.shape):
        raise ValueError(f"focus_map must not be empty, got shape {x.shape}")
    if x.shape.is_fully_defined() and x.shape.num_elements() >= 2**31:
        raise ValueError(
            f"focus_map has {x.shape.num_elements()} pixels, more than int32 indices allow"
        )
    # F_hat > 0.5 as im2bw does; NaN counts as background.
    if x.dtype == tf.bool:
        binary = x
    elif x.dtype.is_floating:
        binary = x > tf.cast(threshold, x.dtype)
    else:
        binary = tf.cast(x, tf.float32) > tf.cast(threshold, tf.float32)
    if rank == 4:
        binary = binary[:, :, :, 0]
    elif rank == 3:
        binary = binary[tf.newaxis, :, :, 0]
    else:
        binary = binary[tf.newaxis]
    return binary, tf.shape(x)


def small_region_removal_with_stats(
    focus_map: Any,
    min_size: Any = None,
    threshold: float = 0.5,
    min_size_fraction: float = 0.001,
) -> tuple[tf.Tensor, SRRStats]:
    """`small_region_removal` that also returns the work done (`SRRStats`)."""
    binary, dims = _prepare(focus_map, threshold)
    if min_size is None:
        height, width = binary.shape[1], binary.shape[2]
        if height is None or width is None:
            height, width = tf.shape(binary)[1], tf.shape(binary)[2]
        n = default_min_size(height, width, min_size_fraction)
    else:
        n = _min_size_tensor(min_size)
    out, stats = remove_small_regions_binary(binary, n)
    return tf.reshape(out, dims), stats


def small_region_removal(
    focus_map: Any,
    min_size: Any = None,
    threshold: float = 0.5,
    min_size_fraction: float = 0.001,
) -> tf.Tensor:
    """SRR (section 3.3): F_hat -> F_final.

    Args:
      focus_map: F_hat, float in [0, 1] of shape (H, W), (H, W, 1) or (N, H, W, 1); H and W
        may be dynamic. Integer and bool maps are accepted too (bool is used as is).
      min_size: N; regions with fewer than N pixels are removed. A Python number or a scalar
        int/float tensor (a float N removes sizes < N, i.e. < ceil(N)). None gives
        N = ceil(min_size_fraction * W * H) per image.
      threshold: binarisation threshold, a pixel is foreground when F_hat > threshold.
      min_size_fraction: the 0.001 of N = 0.001 * W * H.

    Returns:
      F_final, float32 with values in {0, 1} and the input's shape.
    """
    return small_region_removal_with_stats(focus_map, min_size, threshold, min_size_fraction)[0]
