"""Evaluation library: Table 1 (metrics), Table 2 (timing) and Fig. 6 (edge diffusion study).

A dataset folder holds ``A/`` and ``B/`` (the sources I_A, I_B) and optionally ``GT/`` (an
all-in-focus ground truth) and ``MAP/`` (the true focus map, white where I_A is in focus),
paired by file stem. Further source folders of a focus stack (``C/``, ``D/``, ... in focus
order, as `data_pipeline.ground_truth --frames` writes them) are used when ``GT/`` is there:
each stem is then fused as the whole stack and scored against GT (PSNR, SSIM) and, with MAP/
(white where the first frame is in focus), by where the first frame is taken; the twelve
no-reference metrics are defined for two sources and are left out for stacks. Without GT/
the further folders are not used and each stem is scored as the pair A/ + B/
(`unused_source_folders`; the entry point says so).
Fused images come from a *fused source*: a callable ``(pair, image_a, image_b) ->
FusedOutput``. Two are provided: ``fused_from_dir`` (a folder of
fused images, and optionally one of focus maps, matched by stem) and ``fused_from_fn`` (any
``fuse_fn(list_of_arrays)`` such as the model's or the classical baseline's fusion function,
timed per pair; a `FusionResult` brings its F_final along).

With GT/ the fused image is also scored by PSNR and SSIM; with MAP/ a method's F_final (when
it has one) by the boundary F-scores BF1, BF3 and the pixel accuracy MAP_ACC.

Everything here is importable without flags; ``mfif_tf/evaluate.py`` is the entry point.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import pathlib
import sys
import time
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np
from PIL import Image

from mfif_tf import edge_morphology
from mfif_tf import metrics as metrics_lib
from mfif_tf.metrics import report

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
TIMING_KEYS = ("network", "srr", "fusion", "total")


class EvaluationError(ValueError):
    """Bad evaluation input (missing folders or files, mismatched sizes, existing outputs)."""


@dataclasses.dataclass(frozen=True)
class Pair:
    """One source pair of the dataset: I_A, I_B, the optional ground truth I and true focus
    map (white where I_A is in focus); for a focus stack also its further frames (C/, D/,
    ... in order), so that the sources are I_A, I_B and `paths_more`."""

    stem: str
    path_a: pathlib.Path
    path_b: pathlib.Path
    path_gt: pathlib.Path | None = None
    path_map: pathlib.Path | None = None
    paths_more: tuple[pathlib.Path, ...] = ()


@dataclasses.dataclass(frozen=True)
class FusedOutput:
    """A fused image, its timings in seconds when the producer measured them, and the focus
    map F_final it fused with (H x W, values > 0.5 or > 127 mean "from I_A") when it has one."""

    image: np.ndarray
    timing: Mapping[str, float] | None = None
    focus_map: np.ndarray | None = None


# (pair, image_a, image_b, *further frames of a stack) -> FusedOutput
FusedSource = Callable[..., FusedOutput]
FuseFn = Callable[[list], Any]


@dataclasses.dataclass
class MethodResult:
    """Per-image metrics, their means and the mean timings of one fusion method."""

    name: str
    per_image: dict[str, dict[str, float]]
    mean: dict[str, float]
    timing: dict[str, float] | None = None
    source: str = ""


@dataclasses.dataclass(frozen=True)
class EvalConfig:
    """What to evaluate and where to write it.

    Attributes:
      dataset_dir: folder with A/, B/ and optionally GT/ and MAP/.
      convention: "paper" (comparable with Table 1) or "luminance" (see metrics).
      metrics: metric names to compute (default all twelve, plus PSNR/SSIM with GT/ and
        BF1/BF3/MAP_ACC with MAP/ for methods that give a focus map).
      output_dir: where results are written ('' = nowhere).
      overwrite: allow replacing existing result files in output_dir.
      progress: show a progress bar on stderr.
    """

    dataset_dir: str
    convention: str = "paper"
    metrics: tuple[str, ...] = metrics_lib.ALL_METRIC_NAMES
    output_dir: str = ""
    overwrite: bool = False
    progress: bool = True


# ----------------------------------------------------------------------------- inputs


def _index_images(folder: pathlib.Path) -> dict[str, pathlib.Path]:
    index: dict[str, pathlib.Path] = {}
    for path in sorted(folder.iterdir()):
        if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES:
            if path.stem in index:
                raise EvaluationError(f"{folder}: two images share the stem {path.stem!r}")
            index[path.stem] = path
    return index


def further_source_folders(dataset_dir: str | pathlib.Path) -> list[str]:
    """Source folders after A/ and B/ (C/, D/, ... in order, while they exist and hold
    images), as a focus stack folder has."""
    root = pathlib.Path(dataset_dir)
    found = []
    for letter in "CDEFGHIJKLMNOPQRSTUVWXYZ":
        folder = root / letter
        if not folder.is_dir() or not _index_images(folder):
            break
        found.append(f"{letter}/")
    return found


def has_ground_truth(dataset_dir: str | pathlib.Path) -> bool:
    """Whether the dataset has a GT/ folder with images."""
    folder = pathlib.Path(dataset_dir) / "GT"
    return folder.is_dir() and bool(_index_images(folder))


def unused_source_folders(dataset_dir: str | pathlib.Path) -> list[str]:
    """The further source folders (C/, D/, ...) of a stack folder without GT/, such as
    Lytro's triple series: `find_pairs` then scores each stem as the pair A/ + B/, since the
    twelve metrics are defined for two sources, so these folders are not used. With GT/ the
    stacks are fused whole and scored against it, and nothing is unused."""
    if has_ground_truth(dataset_dir):
        return []
    return further_source_folders(dataset_dir)


def _stack_frames(root: pathlib.Path, stems: Sequence[str]) -> dict[str, list[pathlib.Path]]:
    """The further frames of each stem from C/, D/, ...: a stem's stack ends at the first of
    these folders that lacks it (a shorter stack); it may not reappear in a later one."""
    frames: dict[str, list[pathlib.Path]] = {s: [] for s in stems}
    ended: dict[str, str] = {}
    for name in further_source_folders(root):
        index = _index_images(root / name)
        surplus = sorted(set(index) - set(stems))[:10]
        if surplus:
            raise EvaluationError(f"{root}: {name} has stems that A/ lacks: {surplus}")
        for stem in stems:
            if stem not in index:
                ended.setdefault(stem, name)
            elif stem in ended:
                raise EvaluationError(f"{root}: {stem!r} is in {name} but not in {ended[stem]} "
                                      f"(a stack's frames are consecutive folders)")
            else:
                frames[stem].append(index[stem])
    return frames


def find_pairs(dataset_dir: str | pathlib.Path) -> list[Pair]:
    """Pairs of A/ and B/ by stem, with GT/ and MAP/ attached when present (then they must
    hold every stem of A/); with GT/, a stem's further frames in C/, D/, ... make it a
    stack (`Pair.paths_more`). Raises if none match."""
    root = pathlib.Path(dataset_dir)
    for sub in ("A", "B"):
        if not (root / sub).is_dir():
            raise EvaluationError(f"{root}: missing the folder {sub}/ of source images")
    a, b = _index_images(root / "A"), _index_images(root / "B")
    unmatched = sorted(set(a) ^ set(b))
    if unmatched:
        raise EvaluationError(f"{root}: A/ and B/ differ in the stems {unmatched[:10]}")
    if not a:
        raise EvaluationError(f"{root}: no images in A/ ({', '.join(IMAGE_SUFFIXES)})")
    extra: dict[str, dict[str, pathlib.Path]] = {}
    for sub in ("GT", "MAP"):
        index = _index_images(root / sub) if (root / sub).is_dir() else {}
        if index and sorted(index) != sorted(a):
            missing = sorted(set(a) - set(index))[:10]
            if missing:
                raise EvaluationError(f"{root}: {sub}/ lacks the stems {missing}")
            surplus = sorted(set(index) - set(a))[:10]
            raise EvaluationError(f"{root}: {sub}/ has stems that A/ lacks: {surplus}")
        extra[sub] = index
    more = _stack_frames(root, sorted(a)) if extra["GT"] else {}
    return [Pair(s, a[s], b[s], extra["GT"].get(s), extra["MAP"].get(s), tuple(more.get(s, ())))
            for s in sorted(a)]


def load_image(path: pathlib.Path, grey: bool = False) -> np.ndarray:
    """uint8 H x W x 3 (or H x W when ``grey``); a clear error for unreadable files."""
    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("L" if grey else "RGB"))
    except (OSError, ValueError) as err:
        raise EvaluationError(f"{path}: cannot read image ({err})") from None


def load_focus_map(path: pathlib.Path) -> np.ndarray:
    """A binary focus map file as bool (H, W): values above half the range are True (0/1 and
    0/255 PNGs, 16-bit maps at 32767.5; colour maps through their luminance)."""
    try:
        with Image.open(path) as im:
            if im.mode not in ("1", "L", "I", "I;16", "F"):
                im = im.convert("L")
            values = np.asarray(im)
    except (OSError, ValueError) as err:
        raise EvaluationError(f"{path}: cannot read focus map ({err})") from None
    if values.dtype == bool:
        return values
    peak = float(values.max(initial=0))
    return values > (0.5 if peak <= 1 else 127.5 if peak <= 255 else 32767.5)


def _is_grey(path: pathlib.Path) -> bool:
    with Image.open(path) as im:
        return im.mode in ("L", "I", "I;16", "1", "F")


def to_uint8(image: np.ndarray, what: str) -> np.ndarray:
    """uint8 as saving would store it: floats in [0, 1] are scaled by 255, then rounded."""
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.dtype == np.uint8:
        return image
    if not (np.issubdtype(image.dtype, np.floating) or np.issubdtype(image.dtype, np.integer)):
        raise EvaluationError(f"{what}: unsupported dtype {image.dtype}")
    x = image.astype(np.float64)
    if not np.all(np.isfinite(x)):
        raise EvaluationError(f"{what}: fused image contains NaN or infinite values")
    if np.issubdtype(image.dtype, np.floating) and x.max(initial=0.0) <= 1.0:
        x = x * 255.0
    return np.clip(np.floor(x + 0.5), 0, 255).astype(np.uint8)


def _index_by_stem(folder: str | pathlib.Path, pairs: Sequence[Pair], what: str,
                   item: str) -> dict[str, pathlib.Path]:
    """The images of `folder` by stem; every pair's stem must be there."""
    folder = pathlib.Path(folder)
    if not folder.is_dir():
        raise EvaluationError(f"{folder}: {what} does not exist")
    index = _index_images(folder)
    missing = [p.stem for p in pairs if p.stem not in index]
    if missing:
        raise EvaluationError(f"{folder}: no {item} for the stems {missing[:10]}")
    return index


def fused_from_dir(fused_dir: str | pathlib.Path, pairs: Sequence[Pair],
                   map_dir: str | pathlib.Path | None = None) -> FusedSource:
    """Fused images of a folder, matched to the pairs by stem (all must be present); with
    ``map_dir`` also the method's focus maps F_final (by stem, binarised at half range)."""
    index = _index_by_stem(fused_dir, pairs, "fused folder", "fused image")
    maps = _index_by_stem(map_dir, pairs, "focus map folder", "focus map") if map_dir else {}

    def source(pair: Pair, image_a: np.ndarray, image_b: np.ndarray, *more) -> FusedOutput:
        del more
        fmap = load_focus_map(maps[pair.stem]) if maps else None
        return FusedOutput(load_image(index[pair.stem], grey=image_a.ndim == 2), None, fmap)

    return source


def _split_output(out: Any) -> tuple[np.ndarray, Mapping[str, float] | None, np.ndarray | None]:
    """fuse_fn may return an array, (array, timing dict) or an object with .fused/.timings
    and .f_final (a `fusion.FusionResult`). A stack's result has no F_final; its map is then
    where the first frame is taken (index map 0)."""
    if isinstance(out, tuple) and len(out) == 2 and isinstance(out[1], Mapping):
        return np.asarray(out[0]), out[1], None
    if hasattr(out, "fused"):
        focus_map = getattr(out, "f_final", None)
        index_map = getattr(out, "index_map", None)
        if focus_map is None and index_map is not None:
            focus_map = np.asarray(index_map) == 0
        return np.asarray(out.fused), getattr(out, "timings", None), focus_map
    return np.asarray(out), None, None


def fused_from_fn(
    fuse_fn: FuseFn, save_dir: str | pathlib.Path | None = None, warmup: bool = True
) -> FusedSource:
    """Fuses each pair with ``fuse_fn([image_a, image_b])`` (a stack with
    ``fuse_fn([image_a, image_b, *more])``), timing the call.

    ``fuse_fn`` returns the fused image (uint8, or float in [0, 1]), optionally with a
    timing dict {"network", "srr", "fusion"} in seconds (Table 2); the wall time of the
    call becomes "total" when it does not report one. ``warmup`` runs the first pair once
    untimed, so that loading and tracing the model do not count as fusion time. With
    ``save_dir`` the fused images are also written there as lossless PNG (``<stem>.png``).
    """
    folder = pathlib.Path(save_dir) if save_dir else None
    warm = [not warmup]

    def source(pair: Pair, image_a: np.ndarray, image_b: np.ndarray, *more) -> FusedOutput:
        if not warm[0]:
            fuse_fn([image_a, image_b, *more])
            warm[0] = True
        start = time.perf_counter()
        out = fuse_fn([image_a, image_b, *more])
        elapsed = time.perf_counter() - start
        image, timing, focus_map = _split_output(out)
        image = to_uint8(image, f"fused image of {pair.stem}")
        timing = dict(timing or {})
        timing.setdefault("total", elapsed)
        if folder is not None:
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(image).save(folder / f"{pair.stem}.png")
        return FusedOutput(image, timing, focus_map)

    return source


def model_fuse_fn(model: str = "default", srr: bool = True, flips: bool = False,
                  scales: Sequence[float] | str | None = None, mode: str = "paper",
                  working_side: int | None = None, refiner: str | None = None,
                  precision: str = "float32", g_side: int | None = None,
                  measure_ratio: float | None = None) -> FuseFn:
    """``fuse_fn`` of our MFIF-GAN model (imports TensorFlow only when called), with the
    settings of `fusion.fuse_arrays`: ``mode`` ("coarse_to_fine" or "paper"),
    ``working_side``, ``refiner``, ``flips``, ``scales`` (paper mode), ``precision`` of G
    ("float32" or "bfloat16"; float32 by default, so that scores do not depend on the CPU),
    ``g_side`` (refined mode; None for `inference.DEFAULT_G_SIDE`), ``measure_ratio``
    (refined mode, G below full size; None for `inference.MEASURE_RATIO`)."""
    try:
        from mfif_tf import fusion, inference  # pylint: disable=import-outside-toplevel
    except ImportError as err:
        raise EvaluationError(f"--model needs the fusion module mfif_tf.fusion ({err})") from None
    side = inference.DEFAULT_WORKING_SIDE if working_side is None else working_side
    g_side = inference.DEFAULT_G_SIDE if g_side is None else g_side
    try:
        fusion.check_fusion_mode(mode, side, scales)
        inference.check_g_side(g_side)
        measure_ratio = inference.check_measure_ratio(
            inference.MEASURE_RATIO if measure_ratio is None else measure_ratio)
        precision = fusion.effective_precision(None, precision)
    except (fusion.InputError, ValueError) as err:
        raise EvaluationError(str(err)) from None
    try:
        generator = fusion.resolve_generator(None if model == "default" else model, precision)
        model_refiner = coarse_refiner = coarse_generator = None
        if mode != "paper":
            model_refiner = fusion.resolve_refiner(refiner, None if model == "default" else model,
                                                   mode, precision)
        if mode == "refined" and g_side:  # as `fusion.fuse_stack` chooses it
            coarse_refiner = fusion.resolve_refiner(
                refiner, None if model == "default" else model, inference.COARSE_REFINER_KEY,
                precision)
            coarse_generator = fusion.resolve_coarse_generator(
                None, None if model == "default" else model, precision)
    except (fusion.InputError, FileNotFoundError) as err:  # FileNotFoundError: no such model
        raise EvaluationError(str(err).splitlines()[0] if str(err) else
                              type(err).__name__) from None
    return lambda sources: fusion.fuse_arrays(sources, generator=generator, srr=srr,
                                              flips=flips, scales=scales, mode=mode,
                                              working_side=side, refiner=model_refiner,
                                              g_side=g_side, coarse_refiner=coarse_refiner,
                                              measure_ratio=measure_ratio,
                                              coarse_generator=coarse_generator)


def classical_fuse_fn(srr: bool = True) -> FuseFn:
    """``fuse_fn`` of the classical baseline `classical.fuse_classical` (sum-modified-
    Laplacian focus measure, SRR, eq. 14); returns a `FusionResult` with F_final."""
    try:
        from mfif_tf import classical  # pylint: disable=import-outside-toplevel
    except ImportError as err:
        raise EvaluationError(f"--classical needs mfif_tf.classical ({err})") from None
    return lambda sources: classical.fuse_classical(sources, srr=srr)


# ----------------------------------------------------------------------------- evaluation


def _progress(items: Sequence, desc: str, enabled: bool) -> Iterable:
    if not enabled:
        return items
    try:
        from tqdm import tqdm  # pylint: disable=import-outside-toplevel
    except ImportError:
        return items
    return tqdm(items, desc=desc, unit="pair", file=sys.stderr, leave=False)


def _mean(values: Iterable[float]) -> float:
    vals = list(values)
    return float(np.mean(vals)) if vals else float("nan")


def mean_timing(timings: Sequence[Mapping[str, float]]) -> dict[str, float] | None:
    """Per-key mean of per-pair timing dicts (Table 2); None when nothing was timed."""
    if not timings:
        return None
    keys = [k for k in TIMING_KEYS if any(k in t for t in timings)]
    keys += sorted({k for t in timings for k in t} - set(keys))
    return {k: _mean(t[k] for t in timings if k in t) for k in keys}


def evaluate_method(
    name: str,
    pairs: Sequence[Pair],
    source: FusedSource,
    config: EvalConfig,
    source_label: str = "",
) -> MethodResult:
    """Metrics of one fused source over all pairs."""
    per_image: dict[str, dict[str, float]] = {}
    timings: list[Mapping[str, float]] = []
    for pair in _progress(pairs, name, config.progress):
        grey = _is_grey(pair.path_a)
        a, b = load_image(pair.path_a, grey), load_image(pair.path_b, grey)
        if a.shape != b.shape:
            raise EvaluationError(f"{pair.stem}: A is {a.shape} but B is {b.shape}")
        more = [load_image(p, grey) for p in pair.paths_more]
        for path, frame in zip(pair.paths_more, more):
            if frame.shape != a.shape:
                raise EvaluationError(f"{pair.stem}: A is {a.shape} but {path.parent.name}/ "
                                      f"is {frame.shape}")
        out = source(pair, a, b, *more)
        fused = to_uint8(out.image, f"fused image of {pair.stem}")
        if fused.shape != a.shape:
            raise EvaluationError(f"{name}/{pair.stem}: fused is {fused.shape}, sources {a.shape}")
        gt = load_image(pair.path_gt, grey) if pair.path_gt is not None else None
        # A stack is scored against GT only: the twelve metrics are defined for two sources.
        wanted = tuple(m for m in config.metrics if (m in metrics_lib.METRIC_NAMES and not more)
                       or (gt is not None and m in metrics_lib.REFERENCE_METRIC_NAMES))
        map_wanted = tuple(m for m in config.metrics if m in metrics_lib.FOCUS_MAP_METRIC_NAMES)
        try:
            scores = metrics_lib.compute_all(
                a, b, fused, config.convention, ground_truth=gt, metrics=wanted
            )
            if map_wanted and pair.path_map is not None and out.focus_map is not None:
                true_map = load_focus_map(pair.path_map)
                if true_map.shape != a.shape[:2]:
                    raise EvaluationError(f"{pair.stem}: MAP is {true_map.shape}, sources "
                                          f"{a.shape[:2]}")
                scores.update(metrics_lib.focus_map_metrics(out.focus_map, true_map, map_wanted))
        except metrics_lib.MetricInputError as err:
            raise EvaluationError(f"{name}/{pair.stem}: {err}") from None
        per_image[pair.stem] = scores
        if out.timing:
            timings.append(out.timing)
    names = [m for m in config.metrics if any(m in r for r in per_image.values())]
    mean = {m: _mean(r[m] for r in per_image.values() if m in r) for m in names}
    return MethodResult(name, per_image, mean, mean_timing(timings), source_label)


def unique_names(labels: Sequence[str], taken: Sequence[str] = ()) -> list[str]:
    """Method names from folder names, made unique with a numeric suffix (also against the
    names in ``taken``, such as "model")."""
    names: list[str] = []
    for label in labels:
        base = pathlib.Path(label).name or str(label)
        name, i = base, 2
        while name in names or name in taken:
            name, i = f"{base}_{i}", i + 1
        names.append(name)
    return names


def evaluate(
    config: EvalConfig, sources: Mapping[str, tuple[FusedSource, str]]
) -> list[MethodResult]:
    """Evaluates every named fused source on the dataset's pairs (in the given order)."""
    pairs = find_pairs(config.dataset_dir)
    return [
        evaluate_method(name, pairs, source, config, label)
        for name, (source, label) in sources.items()
    ]


@dataclasses.dataclass(frozen=True)
class FnMethod:
    """A fusion function to evaluate: its name, ``fuse_fn``, its description for results.json
    and the folder of output_dir its fused PNGs go to."""

    name: str
    fuse_fn: FuseFn
    source: str = "fuse_fn"
    save_subdir: str = "fused"


def evaluate_all(
    config: EvalConfig,
    functions: Sequence[FnMethod] = (),
    fused_dirs: Sequence[str] = (),
    names: Sequence[str] | None = None,
    map_dirs: Sequence[str | None] | None = None,
) -> list[MethodResult]:
    """Table 1 (and Table 2) for fusion functions and folders of fused images in one table.

    Args:
      config: dataset, metrics and outputs.
      functions: fusion functions (our model, the classical baseline, ...), evaluated first;
        their fused PNGs are saved under ``output_dir/<save_subdir>``.
      fused_dirs: folders of fused images, matched by stem.
      names: names of the fused folders (default: the folder names, made unique).
      map_dirs: one focus-map folder (F_final by stem) or None per fused folder.
    """
    pairs = find_pairs(config.dataset_dir)
    fn_names = [f.name for f in functions]
    dir_names = list(names) if names else unique_names(fused_dirs, taken=fn_names)
    if len(dir_names) != len(fused_dirs):
        raise EvaluationError(f"{len(dir_names)} names given for {len(fused_dirs)} fused folders")
    map_dirs = list(map_dirs) if map_dirs else [None] * len(fused_dirs)
    if len(map_dirs) != len(fused_dirs):
        raise EvaluationError(f"{len(map_dirs)} focus map folders given for {len(fused_dirs)} "
                              f"fused folders; give one per fused folder ('' for none)")
    all_names = fn_names + dir_names
    repeated = sorted({n for n in all_names if all_names.count(n) > 1})
    if repeated:
        raise EvaluationError(f"two methods are named {repeated[0]!r}; give other --name values")
    _check_outputs(config, all_names)
    sources: dict[str, tuple[FusedSource, str]] = {}
    for f in functions:
        save_dir = pathlib.Path(config.output_dir) / f.save_subdir if config.output_dir else None
        occupied = save_dir is not None and save_dir.exists() and any(save_dir.iterdir())
        if occupied and not config.overwrite:
            raise EvaluationError(f"{save_dir} already holds files; pass --overwrite to replace "
                                  f"them")
        sources[f.name] = (fused_from_fn(f.fuse_fn, save_dir), f.source)
    for n, d, m in zip(dir_names, fused_dirs, map_dirs):
        label = f"{d} (focus maps {m})" if m else str(d)
        sources[n] = (fused_from_dir(d, pairs, m or None), label)
    return [
        evaluate_method(name, pairs, source, config, label)
        for name, (source, label) in sources.items()
    ]


def evaluate_dirs(
    config: EvalConfig, fused_dirs: Sequence[str], names: Sequence[str] | None = None,
    map_dirs: Sequence[str | None] | None = None,
) -> list[MethodResult]:
    """Table 1 for one or several folders of fused images (and their focus maps)."""
    return evaluate_all(config, (), fused_dirs, names, map_dirs)


def evaluate_fn(config: EvalConfig, fuse_fn: FuseFn, name: str = "model",
                source: str = "fuse_fn", save_subdir: str = "fused") -> MethodResult:
    """Table 1 and Table 2 for a fusion function (fused PNGs saved under
    output_dir/<save_subdir>); `source` describes it in results.json (for a model: weights
    and settings)."""
    return evaluate_all(config, [FnMethod(name, fuse_fn, source, save_subdir)])[0]


# ----------------------------------------------------------------------------- outputs


def _output_files(names: Sequence[str]) -> list[str]:
    return ["results.json", "table.md", "means.csv"] + [f"per_image_{n}.csv" for n in names]


def check_output_dir(config: EvalConfig) -> None:
    """Refuses an output_dir that cannot be a folder or cannot be written (checked before
    any pair is fused or scored, so that no work is lost)."""
    if not config.output_dir:
        return
    folder = os.path.abspath(config.output_dir)
    existing = folder
    while not os.path.lexists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise EvaluationError(f"{config.output_dir}: cannot be the output folder: {existing} is "
                              f"not a directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        where = "" if existing == folder else f" in {existing}"
        raise EvaluationError(f"{config.output_dir}: cannot write to the output folder "
                              f"(permission denied{where})")


def _check_outputs(config: EvalConfig, names: Sequence[str]) -> None:
    check_output_dir(config)
    if not config.output_dir or config.overwrite:
        return
    root = pathlib.Path(config.output_dir)
    existing = [f for f in _output_files(names) if (root / f).exists()]
    if existing:
        raise EvaluationError(f"{root}: {existing[0]} exists; pass --overwrite to replace it")


def _json_float(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


def write_outputs(
    config: EvalConfig, results: Sequence[MethodResult], table_md: str
) -> list[pathlib.Path]:
    """results.json, table.md, means.csv and per_image_<name>.csv in config.output_dir."""
    root = pathlib.Path(config.output_dir)
    root.mkdir(parents=True, exist_ok=True)
    _check_outputs(config, [r.name for r in results])
    payload = {
        "dataset_dir": str(config.dataset_dir),
        "convention": config.convention,
        "best_rule": metrics_lib.BEST_RULE,
        "methods": {
            r.name: {
                "source": r.source,
                "mean": {k: _json_float(v) for k, v in r.mean.items()},
                "timing_seconds": r.timing,
                "per_image": {
                    s: {k: _json_float(v) for k, v in row.items()} for s, row in r.per_image.items()
                },
            }
            for r in results
        },
    }
    written = [root / "results.json", root / "table.md", root / "means.csv"]
    written[0].write_text(json.dumps(payload, indent=2) + "\n")
    written[1].write_text(table_md)
    written[2].write_text(report.csv_means({r.name: r.mean for r in results}))
    for r in results:
        path = root / f"per_image_{r.name}.csv"
        path.write_text(report.csv_per_image(r.per_image, r.mean))
        written.append(path)
    return written


def results_markdown(
    results: Sequence[MethodResult], convention: str, per_image: bool = True
) -> str:
    """Per-image tables, then the Table 1 comparison (best in bold) and the Table 2 timings."""
    parts = []
    if per_image:
        for r in results:
            parts.append(report.markdown_per_image(r.per_image, r.mean, title=r.name))
    title = "Mean over all pairs" if len(results) == 1 else "Comparison (best in bold)"
    parts.append(f"### {title} (convention: {convention})\n\n")
    parts[-1] += report.markdown_comparison({r.name: r.mean for r in results})
    timed = {r.name: r.timing for r in results if r.timing}
    if timed:
        parts.append("### Mean time per pair (Table 2)\n\n" + report.markdown_timing(timed))
    return "\n".join(parts)


# ----------------------------------------------------------------------------- Fig. 6 study

MapSource = Callable[[Pair, np.ndarray, np.ndarray], np.ndarray]
DIFFUSION_FILES = ("diffusion.json", "diffusion.md", "diffusion.csv", "diffusion.png")


def maps_from_dir(map_dir: str | pathlib.Path, pairs: Sequence[Pair]) -> MapSource:
    """Binary F_final maps of a folder by stem; grey values above 127 count as foreground."""
    index = _index_by_stem(map_dir, pairs, "focus map folder", "focus map")
    return lambda pair, a, b: load_image(index[pair.stem], grey=True) > 127


def maps_from_fn(map_fn: FuseFn) -> MapSource:
    """F_final from ``map_fn([image_a, image_b])`` (values > 0.5 count as foreground)."""

    def source(pair: Pair, image_a: np.ndarray, image_b: np.ndarray) -> np.ndarray:
        fmap = np.asarray(map_fn([image_a, image_b]), dtype=np.float64)
        if fmap.ndim == 3 and fmap.shape[2] == 1:
            fmap = fmap[:, :, 0]
        return fmap > (127.5 if fmap.max(initial=0.0) > 1.0 else 0.5)

    return source


def diffusion_study(
    config: EvalConfig,
    maps: MapSource,
    ks: Sequence[int] = tuple(range(-10, 11)),
    element: str = "disk",
) -> tuple[dict[int, dict[str, float]], str]:
    """Fig. 6: mean metrics over the dataset with F_final grown/shrunk by each k.

    Returns ({k: {metric: mean}}, markdown). With config.output_dir it also writes
    diffusion.json, diffusion.md, diffusion.csv and diffusion.png (normalised metrics).
    """
    pairs = find_pairs(config.dataset_dir)
    check_output_dir(config)
    root = pathlib.Path(config.output_dir) if config.output_dir else None
    if root is not None and not config.overwrite:
        existing = [f for f in DIFFUSION_FILES if (root / f).exists()]
        if existing:
            raise EvaluationError(f"{root}: {existing[0]} exists; pass --overwrite to replace it")
    names = [m for m in config.metrics if m in metrics_lib.METRIC_NAMES]
    sums: dict[int, list[dict[str, float]]] = {int(k): [] for k in ks}
    for pair in _progress(pairs, "diffusion", config.progress):
        grey = _is_grey(pair.path_a)
        a, b = load_image(pair.path_a, grey), load_image(pair.path_b, grey)
        fmap = np.asarray(maps(pair, a, b))
        if fmap.shape != a.shape[:2]:
            raise EvaluationError(f"{pair.stem}: focus map is {fmap.shape}, sources {a.shape}")
        rows = edge_morphology.diffusion_metrics(a, b, fmap, ks, element, config.convention, names)
        for k, row in rows.items():
            sums[k].append(row)
    table = {k: {m: _mean(r[m] for r in rows) for m in names} for k, rows in sums.items()}
    md = (
        f"### Edge diffusion (k > 0) and contraction (k < 0), {element} element, "
        f"mean over {len(pairs)} pairs (convention: {config.convention})\n\n"
        + report.markdown_diffusion(table)
    )
    if root is not None:
        root.mkdir(parents=True, exist_ok=True)
        payload = {
            "element": element,
            "convention": config.convention,
            "pairs": len(pairs),
            "table": {str(k): {m: _json_float(v) for m, v in r.items()} for k, r in table.items()},
            "normalised": report.normalize_columns(table),
        }
        (root / "diffusion.json").write_text(json.dumps(payload, indent=2) + "\n")
        (root / "diffusion.md").write_text(md)
        (root / "diffusion.csv").write_text(report.csv_diffusion(table))
        report.plot_diffusion(
            table,
            root / "diffusion.png",
            title=f"{len(pairs)} pairs, {element} element, convention: {config.convention}",
        )
    return table, md
