"""Fusion with the packaged model's LiteRT graph, without TensorFlow.

`mfif-fuse` spends most of a small job starting TensorFlow (importing it takes seconds, the
fusion of a 520 x 520 pair a fraction of one). The package therefore ships the TFLite graph
of its own G and R (`PACKAGED_GRAPH`, written by `python -m export.litert_package` with
`export.tflite`, the exporter of the on-device models; the small G's graph beside it in
`pretrained/small/`, `graph_path`): the refined mode's F_hat (G on box means above a
shorter side of `GRAPH_G_SIDE`, as in `fuse`), SRR with
N = 0.001 W H and eq. 14, float32, any image size. This module runs that graph with the
LiteRT interpreter (`ai_edge_litert`) and the stack loop of `mfif_tf.stacking`, importing
only NumPy, OpenCV (alignment) and LiteRT.

What the graph computes is fixed when it is exported, so this engine covers the default
job: a packaged model with a graph (the default, `--model=small`) in refined mode, float32,
SRR with the paper's N or no SRR (`focus_map_raw`), any `edge_pixels`, alignment, pairs,
stacks and batches. Eq. 14 runs on the original pixels from the graph's F_final, as the
TensorFlow path does, so 16-bit and grey sources keep their depth and layout. Everything
else (a `--model` work dir, another mode, scales, flips, bfloat16, tiles, another N) needs
TensorFlow (`unsupported`), and so do the images it does not run (`size_blocker`): those
above `MAX_PIXELS` (the graph runs the whole image at once, and the process's peak memory
grows by about 2 kB per pixel, 0.69 GB at 520 x 520, 2.1 GB at 1000 x 1000, where the
TensorFlow path switches to tiles in bounded memory), and those where `--g_side` gives G
another box factor than the graph's side (`GRAPH_G_SIDE`, the default) does.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from mfif_tf.cli import quiet_native_stderr
from mfif_tf.common import (DEFAULT_G_SIDE, DEFAULT_MODE, MEASURE_RATIO, PACKAGED_MODEL_DIR,
                            PACKAGED_MODELS, PAPER_MIN_SIZE_FRACTION, ModelNotFoundError,
                            g_factor, packaged_name, to_unit_rgb, usable_cpus)
from mfif_tf.image_io import InputError
from mfif_tf.stacking import (DEFAULT_STACK_ORDER, FusionResult, check_edge_and_size,
                              check_stack_order, diffuse_map, fuse_frames)

GRAPH_FILE = "fusion_refined_float32.tflite"
PACKAGED_GRAPH = os.path.join(PACKAGED_MODEL_DIR, GRAPH_FILE)
# Largest image (pixels) the graph runs on; above it the TensorFlow engine tiles G.
MAX_PIXELS = 1_000_000
# The g_side the packaged graphs are built with (`export.litert_package`): G at full size up
# to this shorter side, on box means above, as `fuse` does by default.
GRAPH_G_SIDE = DEFAULT_G_SIDE
ENGINES = ("auto", "litert", "tensorflow")

_RUNNERS: dict[tuple, "GraphRunner"] = {}


def graph_path(model: Any = None) -> str | None:
    """The graph of a packaged model: `PACKAGED_GRAPH` for the default one (None, "" or
    "default"), its folder's `GRAPH_FILE` for a packaged G of `common.PACKAGED_MODELS` that
    has one (`--model=small`); None for any other model (a path, a `Generator`)."""
    if model in (None, "", "default"):
        return PACKAGED_GRAPH
    name = packaged_name(model)
    graph = name and os.path.join(PACKAGED_MODELS[name], GRAPH_FILE)
    return graph if graph and os.path.isfile(graph) else None


def missing(graph: str = PACKAGED_GRAPH) -> str | None:
    """Why the engine cannot run `graph` here (not installed, no LiteRT), or None."""
    if not os.path.isfile(graph):
        name = os.path.relpath(graph, PACKAGED_MODEL_DIR)
        return f"the packaged LiteRT graph is not installed ({name})"
    try:
        import ai_edge_litert.interpreter  # noqa: F401 (only whether it imports)
    except ImportError:
        return "the LiteRT interpreter (ai-edge-litert) is not installed"
    return None


def unsupported(*, model: Any = None, mode: str = DEFAULT_MODE, refiner: Any = None,
                scales: Any = None, flips: bool = False, precision: str | None = None,
                tile_size: int | None = None, min_size: int | None = None,
                min_size_fraction: float = PAPER_MIN_SIZE_FRACTION,
                g_side: int = DEFAULT_G_SIDE, measure_ratio: float = MEASURE_RATIO) -> list[str]:
    """The settings of a job that the packaged graph does not compute (empty: it can run),
    each named as its `mfif-fuse` flag."""
    # `g_side` is the images' business, not the job's: whether it gives an image the box
    # factor the graph's side does (`size_blocker`).
    reasons = []
    if graph_path(model) is None:
        reasons.append("--model (the graphs hold the packaged models only)")
    if mode != DEFAULT_MODE:
        reasons.append(f"--mode={mode} (the graph is the {DEFAULT_MODE} mode)")
    if refiner is not None:
        reasons.append("--refiner")
    if scales not in (None, (1.0,), "1", "1.0", [1.0]):
        reasons.append("--scales")
    if flips:
        reasons.append("--flips")
    if precision not in (None, "float32"):
        reasons.append(f"--precision={precision} (the graph computes in float32)")
    if tile_size is not None:
        reasons.append("--tile_size (the graph runs the whole image)")
    # At full size only the check's pixel and outline steps run, whatever its ratio: only
    # 0 differs; below full size another ratio is the images' business (`size_blocker`).
    if not measure_ratio:
        reasons.append("--measure_ratio=0 (the graph checks the outline)")
    if min_size is not None or min_size_fraction != PAPER_MIN_SIZE_FRACTION:
        reasons.append("--min_size/--min_size_fraction (the graph's SRR has N = 0.001 W H)")
    return reasons


class GraphRunner:
    """The packaged fusion graph in a LiteRT interpreter.

    Args:
      model: the .tflite file, or its bytes (inputs `image_a`, `image_b`: float32
        (1, H, W, 3) in [0, 1]; outputs `focus_map` (F_final) and `focus_map_raw` (F_hat),
        (1, H, W, 1)).
      num_threads: interpreter threads; 0 or None for every CPU of the process.
    """

    def __init__(self, model: str | bytes = PACKAGED_GRAPH, num_threads: int | None = None):
        from ai_edge_litert.interpreter import Interpreter

        name = "the graph" if isinstance(model, bytes) else model
        if not isinstance(model, bytes) and not os.path.isfile(model):
            raise ModelNotFoundError(f"{model}: no such LiteRT graph")
        self.num_threads = int(num_threads or usable_cpus())
        source = ({"model_content": model} if isinstance(model, bytes)
                  else {"model_path": model})
        with quiet_native_stderr():
            interpreter = Interpreter(num_threads=self.num_threads, **source)
        self._run = interpreter.get_signature_runner()
        inputs = self._run.get_input_details()
        if set(inputs) != {"image_a", "image_b"}:
            raise ModelNotFoundError(f"{name}: not an mfif-tf fusion graph (inputs "
                                     f"{sorted(inputs)})")

    def __call__(self, image_a: np.ndarray, image_b: np.ndarray) -> tuple[np.ndarray,
                                                                            np.ndarray]:
        """(F_hat, F_final), (H, W) float32, for two sources of one size (any supported
        dtype, grey or RGB)."""
        a = to_unit_rgb(image_a)[None]
        b = to_unit_rgb(image_b)[None]
        with quiet_native_stderr():  # the runtime notes applying its CPU delegate here
            out = self._run(image_a=a, image_b=b)
        return out["focus_map_raw"][0, :, :, 0], out["focus_map"][0, :, :, 0]


def packaged_runner(num_threads: int | None = None, graph: str = PACKAGED_GRAPH) -> GraphRunner:
    """A packaged graph's runner (the default model's unless `graph`), created once per
    thread count."""
    key = (graph, int(num_threads or usable_cpus()))
    if key not in _RUNNERS:
        reason = missing(graph)
        if reason is not None:
            raise ModelNotFoundError(reason)
        _RUNNERS.clear()
        _RUNNERS[key] = GraphRunner(graph, key[1])
    return _RUNNERS[key]


def size_blocker(height: int, width: int, g_side: int = DEFAULT_G_SIDE,
                 measure_ratio: float = MEASURE_RATIO) -> str | None:
    """Why the graph cannot fuse an image of this size as `fuse` does with `g_side` and
    `measure_ratio`, or None: it runs the whole image at once (at most `MAX_PIXELS`), and G
    on it with the box factor of `GRAPH_G_SIDE`, which must be the one `fuse` takes with
    `g_side`; below full size the focus-measure check's windows use the graph's ratio
    (`MEASURE_RATIO`)."""
    if height * width > MAX_PIXELS:
        return (f"{width}x{height} is above the LiteRT engine's {MAX_PIXELS / 1e6:g} "
                "megapixels (it runs the whole image at once)")
    want, graph = g_factor(height, width, g_side), g_factor(height, width, GRAPH_G_SIDE)
    if want != graph:
        def where(k):
            return "at full size" if k == 1 else f"on {k} x {k} box means"

        return (f"{width}x{height}: with --g_side={g_side} G runs {where(want)}; the LiteRT "
                f"graph runs it {where(graph)} (its side is {GRAPH_G_SIDE})")
    if graph > 1 and measure_ratio and measure_ratio != MEASURE_RATIO:
        return (f"{width}x{height}: G runs on {graph} x {graph} box means, where the LiteRT "
                f"graph's focus-measure check has --measure_ratio={MEASURE_RATIO:g}, not "
                f"{measure_ratio:g}")
    return None


def check_size(height: int, width: int, name: str, g_side: int = DEFAULT_G_SIDE,
               measure_ratio: float = MEASURE_RATIO) -> None:
    """InputError when the graph cannot fuse an image of this size (`size_blocker`)."""
    reason = size_blocker(height, width, g_side, measure_ratio)
    if reason:
        raise InputError(f"{name}: {reason}; use --engine=tensorflow (or auto)")


def fuse_stack(frames: Iterable[np.ndarray], runner: GraphRunner | None = None, *,
               srr: bool = True, edge_pixels: int = 0, align: bool = False,
               align_model: str = "similarity", names: Sequence[str] | None = None,
               progress: bool | None = False, num_threads: int | None = None,
               stack_order: str = DEFAULT_STACK_ORDER,
               graph: str = PACKAGED_GRAPH, g_side: int = DEFAULT_G_SIDE,
               measure_ratio: float = MEASURE_RATIO) -> FusionResult:
    """Fuses a pair or a stack with a packaged graph, as `mfif_tf.fusion.fuse_stack` does
    with the same settings in refined mode (see there for the arguments).

    `srr` False takes the graph's F_hat as F_final (eq. 14 then blends softly);
    `edge_pixels` grows or shrinks F_final (section 4.2.4) before eq. 14. `runner` defaults
    to the packaged graph `graph` (the default model's; `graph_path`) with `num_threads`
    threads.
    """
    check_stack_order(stack_order)
    check_edge_and_size(edge_pixels, None)
    names = list(names) if names is not None else []

    def pair_maps(running, frame, bar, timings):
        nonlocal runner
        check_size(*frame.shape[:2], names[0] if names else "source 0", g_side,
                   measure_ratio)
        if runner is None:
            runner = packaged_runner(num_threads, graph)
        bar.total += 1
        bar.refresh()
        start = time.perf_counter()
        f_hat, f_final = runner(running, frame)  # F_hat, SRR (N = 0.001 W H) in the graph
        timings["network"] += time.perf_counter() - start
        bar.update(1)
        if not srr:
            f_final = f_hat
        if edge_pixels:
            f_final = diffuse_map(f_final, edge_pixels, timings)
        return f_hat, f_final, bool(srr or edge_pixels)

    result = fuse_frames(frames, pair_maps, align=align, align_model=align_model, names=names,
                         progress=progress, order=stack_order)
    result.engine = "litert"
    return result
