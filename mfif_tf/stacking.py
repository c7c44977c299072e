"""The stack loop that both engines run, with no TensorFlow import: checks of the sources,
alignment, and the fusion of the frames one at a time into a running result, R = frame 0,
then R = fuse(R, frame k) for the other frames in the stack's fusion order (eq. 14 on the
original pixels, index map k where frame k is taken). What makes F_hat and F_final of one
step is a function the engine passes in (`mfif_tf.fusion` for TensorFlow,
`mfif_tf.litert_engine` for LiteRT).

Fusion order. The frames of a focus stack are given in focus order, and neighbouring frames
differ little in focus: a step that weighs R against the next frame in that order has to
tell two nearly equal blurs apart, on every pixel, and where it errs the error stays, and
carries the blurred halo of one frame's defocused outlines into R. The default order
"bisect" fuses frame 0 with the last frame first, then the frame midway between two fused
ones, breadth first (0, 8, 4, 2, 6, 1, 3, 5, 7 for nine frames), so that every step weighs a
frame against pixels from frames far from it in focus. "sequential" is 0, 1, ..., N - 1.
Both fuse each frame once (N - 1 steps); "bisect" needs the frames in any order, so an
iterator is read into a list first (give a sequence, e.g. `LazyFrames`, to keep one frame
in memory at a time), and with alignment the frames are read twice: once in input order
for the chained registration, once in fusion order.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from mfif_tf.align import AlignmentError, StackAligner, warp_to_reference
from mfif_tf.common import MIN_IMAGE_SIDE, check_mode, check_working_side, fuse_with_map
from mfif_tf.image_io import InputError
from mfif_tf.scales import parse_scales

TIMING_KEYS = ("network", "srr", "edge", "align", "fusion", "total")
STACK_ORDERS = ("bisect", "sequential")
DEFAULT_STACK_ORDER = "bisect"


@dataclasses.dataclass
class FusionResult:
    """What one fusion returns.

    Attributes:
      fused: I_fused, the sources' dtype and layout ((H, W) grey or (H, W, 3)).
      f_hat: F_hat (H, W) float32 in [0, 1] (pairs only, else None).
      f_final: F_final (H, W) float32, {0, 1} with SRR or edge_pixels, else F_hat (pairs only).
      index_map: (H, W) uint8 (uint16 for more than 256 frames): the frame each pixel comes
        from (0-based, in input order); for a soft F_final the frame with the larger weight.
      timings: seconds spent in "network" (G), "srr", "edge" (diffusion/contraction),
        "align", "fusion" (eq. 14) and "total" (the whole call).
      transforms: with alignment, one 3 x 3 matrix per frame mapping its pixels onto the
        first frame (the identity for frame 0); else None.
      precision: what G computed in, "float32" or "bfloat16".
      engine: what ran the networks, "tensorflow" or "litert".
    """

    fused: np.ndarray
    f_hat: np.ndarray | None
    f_final: np.ndarray | None
    index_map: np.ndarray
    timings: dict[str, float]
    transforms: list[np.ndarray] | None = None
    precision: str = "float32"
    engine: str = "tensorflow"


def check_source(pixels: Any, name: str) -> np.ndarray:
    """Validates one source: uint8, uint16 or float in [0, 1]; (H, W), (H, W, 1) or (H, W, 3);
    at least `MIN_IMAGE_SIDE` pixels a side. Returns (H, W) or (H, W, 3)."""
    if not isinstance(pixels, np.ndarray):
        raise InputError(f"{name}: expected a NumPy array, got {type(pixels).__name__}")
    if pixels.dtype not in (np.uint8, np.uint16, np.float32, np.float64):
        raise InputError(f"{name}: unsupported dtype {pixels.dtype}; expected uint8, uint16 or "
                         "float in [0, 1]")
    if pixels.ndim == 3 and pixels.shape[2] == 1:
        pixels = pixels[:, :, 0]
    if pixels.ndim not in (2, 3) or (pixels.ndim == 3 and pixels.shape[2] != 3):
        raise InputError(f"{name}: expected an (H, W) grey or (H, W, 3) RGB image, got shape "
                         f"{pixels.shape}")
    side = MIN_IMAGE_SIDE
    if min(pixels.shape[:2]) < side:
        raise InputError(f"{name}: image is {pixels.shape[1]}x{pixels.shape[0]} pixels; the "
                         f"network needs at least {side}x{side}")
    if pixels.dtype.kind == "f":
        low, high = float(np.min(pixels)), float(np.max(pixels))
        if not (np.isfinite(low) and np.isfinite(high)) or low < 0.0 or high > 1.0:
            raise InputError(f"{name}: float images must lie in [0, 1], got values in "
                             f"[{low:g}, {high:g}]")
    return pixels


def _as_rgb(pixels: np.ndarray) -> np.ndarray:
    return np.repeat(pixels[:, :, None], 3, axis=2) if pixels.ndim == 2 else pixels


def same_layout(running: np.ndarray, frame: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Grey and colour sources fuse in colour: the grey one is tripled."""
    if running.ndim != frame.ndim:
        return _as_rgb(running), _as_rgb(frame)
    return running, frame


def check_fusion_mode(mode: str, working_side: Any, scales: Any) -> tuple[float, ...]:
    """Checks `mode`, `working_side` and `scales` together; returns the parsed scales
    ((1,) unless given; only the paper mode takes other scales). InputError otherwise."""
    try:
        check_mode(mode)
        check_working_side(working_side)
        parsed = parse_scales(scales if scales is not None else (1.0,))
    except ValueError as err:
        raise InputError(str(err)) from None
    if mode == "coarse_to_fine" and parsed != (1.0,):
        raise InputError("scales apply to modes 'refined' and 'paper' (coarse-to-fine runs G "
                         "once, at the working resolution)")
    return parsed


def check_edge_and_size(edge_pixels: Any, min_size: Any) -> None:
    """InputError for a non-integer `edge_pixels` or a bad SRR `min_size`."""
    if int(edge_pixels) != edge_pixels:
        raise InputError(f"edge_pixels must be an integer, got {edge_pixels!r}")
    if min_size is not None and (isinstance(min_size, bool) or min_size < 0):
        raise InputError(f"min_size must be a non-negative number of pixels, got {min_size!r}")


def diffuse_map(f_final: np.ndarray, edge_pixels: int, timings: dict[str, float]) -> np.ndarray:
    """Section 4.2.4: grows (> 0) or shrinks (< 0) the foreground of F_final by a disk."""
    from mfif_tf.edge_morphology import diffuse  # NumPy/SciPy only

    start = time.perf_counter()
    out = diffuse(f_final > 0.5, int(edge_pixels)).astype(np.float32)
    timings["edge"] += time.perf_counter() - start
    return out


def _check_next(frame: np.ndarray, first: np.ndarray, k: int, name) -> None:
    """A later frame must match the first one in dtype and (after alignment) size."""
    if frame.dtype != first.dtype:
        raise InputError(f"{name(k)}: dtype {frame.dtype} differs from {name(0)}'s "
                         f"{first.dtype}; all sources need the same bit depth")
    if frame.shape[:2] != first.shape[:2]:
        raise InputError(
            f"{name(k)}: size {frame.shape[1]}x{frame.shape[0]} differs from {name(0)}'s "
            f"{first.shape[1]}x{first.shape[0]}; sources must have the same size (use "
            "--align to register hand-held frames)")
    if k > np.iinfo(np.uint16).max:
        raise InputError(f"{name(k)}: stacks are limited to 65536 frames")


def check_stack_order(order: Any) -> str:
    """Returns `order` if it is one of `STACK_ORDERS`, else raises InputError naming it."""
    if order not in STACK_ORDERS:
        raise InputError(f"stack order {order!r} is not one of {', '.join(STACK_ORDERS)}")
    return order


def fusion_order(count: int, order: str = DEFAULT_STACK_ORDER) -> list[int]:
    """The order in which the `count` frames of a stack are fused (frame 0 first, it starts
    the running result): "sequential" 0, 1, ..., count - 1; "bisect" 0, count - 1, then the
    frame midway between two fused ones, breadth first (0, 4, 2, 1, 3 for five frames)."""
    check_stack_order(order)
    if order == "sequential" or count <= 2:
        return list(range(count))
    out, spans = [0, count - 1], [(0, count - 1)]
    while spans:
        lo, hi = spans.pop(0)
        if hi - lo >= 2:
            mid = (lo + hi) // 2
            out.append(mid)
            spans += [(lo, mid), (mid, hi)]
    return out


class LazyFrames(Sequence):
    """The frames of a stack as a sequence that loads frame k only when it is asked for, so
    that fusion in any order holds one frame at a time: `load(k)` returns its pixels."""

    def __init__(self, count: int, load: Callable[[int], np.ndarray]):
        self._count, self._load = count, load

    def __len__(self) -> int:
        return self._count

    def __getitem__(self, k):
        if isinstance(k, slice):
            return [self[i] for i in range(*k.indices(self._count))]
        if not -self._count <= k < self._count:
            raise IndexError(k)
        return self._load(k % self._count)


# One step of a stack: (running result, frame k, progress bar, timings) -> (F_hat, F_final,
# whether F_final is binary). Called with two checked sources of one size and layout.
PairMaps = Callable[[np.ndarray, np.ndarray, Any, dict], tuple[np.ndarray, np.ndarray, bool]]


def _aligned_in_order(frames: Iterable[np.ndarray], order: str, aligner: StackAligner | None,
                      name: Callable[[int], str], timings: dict[str, float],
                      transforms: list[np.ndarray] | None
                      ) -> Iterator[tuple[int, np.ndarray, np.ndarray | None]]:
    """(k, frame k checked and aligned, the mask of the pixels it covers or None) in the
    fusion order of `order`; fills `transforms` (input order) when aligning."""

    def align(frame, k, matrix=None):
        start = time.perf_counter()
        try:
            if matrix is None:
                frame, covered, matrix = aligner(frame)
                transforms.append(matrix)
            elif k:
                frame, covered = warp_to_reference(frame, matrix, aligner.shape)
            else:
                covered = None
        except AlignmentError as err:
            raise InputError(f"{name(k)}: cannot align to {name(k - 1)}: {err}") from None
        timings["align"] += time.perf_counter() - start
        return frame, covered

    if order == "sequential":  # one pass, one frame read at a time
        for k, frame in enumerate(frames):
            frame = check_source(frame, name(k))
            covered = None
            if aligner is not None:
                frame, covered = align(frame, k)
            yield k, frame, covered
        return
    if not isinstance(frames, Sequence):
        frames = list(frames)
    if aligner is not None:  # the chained registration runs in input order
        for k in range(len(frames)):
            start = time.perf_counter()
            try:
                transforms.append(aligner.register(check_source(frames[k], name(k))))
            except AlignmentError as err:
                raise InputError(f"{name(k)}: cannot align to {name(k - 1)}: {err}") from None
            timings["align"] += time.perf_counter() - start
    for k in fusion_order(len(frames), order):
        frame = check_source(frames[k], name(k))
        covered = None
        if aligner is not None:
            frame, covered = align(frame, k, transforms[k])
        yield k, frame, covered


def fuse_frames(frames: Iterable[np.ndarray], pair_maps: PairMaps, *, align: bool = False,
                align_model: str = "similarity", names: Sequence[str] | None = None,
                progress: bool | None = False,
                order: str = DEFAULT_STACK_ORDER) -> FusionResult:
    """Fuses a pair or a stack with `pair_maps` making each step's maps (see
    `mfif_tf.fusion.fuse_arrays` for the arguments), the frames in the fusion order of
    `order` (`fusion_order`; "sequential" reads an iterable one frame at a time, "bisect"
    indexes a sequence and reads an iterator into a list).

    Each step fuses the running result R (as I_A) with frame k (as I_B); the index map takes
    the value k where F_final < 0.5, i.e. where frame k is taken.
    """
    start_total = time.perf_counter()
    check_stack_order(order)
    timings = dict.fromkeys(TIMING_KEYS, 0.0)
    names = list(names) if names is not None else []
    name = lambda k: names[k] if k < len(names) else f"source {k}"  # noqa: E731
    aligner = StackAligner(align_model) if align else None
    transforms: list[np.ndarray] | None = [] if align else None
    first = running = index = f_hat = f_final = None
    count = 0
    bar = tqdm(total=0, desc="fusing", unit="tile", leave=False, delay=2.0,
               disable=None if progress is None else not progress)
    try:
        for k, frame, covered in _aligned_in_order(frames, order, aligner, name, timings,
                                                   transforms):
            count += 1
            if first is None:
                first = running = frame
                index = np.zeros(frame.shape[:2], np.uint16)
                continue
            _check_next(frame, first, k, name)
            running, frame = same_layout(running, frame)
            f_hat, f_final, binary = pair_maps(running, frame, bar, timings)
            start = time.perf_counter()
            if covered is not None:  # where the aligned frame has no pixels, R stays
                f_final = np.where(covered, f_final, np.float32(1.0))
            running = fuse_with_map(running, frame, f_final, binary)  # eq. 14
            index[f_final < 0.5] = k
            timings["fusion"] += time.perf_counter() - start
    finally:
        bar.close()
    if count < 2:
        raise InputError(f"need at least two sources to fuse, got {count}"
                         + (f" ({name(0)})" if count else ""))
    if count <= 256:
        index = index.astype(np.uint8)
    timings["total"] = time.perf_counter() - start_total
    pair = count == 2
    return FusionResult(running, f_hat if pair else None, f_final if pair else None, index,
                        timings, transforms)
