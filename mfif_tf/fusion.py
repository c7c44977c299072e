"""Multi-focus fusion of pairs and stacks with MFIF-GAN's generator (sections 3.3, 4.1.2).

Symbols: I_A, I_B are the sources; F_hat = G(I_A, I_B) the focus map in [0, 1] (1 where I_A
is in focus); F_final the map after small region removal (SRR, section 3.3) and the optional
edge diffusion/contraction (section 4.2.4); the fused image is eq. 14,
I_fused = I_A * F_final + I_B * (1 - F_final), computed on the ORIGINAL pixels, so the output
keeps the sources' dtype (uint8, uint16 or float in [0, 1]) and colour (grey in, grey out).

F_hat comes from `mfif_tf.inference`: by default G's full-resolution pass with its outline
redrawn by the refinement head R (`mode="refined"`), or the paper's single full-resolution
pass (`mode="paper"`), or coarse-to-fine (G at a working resolution, R up to full resolution).
This module runs the networks in TensorFlow; `mfif_tf.litert_engine` runs the packaged
model's LiteRT graph through the same stack loop (`mfif_tf.stacking`).

Stacks of N > 2 frames are fused sequentially: R_1 = frame 0, R_k = fuse(R_{k-1}, frame k),
so each step is the pair fusion G was trained for, with the running result as I_A. With a
binary F_final every output pixel is a pixel of one frame; the index map records which one.
Cost: N - 1 generator passes and SRRs, memory of three frames whatever N (see
docs/fusion.md for why this order and not all pairs).

Precision: G and R run in float32 or bfloat16 (`precision`; `model_io.with_precision`,
`model_io.refiner_with_precision`); their maps come out in float32 either way, and SRR and
eq. 14 run in float32.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from mfif_tf import inference, model_io, tiling
from mfif_tf import refiner as refiner_lib
from mfif_tf.image_io import InputError
from mfif_tf.common import find_coarse_generator_dir, find_refiner_dir, model_directory
from mfif_tf.inference import PAPER_MIN_SIZE_FRACTION
from mfif_tf.networks import Generator
from mfif_tf.refiner import Refiner
from mfif_tf.srr import small_region_removal
# The stack loop and the source checks are shared with the LiteRT engine; re-exported here.
from mfif_tf.stacking import (  # noqa: F401
    DEFAULT_STACK_ORDER, TIMING_KEYS, FusionResult, check_edge_and_size, check_fusion_mode,
    check_source, check_stack_order, diffuse_map, fuse_frames)

_GENERATOR_CACHE: dict[tuple, Generator] = {}
_REFINER_CACHE: dict[tuple, Refiner] = {}


def effective_precision(generator: Generator | str | os.PathLike | None,
                        precision: str | None) -> str | None:
    """The precision a fusion runs G in: `precision` when given (checked; InputError
    otherwise); for None, a `Generator` runs as it is (None returned) and a model loaded
    from a path in `model_io.default_precision()`."""
    if precision is None:
        return None if isinstance(generator, Generator) else model_io.default_precision()
    try:
        return model_io.check_precision(precision)
    except ValueError as err:
        raise InputError(str(err)) from None


def resolve_generator(generator: Generator | str | os.PathLike | None,
                      precision: str | None = None) -> Generator:
    """A `Generator` as is; a model directory or training work dir loaded (and cached);
    None or "default" for the packaged model (`ModelNotFoundError` when none is installed).

    `precision` "float32" or "bfloat16" gives G computing in it (`model_io.with_precision`:
    a given `Generator` in another precision is copied on every call; loaded models are
    cached per precision); None leaves a `Generator` as it is and loads paths in float32.
    """
    if precision is not None:
        try:
            model_io.check_precision(precision)
        except ValueError as err:
            raise InputError(str(err)) from None
    if isinstance(generator, Generator):
        return generator if precision is None else model_io.with_precision(generator,
                                                                           precision)
    if generator is not None and not isinstance(generator, (str, os.PathLike)):
        raise TypeError(f"generator must be a Generator, a path or None, got "
                        f"{type(generator).__name__}")
    precision = precision or "float32"
    path = os.fspath(model_directory(generator)) if generator is not None else "default"
    if path in ("", "default"):
        if not model_io.packaged_model_available():
            return model_io.load_generator("default")  # raises ModelNotFoundError
        path = model_io.PACKAGED_MODEL_DIR
    base = None
    if os.path.isdir(path):  # changes when weights or checkpoints are (re)written
        stamps = [os.stat(p).st_mtime_ns for p in (path, os.path.join(path, "checkpoints"))
                  if os.path.isdir(p)]
        base = (os.path.realpath(path), *stamps)
    if base is not None and (*base, precision) in _GENERATOR_CACHE:
        return _GENERATOR_CACHE[(*base, precision)]
    # A model in another precision already loaded is copied (`with_precision`); else G is
    # built in `precision` and its weights read into it (one build: a start-up saving).
    loaded = None
    if base is not None:
        loaded = next((m for k, m in _GENERATOR_CACHE.items() if k[:-1] == base), None)
    if loaded is None:
        try:
            loaded = model_io.load_generator(path, precision)
        except model_io.ModelNotFoundError:
            raise
        except Exception as err:  # a damaged weights file, a foreign config
            detail = str(err).splitlines()[0] if str(err) else type(err).__name__
            raise InputError(f"{path}: cannot load the model ({detail})") from None
    twin = model_io.with_precision(loaded, precision)
    if base is not None:  # two models at a time (G and G below full size), in each precision
        bases = list(dict.fromkeys(k[:-1] for k in _GENERATOR_CACHE if k[:-1] != base))
        for key in [k for k in _GENERATOR_CACHE if k[:-1] in bases[:-1]]:
            del _GENERATOR_CACHE[key]
        _GENERATOR_CACHE[(*base, model_io.precision_of(loaded))] = loaded
        _GENERATOR_CACHE[(*base, precision)] = twin
    return twin


def resolve_coarse_generator(coarse_generator: Generator | str | os.PathLike | None,
                             generator: Generator | str | os.PathLike | None,
                             precision: str | None = None) -> Generator | None:
    """G below full size in the refined mode: `coarse_generator` when given (as
    `resolve_generator`); else the G in the g_side/ folder of the model directory `generator`
    (of the packaged model for None or "default"; `common.find_coarse_generator_dir`) when
    there is one; else None (`generator` serves every size)."""
    if coarse_generator is None:
        if isinstance(generator, Generator):
            return None
        coarse_generator = find_coarse_generator_dir(generator)
        if coarse_generator is None:
            return None
    return resolve_generator(coarse_generator, precision)


def resolve_refiner(refiner: Refiner | str | os.PathLike | None,
                    generator: Generator | str | os.PathLike | None = None,
                    mode: str | None = None, precision: str | None = None) -> Refiner:
    """R for the refined modes: a `Refiner` as is; a directory holding
    `refiner.weights.h5` loaded (and cached); None for the one beside a model directory given
    as `generator`, else the packaged R of `mode` (`common.find_refiner_dir`;
    `ModelNotFoundError` when there is none). `precision` "float32" or "bfloat16" gives R
    computing in it (`model_io.refiner_with_precision`, cached for loaded ones); None leaves
    R as it is and loads paths in float32."""
    if isinstance(refiner, Refiner):
        return (refiner if precision is None
                else model_io.refiner_with_precision(refiner, precision))
    if refiner is None:
        model = generator if isinstance(generator, (str, os.PathLike)) else None
        path = find_refiner_dir(None, model, mode)
        if path is None:
            raise model_io.ModelNotFoundError(
                "no refinement head is installed for the refined modes; pass a refiner "
                "directory or use mode 'paper'")
    else:
        path = os.fspath(refiner)
        if not refiner_lib.has_refiner(path):
            raise InputError(f"{path}: no {refiner_lib.REFINER_WEIGHTS_FILE} there")
    key = (os.path.realpath(path),
           os.stat(os.path.join(path, refiner_lib.REFINER_WEIGHTS_FILE)).st_mtime_ns)
    if key not in _REFINER_CACHE:
        try:
            loaded = refiner_lib.load_refiner(path)
        except Exception as err:  # a damaged weights file
            detail = str(err).splitlines()[0] if str(err) else type(err).__name__
            raise InputError(f"{path}: cannot load the refinement head ({detail})") from None
        if len(_REFINER_CACHE) >= 8:  # refined mode may hold two, R and the coarse one,
            _REFINER_CACHE.clear()  # in two precisions
        _REFINER_CACHE[key] = loaded
    if precision is None or precision == "float32":
        return _REFINER_CACHE[key]
    if (*key, precision) not in _REFINER_CACHE:
        _REFINER_CACHE[(*key, precision)] = model_io.refiner_with_precision(
            _REFINER_CACHE[key], precision)
    return _REFINER_CACHE[(*key, precision)]


def predict_f_hat(generator: Generator, refiner: Refiner | None, image_a: np.ndarray,
                  image_b: np.ndarray, *, mode: str = inference.DEFAULT_MODE,
                  working_side: int = inference.DEFAULT_WORKING_SIDE,
                  tile_size: int | None = None, flips: bool = False,
                  scales: Sequence[float] = (1.0,), progress=None,
                  progress_total=None, coarse_refiner: Refiner | None = None,
                  g_side: int = inference.DEFAULT_G_SIDE,
                  measure_ratio: float = inference.MEASURE_RATIO,
                  coarse_generator: Generator | None = None) -> np.ndarray:
    """F_hat (H, W) float32 for two checked, same-layout sources, in any mode of
    `mfif_tf.inference`; `flips` averages G's maps over mirrored sources. In refined mode
    with `coarse_refiner`, G runs on the sources box-averaged by `g_factor(H, W, g_side)`
    and, when that is above 1, `coarse_generator` (when given) replaces G and
    `coarse_refiner` redraws the outline; the focus measure then
    checks the outline (`inference.measure_check` with `measure_ratio`, 0 skips it; over
    windows, pixels and the outline's unsure pixels below full size, the last two at full
    size; `inference.focus_map`)."""

    def predict(a: np.ndarray, b: np.ndarray, model: Generator = generator,
                **kwargs) -> np.ndarray:
        return tiling.predict_focus_map(model, a, b, tile_size, progress=progress,
                                        progress_total=progress_total, flips=flips, **kwargs)

    if mode == "paper":
        return predict(image_a, image_b, scales=scales)
    if mode == "refined":
        if progress_total is not None:
            progress_total(-(-image_a.shape[0] // inference.STRIP_ROWS))
        k = 1
        if coarse_refiner is not None:
            k = inference.g_factor(image_a.shape[0], image_a.shape[1], g_side)
        model = coarse_generator if k > 1 and coarse_generator is not None else generator
        coarse = predict(image_a, image_b, model, scales=tuple(s / k for s in scales))
        f_hat = inference.refine_arrays(refiner if k == 1 else coarse_refiner, image_a,
                                        image_b, coarse, progress=progress)
        if measure_ratio:  # all steps below full size, steps 2-3 at full size
            f_hat = inference.measure_arrays(image_a, image_b, f_hat,
                                             coarse if k > 1 else None, k, measure_ratio)
        return f_hat
    return inference.coarse_to_fine_arrays(predict, refiner, image_a, image_b, working_side,
                                           progress=progress, progress_total=progress_total)


def final_map(f_hat: np.ndarray, srr: bool, min_size: int | None, min_size_fraction: float,
              edge_pixels: int, timings: dict[str, float]) -> tuple[np.ndarray, bool]:
    """F_final and whether it is binary."""
    start = time.perf_counter()
    if srr:
        f_final = small_region_removal(f_hat, min_size=min_size,
                                       min_size_fraction=min_size_fraction).numpy()
    else:
        f_final = f_hat
    timings["srr"] += time.perf_counter() - start
    if edge_pixels:
        f_final = diffuse_map(f_final, edge_pixels, timings)
    return f_final, bool(srr or edge_pixels)


def fuse_stack(frames: Iterable[np.ndarray], generator: Generator | str | None = None, *,
               srr: bool = True, min_size: int | None = None,
               min_size_fraction: float = PAPER_MIN_SIZE_FRACTION, edge_pixels: int = 0,
               tile_size: int | None = None, align: bool = False,
               align_model: str = "similarity", names: Sequence[str] | None = None,
               progress: bool | None = False, flips: bool = False,
               scales: Sequence[float] | str | None = None,
               mode: str = inference.DEFAULT_MODE,
               working_side: int = inference.DEFAULT_WORKING_SIDE,
               refiner: Refiner | str | None = None,
               precision: str | None = None,
               g_side: int = inference.DEFAULT_G_SIDE,
               coarse_refiner: Refiner | str | None = None,
               measure_ratio: float = inference.MEASURE_RATIO,
               stack_order: str = DEFAULT_STACK_ORDER,
               coarse_generator: Generator | str | None = None) -> FusionResult:
    """Fuses a pair or a stack (see `fuse_arrays` for the arguments). `frames`: a sequence
    (e.g. `stacking.LazyFrames`, files loaded when asked for), or any iterable, which the
    default `stack_order` "bisect" reads into a list and "sequential" reads one frame at a
    time.

    Each step fuses the running result R (as I_A) with frame k (as I_B), in the fusion order
    of `stack_order` (`stacking.fusion_order`); the index map takes the value k where
    F_final < 0.5, i.e. where frame k is taken.
    """
    check_stack_order(stack_order)
    check_edge_and_size(edge_pixels, min_size)
    scales = check_fusion_mode(mode, working_side, scales)
    try:
        g_side = inference.check_g_side(g_side)
        measure_ratio = inference.check_measure_ratio(measure_ratio)
    except ValueError as err:
        raise InputError(str(err)) from None
    precision = effective_precision(generator, precision)
    loaded: dict[str, Any] = {}

    def pair_maps(running, frame, bar, timings):
        if not loaded:  # after the first two frames passed their checks
            loaded["g"] = resolve_generator(generator, precision)
            # R computes as G does.
            r_precision = model_io.precision_of(loaded["g"])
            loaded["r"] = (resolve_refiner(refiner, generator, mode, r_precision)
                           if mode != "paper" else None)
            loaded["rc"] = loaded["gc"] = None
            if mode == "refined" and g_side:
                # G below full size: `coarse_generator`, else the model directory's g_side/ G
                # (computing as G does), else G itself.
                loaded["gc"] = resolve_coarse_generator(coarse_generator, generator,
                                                        r_precision)
                # G below full size: `coarse_refiner`; else R when given (it then serves
                # both), else the packaged one trained for it (`COARSE_REFINER_KEY`).
                loaded["rc"] = resolve_refiner(
                    refiner if coarse_refiner is None else coarse_refiner, generator,
                    inference.COARSE_REFINER_KEY, r_precision)

        def add_total(n):
            bar.total += n
            bar.refresh()

        start = time.perf_counter()
        f_hat = predict_f_hat(loaded["g"], loaded["r"], running, frame, mode=mode,
                              working_side=working_side, tile_size=tile_size, flips=flips,
                              scales=scales, progress=bar.update, progress_total=add_total,
                              coarse_refiner=loaded["rc"], g_side=g_side,
                              measure_ratio=measure_ratio, coarse_generator=loaded["gc"])
        timings["network"] += time.perf_counter() - start
        f_final, binary = final_map(f_hat, srr, min_size, min_size_fraction, edge_pixels,
                                    timings)
        return f_hat, f_final, binary

    result = fuse_frames(frames, pair_maps, align=align, align_model=align_model, names=names,
                         progress=progress, order=stack_order)
    result.precision = model_io.precision_of(loaded["g"])
    return result


def fuse_arrays(sources: Sequence[np.ndarray], generator: Generator | str | None = None,
                srr: bool = True, min_size: int | None = None, edge_pixels: int = 0,
                tile_size: int | None = None, *,
                min_size_fraction: float = PAPER_MIN_SIZE_FRACTION, align: bool = False,
                align_model: str = "similarity", names: Sequence[str] | None = None,
                progress: bool | None = False, flips: bool = False,
                scales: Sequence[float] | str | None = None,
                mode: str = inference.DEFAULT_MODE,
                working_side: int = inference.DEFAULT_WORKING_SIDE,
                refiner: Refiner | str | None = None,
                precision: str | None = None,
                g_side: int = inference.DEFAULT_G_SIDE,
                coarse_refiner: Refiner | str | None = None,
                measure_ratio: float = inference.MEASURE_RATIO,
                stack_order: str = DEFAULT_STACK_ORDER,
                coarse_generator: Generator | str | None = None) -> FusionResult:
    """Fuses two sources (I_A, I_B) or a focus stack into one all-in-focus image.

    Args:
      sources: two or more images of one size: uint8, uint16 or float in [0, 1]; (H, W) grey
        or (H, W, 3) RGB (grey and colour can be mixed; the result is then colour).
      generator: G, a model directory / training work dir, or None for the packaged model.
      srr: apply small region removal (section 3.3); without it F_final = F_hat and eq. 14
        blends softly.
      min_size: SRR's N in pixels; None for N = `min_size_fraction` * W * H (0.001, paper).
      edge_pixels: grow (k > 0) or shrink (k < 0) the foreground of F_final by k pixels
        (section 4.2.4; a disk); binarises F_final.
      tile_size: None (whole image when it fits, else tiles), 0 (whole image) or the tile side
        in pixels; tiled and whole-image F_hat agree to float rounding (`mfif_tf.tiling`).
      min_size_fraction: the 0.001 of N = 0.001 W H.
      align: register frames to the first one (`mfif_tf.align`); frames may then differ in
        size and the output has the first frame's size.
      align_model: "similarity" (default: shift, rotation, scale), "affine", "homography"
        or "translation".
      names: names of the sources for error messages (file names).
      progress: show a progress bar over tiles (None: only on a terminal).
      flips: test-time augmentation, G's map averaged over the sources as given and mirrored
        left-right and top-bottom (3x the network time; `tiling.predict_focus_map`).
      scales: modes "refined" and "paper": G's map is the mean of its maps at these scales,
        1/k for integer k (default (1,), the paper's single pass; `mfif_tf.scales`); in
        refined mode relative to G's size (`g_side`).
      mode: "refined" (default: G at full resolution, then the refinement head R redraws
        the map's outline on the pixels), "paper" (G at full resolution, one pass, as in
        the paper) or "coarse_to_fine" (G at the working resolution, the outline redrawn
        at full resolution by R, one octave at a time); `mfif_tf.inference`.
      working_side: coarse-to-fine: the shorter side of G's working resolution in pixels
        (sources are area-downscaled to it, never enlarged).
      refiner: modes refined and coarse_to_fine: R, a directory with its weights, or None
        (the one beside the model directory, else the packaged one).
      g_side: refined mode: the largest shorter side G runs at (default
        `common.DEFAULT_G_SIDE`, 640). Sources with a shorter side above 3/4 of it
        (`common.FULL_SIZE_FRACTION`) are box-averaged by 2, or by the smallest power of two
        that brings them to it (at most `common.MAX_G_FACTOR`, 4), and the packaged R
        trained for that step (or `refiner`
        when given) redraws the outline on the full-resolution pixels. 0: G at full size
        whatever the size (the refined mode before this option).
      measure_ratio: refined mode, G below full size: inside a zone around G's outline
        (`inference.MEASURE_REACH` of G's pixels), the source whose sum-modified-Laplacian
        focus measure is more than this many times the other's is taken, whatever the map
        says (`inference.measure_check`; default `inference.MEASURE_RATIO`, 3). At any
        size the pixel step and the outline step of that check follow. 0 turns the check
        off.
      coarse_refiner: refined mode, G below full size: the R that redraws the outline (a
        `Refiner` or a directory); None for `refiner` when that is given, else the packaged
        R for G below full size (`common.COARSE_REFINER_KEY`; or the one beside the model
        directory).
      coarse_generator: refined mode, G below full size: the G that runs there (a
        `Generator` or a model directory); None for the one in the g_side/ folder of the
        model directory (`common.find_coarse_generator_dir`; the packaged model's for None),
        else G itself.
      precision: what G and R compute in: "float32" or "bfloat16" (Keras' mixed_bfloat16
        policy: float32 weights, bfloat16 arithmetic; their first convolutions read the
        sources in float32); the maps, SRR and eq. 14 stay float32. None: a `Generator` as
        it is, models loaded from a path in `model_io.default_precision()` (bfloat16 on CPUs
        with bfloat16 units, else float32; docs/fusion.md, "Precision"). R always computes
        as G does.
      stack_order: stacks of three or more frames: the order the frames are fused in,
        "bisect" (default: the first and the last frame, then the frame midway between two
        fused ones; every step weighs frames far apart in focus) or "sequential" (input
        order); `stacking.fusion_order`. Pairs are the same either way.

    Returns:
      `FusionResult`.
    """
    if isinstance(sources, np.ndarray) or not isinstance(sources, Sequence):
        raise InputError("sources must be a list of images")
    if len(sources) < 2:
        raise InputError(f"need at least two sources to fuse, got {len(sources)}")
    return fuse_stack(sources, generator, srr=srr, min_size=min_size,
                      min_size_fraction=min_size_fraction, edge_pixels=edge_pixels,
                      tile_size=tile_size, align=align, align_model=align_model, names=names,
                      progress=progress, flips=flips, scales=scales, mode=mode,
                      working_side=working_side, refiner=refiner, precision=precision,
                      g_side=g_side, coarse_refiner=coarse_refiner,
                      measure_ratio=measure_ratio, stack_order=stack_order,
                      coarse_generator=coarse_generator)
