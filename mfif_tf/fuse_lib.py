"""File-level fusion jobs behind `mfif-fuse`: one pair or stack of files, or a folder of them.

Every check on paths happens before any pixel is read: missing or unreadable inputs, a
directory where a file is expected, an output that exists (refused unless `overwrite`), an
output that would replace an input, an output folder that cannot be written. Outputs (the
fused image and the optional focus and index maps) are written all or nothing
(`image_io.OutputSet`); the temporary files of runs that were killed are removed from the
output folders before a job starts.

Batch folders hold one subfolder per source, named by letter: `A/`, `B/` and optionally
`C/`, `D/`, ...; files are matched by stem (`A/01.jpg`, `B/01.jpg`, `C/01.jpg` is a stack of
three). A stem may be missing from the later subfolders (a shorter stack) but not from `B/`.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Sequence

from typing import TYPE_CHECKING

import numpy as np
from tqdm.auto import tqdm

from mfif_tf import common, image_io, litert_engine, stacking
from mfif_tf.align import MODELS as ALIGN_MODELS
from mfif_tf.cli import quiet_native_stderr
from mfif_tf.common import ModelNotFoundError
from mfif_tf.image_io import InputError

if TYPE_CHECKING:
    from mfif_tf.networks import Generator

# TensorFlow is imported only when a job needs it (`start_tensorflow`): a job the LiteRT
# engine runs (`choose_engine`) never loads it.

MAP_FORMATS = ("png", "tiff")
# The smallest tile side `--tile_size` takes. Every tile is extended on each side by G's
# halos (`tiling.tile_geometry`; 8 pixels for the stem and for the decoder of the presets),
# so those stages run on (T + 16)^2 pixels for a T x T tile: 1.6 times the tile at T = 64,
# 9 times at T = 8, on top of the fixed cost of every tile; smaller tiles save little memory.
MIN_TILE_SIZE = 64


@dataclasses.dataclass
class FuseOptions:
    """Settings of a fusion job (the `mfif-fuse` flags); see `fusion.fuse_arrays`."""

    srr: bool = True
    min_size: int | None = None
    min_size_fraction: float = common.PAPER_MIN_SIZE_FRACTION
    edge_pixels: int = 0
    align: bool = False
    align_model: str = "similarity"
    stack_order: str = stacking.DEFAULT_STACK_ORDER
    tile_size: int | None = None
    flips: bool = False
    scales: tuple[float, ...] | str | None = None
    mode: str = common.DEFAULT_MODE
    working_side: int = common.DEFAULT_WORKING_SIDE
    g_side: int = common.DEFAULT_G_SIDE
    measure_ratio: float = common.MEASURE_RATIO
    refiner: str | None = None
    precision: str | None = None  # None: model_io.default_precision() for a model path
    overwrite: bool = False
    skip_existing: bool = False  # batches: keep existing outputs, fuse only the missing ones
    jpeg_quality: int = 95
    engine: str = "auto"  # "auto", "litert" or "tensorflow" (`choose_engine`)
    threads: int = 0  # CPU threads of either engine; 0: all
    progress: bool | None = None  # None: progress bars only on a terminal
    # Remove what killed runs left in the output folders (`image_io.remove_stale_parts`).
    remove_stale_parts: bool = True

    def validate(self) -> None:
        if self.min_size is not None and self.min_size < 0:
            raise InputError(f"--min_size must be >= 0, got {self.min_size}")
        if not 0.0 <= self.min_size_fraction <= 1.0:
            raise InputError(f"--min_size_fraction must be in [0, 1], got "
                             f"{self.min_size_fraction}")
        if self.tile_size is not None and self.tile_size < 0:
            raise InputError(f"--tile_size must be >= 0, got {self.tile_size}")
        if self.tile_size and self.tile_size < MIN_TILE_SIZE:
            raise InputError(f"--tile_size {self.tile_size} is too small: tiles need at least "
                             f"{MIN_TILE_SIZE} pixels a side (below that the halos around "
                             f"each tile cost more than the tile); 0 is the whole image at once")
        if not 1 <= self.jpeg_quality <= 100:
            raise InputError(f"--jpeg_quality must be in [1, 100], got {self.jpeg_quality}")
        try:
            self.scales = stacking.check_fusion_mode(self.mode, self.working_side, self.scales)
        except InputError as err:
            raise InputError(f"--mode/--working_side/--scales: {err}") from None
        try:
            common.check_g_side(self.g_side)
        except ValueError as err:
            raise InputError(f"--g_side: {err}") from None
        try:
            common.check_measure_ratio(self.measure_ratio)
        except ValueError as err:
            raise InputError(f"--measure_ratio: {err}") from None
        if self.refiner is not None and not os.path.isdir(self.refiner):
            raise InputError(f"--refiner {self.refiner}: no such folder")
        if self.precision is not None and self.precision not in common.PRECISIONS:
            raise InputError(f"--precision must be float32 or bfloat16, got "
                             f"{self.precision!r}")
        if self.align_model not in ALIGN_MODELS:
            raise InputError(f"--align_model must be one of {ALIGN_MODELS}, got "
                             f"{self.align_model!r}")
        if self.stack_order not in stacking.STACK_ORDERS:
            raise InputError(f"--stack_order must be one of {', '.join(stacking.STACK_ORDERS)}, "
                             f"got {self.stack_order!r}")
        if self.threads < 0:
            raise InputError(f"--threads must be >= 0, got {self.threads}")
        if self.engine not in litert_engine.ENGINES:
            raise InputError(f"--engine must be one of {', '.join(litert_engine.ENGINES)}, "
                             f"got {self.engine!r}")
        if self.overwrite and self.skip_existing:
            raise InputError("--overwrite replaces existing outputs and --skip_existing keeps "
                             "them: pass one of the two")


def focus_map_image(f_final: np.ndarray) -> np.ndarray:
    """F_final as an 8-bit grey image (255 where I_A is taken)."""
    return np.rint(np.clip(f_final, 0.0, 1.0) * 255.0).astype(np.uint8)


def _check_map_path(path: str, flag: str, overwrite: bool, inputs: Sequence[str]) -> None:
    image_io.check_output_path(path, overwrite, inputs)
    if image_io.output_format(path) not in MAP_FORMATS:
        raise InputError(f"{path}: {flag} must be lossless: use .png or .tif")


def check_job(sources: Sequence[str], output: str | None, options: FuseOptions,
              focus_map: str | None = None, index_map: str | None = None) -> None:
    """All checks that need no pixels (see the module docstring). `output` may be None when
    a map is asked for (a batch item whose fused image exists)."""
    options.validate()
    if len(sources) < 2:
        raise InputError("need at least two sources to fuse, got "
                         + (f"one: {sources[0]}" if sources else "none"))
    for path in sources:
        image_io.check_input_file(path)
    outputs = [p for p in (output, focus_map, index_map) if p]
    if not outputs:
        raise InputError("nothing to write: no output file and no map")
    if len(set(map(os.path.realpath, outputs))) != len(outputs):
        raise InputError(f"{outputs[0]}: the output and map paths must differ")
    if output:
        image_io.check_output_path(output, options.overwrite, sources)
    if focus_map:
        if len(sources) > 2:
            raise InputError(f"{focus_map}: --focus_map is for pairs; a stack of "
                             f"{len(sources)} frames has an index map (--index_map)")
        _check_map_path(focus_map, "--focus_map", options.overwrite, sources)
    if index_map:
        _check_map_path(index_map, "--index_map", options.overwrite, sources)


def litert_blockers(options: FuseOptions, generator: Generator | str | None) -> list[str]:
    """Why the LiteRT engine cannot run a job with these settings (empty: it can, for
    the image sizes it runs, `litert_engine.size_blocker`)."""
    model = "a Generator" if not isinstance(generator, (str, os.PathLike, type(None))) \
        else generator
    reasons = litert_engine.unsupported(
        model=model, mode=options.mode, refiner=options.refiner, scales=options.scales,
        flips=options.flips, precision=options.precision, tile_size=options.tile_size,
        min_size=options.min_size, min_size_fraction=options.min_size_fraction,
        g_side=options.g_side, measure_ratio=options.measure_ratio)
    graph = litert_engine.graph_path(model)
    missing = litert_engine.missing(graph) if graph else None
    return reasons + ([missing] if missing else [])


# What `choose_engine` weighs for a stack (measured on a 2-core Intel Xeon with AMX, idle;
# docs/fusion.md, "Engines"): the seconds TensorFlow's start-up costs a process more than
# LiteRT's (importing it, building G and R, first calls: 6.34 s against 1.08 s for a
# 520 x 520 pair), and the seconds per megapixel of one pair, warm, on each engine (520 x 520
# and 1000 x 1000 pairs: LiteRT's float32 graph 1.85-1.90; TensorFlow 0.53-0.58 in bfloat16,
# 1.16-1.20 in float32).
TENSORFLOW_EXTRA_START_S = 5.3
PAIR_S_PER_MP = {"litert": 1.9, "bfloat16": 0.58, "float32": 1.2}


def tensorflow_pays(frames: int, pixels: int, precision: str | None) -> bool:
    """Whether a stack of `frames` frames of `pixels` pixels fuses sooner on TensorFlow (in
    `precision`; None: the CPU's default) than on the LiteRT graph, start-up included."""
    precision = precision or common.cpu_default_precision()
    saved = (frames - 1) * pixels / 1e6 * (PAIR_S_PER_MP["litert"] - PAIR_S_PER_MP[precision])
    return saved > TENSORFLOW_EXTRA_START_S


def choose_engine(options: FuseOptions, generator: Generator | str | None,
                  shape: tuple[int, ...] | None = None, frames: int = 2) -> str:
    """"litert" or "tensorflow" for a job (`shape`: the first source's, when known;
    `frames`: how many sources).

    `options.engine` "auto" picks LiteRT when the packaged graph computes what was asked
    (`litert_engine.unsupported`), the image is one it runs (`litert_engine.size_blocker`:
    at most `litert_engine.MAX_PIXELS`, G's box factor that of the graph's side) and the
    job is too small to repay TensorFlow's start-up (`tensorflow_pays`: a pair never is; a
    stack of 1 MP frames from 6 frames on in bfloat16), else TensorFlow; "litert" refuses a
    job it cannot run, naming the flags; "tensorflow" always runs TensorFlow.
    """
    if options.engine == "tensorflow":
        return "tensorflow"
    blockers = litert_blockers(options, generator)
    if options.engine == "litert":
        if blockers:
            raise InputError("--engine=litert cannot run this job: " + "; ".join(blockers)
                             + " (use --engine=auto or tensorflow)")
        return "litert"
    too_big = shape is not None and litert_engine.size_blocker(*shape[:2], options.g_side,
                                                               options.measure_ratio)
    pays = shape is not None and tensorflow_pays(frames, shape[0] * shape[1], options.precision)
    return "tensorflow" if blockers or too_big or pays else "litert"


_TF_STARTED = False


def start_tensorflow(threads: int = 0) -> None:
    """Imports TensorFlow with its native start-up lines silenced and, when `threads` > 0,
    its thread pools sized (only possible before its runtime starts; later calls keep the
    first setting)."""
    global _TF_STARTED
    if _TF_STARTED:
        return
    with quiet_native_stderr():
        import tensorflow as tf

        if threads > 0:
            try:
                tf.config.threading.set_intra_op_parallelism_threads(threads)
                tf.config.threading.set_inter_op_parallelism_threads(1)
            except RuntimeError:  # the runtime runs already (a library caller's own work)
                pass
        tf.config.list_logical_devices("CPU")  # starts the runtime
    _TF_STARTED = True


def fuse_files(sources: Sequence[str], output: str | None, generator: Generator | str | None,
               options: FuseOptions, focus_map: str | None = None,
               index_map: str | None = None) -> stacking.FusionResult:
    """Fuses image files into `output` (EXIF of the first file kept); optionally writes
    F_final (`focus_map`, pairs) and the index map (`index_map`, raw frame numbers 0..N-1).
    With `output` None only the maps are written. The engine follows `choose_engine`."""
    check_job(sources, output, options, focus_map, index_map)
    if options.remove_stale_parts:
        for folder in {os.path.dirname(os.path.abspath(p))
                       for p in (output, focus_map, index_map) if p}:
            image_io.remove_stale_parts(folder)
    first = image_io.read_image(sources[0])
    if output:
        image_io.check_can_store(output, first.pixels)
    # Loaded when the fusion asks for them, one at a time, in its order.
    frames = stacking.LazyFrames(
        len(sources), lambda k: first.pixels if k == 0 else image_io.read_image(sources[k]).pixels)
    if choose_engine(options, generator, first.pixels.shape, len(sources)) == "litert":
        result = litert_engine.fuse_stack(
            frames, srr=options.srr, edge_pixels=options.edge_pixels, align=options.align,
            align_model=options.align_model, names=list(sources), progress=options.progress,
            num_threads=options.threads, stack_order=options.stack_order,
            graph=litert_engine.graph_path(generator), g_side=options.g_side,
            measure_ratio=options.measure_ratio)
    else:
        start_tensorflow(options.threads)
        from mfif_tf import fusion

        result = fusion.fuse_stack(
            frames, generator, srr=options.srr, min_size=options.min_size,
            min_size_fraction=options.min_size_fraction, edge_pixels=options.edge_pixels,
            tile_size=options.tile_size, align=options.align, align_model=options.align_model,
            names=list(sources), progress=options.progress, flips=options.flips,
            scales=options.scales, mode=options.mode, working_side=options.working_side,
            refiner=options.refiner, precision=options.precision, g_side=options.g_side,
            measure_ratio=options.measure_ratio, stack_order=options.stack_order)
    with image_io.OutputSet(options.overwrite) as out:
        if output:
            out.add(output, result.fused, first.exif, options.jpeg_quality)
        if focus_map:
            out.add(focus_map, focus_map_image(result.f_final))
        if index_map:
            out.add(index_map, result.index_map)
        out.commit()
    return result


@dataclasses.dataclass
class BatchItem:
    """One pair or stack of a batch folder, and where its results go. With `skip_existing`
    the outputs that exist already are moved from `output`, `focus_map` and `index_map`
    (then None) to `existing`."""

    stem: str
    sources: list[str]
    output: str | None = ""
    focus_map: str | None = None
    index_map: str | None = None
    existing: list[str] = dataclasses.field(default_factory=list)

    @property
    def pending(self) -> bool:
        """Whether any of the item's outputs is still to be written."""
        return bool(self.output or self.focus_map or self.index_map)


def find_batch_items(input_dir: str) -> list[BatchItem]:
    """The pairs and stacks of a batch folder (see the module docstring), sorted by stem."""
    if not os.path.isdir(input_dir):
        raise InputError(f"{input_dir}: --input_dir is not a directory")
    letters = sorted(d for d in os.listdir(input_dir) if len(d) == 1 and "A" <= d <= "Z"
                     and os.path.isdir(os.path.join(input_dir, d)))
    if letters[:2] != ["A", "B"]:
        raise InputError(f"{input_dir}: needs subfolders A/ and B/ (and optionally C/, D/, ...)")
    expected = [chr(ord("A") + i) for i in range(len(letters))]
    if letters != expected:
        raise InputError(f"{input_dir}: source subfolders must be consecutive letters, found "
                         f"{', '.join(letters)}")
    tables: list[dict[str, str]] = []
    for letter in letters:
        folder = os.path.join(input_dir, letter)
        table: dict[str, str] = {}
        for name in sorted(os.listdir(folder)):
            stem, ext = os.path.splitext(name)
            if name.startswith(".") or ext.lower() not in image_io.READ_EXTENSIONS:
                continue
            if stem in table:
                raise InputError(f"{folder}: two files with the stem {stem!r}")
            table[stem] = os.path.join(folder, name)
        tables.append(table)
    stems = sorted(tables[0])
    if not stems:
        raise InputError(f"{os.path.join(input_dir, 'A')}: no images")
    missing = [s for s in stems if s not in tables[1]]
    if missing:
        raise InputError(f"{os.path.join(input_dir, 'B')}: no file for the stems "
                         f"{', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}")
    items = []
    for letter, table in zip(letters[1:], tables[1:]):
        extra = sorted(set(table) - set(tables[0]))
        if extra:
            raise InputError(f"{os.path.join(input_dir, letter)}: files without a partner in "
                             f"A/: {', '.join(extra[:5])}")
    for stem in stems:
        paths = [tables[0][stem]]
        for letter, table in zip(letters[1:], tables[1:]):
            if stem not in table:
                break
            paths.append(table[stem])
        later = [letter for letter, table in zip(letters, tables)
                 if stem in table and letter > letters[len(paths) - 1]]
        if later:
            raise InputError(f"{input_dir}: stem {stem!r} is missing from "
                             f"{letters[len(paths)]}/ but present in {later[0]}/")
        items.append(BatchItem(stem, paths))
    return items


def plan_batch(input_dir: str, output_dir: str, options: FuseOptions,
               output_format: str | None = None, focus_map_dir: str | None = None,
               index_map_dir: str | None = None) -> list[BatchItem]:
    """Batch items with their output paths, all checked before anything runs. Existing
    outputs are refused, replaced (`options.overwrite`) or kept (`options.skip_existing`:
    they move to `BatchItem.existing`)."""
    options.validate()
    items = find_batch_items(input_dir)
    for folder, flag in ((output_dir, "--output_dir"), (focus_map_dir, "--focus_map"),
                         (index_map_dir, "--index_map")):
        if folder and os.path.exists(folder) and not os.path.isdir(folder):
            raise InputError(f"{folder}: exists and is not a directory")
        if folder:
            image_io.check_output_folder(folder, f"{flag} folder")
    if output_format is not None:
        output_format = "." + output_format.lower().lstrip(".")
        image_io.output_format("x" + output_format)
    taken: dict[str, str] = {}
    for item in items:
        ext = output_format or os.path.splitext(item.sources[0])[1].lower()
        if ext not in image_io.WRITE_FORMATS:
            ext = ".png"
        item.output = os.path.join(output_dir, item.stem + ext)
        if focus_map_dir and len(item.sources) == 2:
            item.focus_map = os.path.join(focus_map_dir, item.stem + ".png")
        if index_map_dir:
            item.index_map = os.path.join(index_map_dir, item.stem + ".png")
        for path in (item.output, item.focus_map, item.index_map):
            if path is None:
                continue
            real = os.path.realpath(path)
            if real in taken:
                raise InputError(f"{path}: written twice (stems {taken[real]!r} and "
                                 f"{item.stem!r})")
            taken[real] = item.stem
            if os.path.realpath(path) in map(os.path.realpath, item.sources):
                raise InputError(f"{path}: output would replace one of the input files")
            if os.path.isdir(path):
                raise InputError(f"{path}: is a directory, expected an output file name")
            if os.path.exists(path) and options.skip_existing:
                item.existing.append(path)
            elif os.path.exists(path) and not options.overwrite:
                raise InputError(f"{path}: already exists (pass --overwrite to replace it, or "
                                 f"--skip_existing to keep it and fuse only the missing "
                                 f"outputs)")
        if item.existing:
            item.output, item.focus_map, item.index_map = (
                None if p in item.existing else p
                for p in (item.output, item.focus_map, item.index_map))
    return items


def prepare_output_folders(folders: Sequence[str | None], remove_stale: bool = True) -> None:
    """Creates a batch's output folders (None: not used) and removes what killed runs left
    in them (`image_io.remove_stale_parts`); InputError naming a folder that cannot be made."""
    for folder in folders:
        if folder:
            try:
                os.makedirs(folder, exist_ok=True)
            except OSError as err:
                raise InputError(f"{folder}: cannot create the folder "
                                 f"({err.strerror or err})") from None
            if remove_stale:
                image_io.remove_stale_parts(folder)


@dataclasses.dataclass
class BatchReport:
    """Stems fused, stems failed (with the message) and stems whose outputs all existed
    (`skip_existing`)."""

    done: list[str]
    failed: list[tuple[str, str]]
    skipped: list[str] = dataclasses.field(default_factory=list)


def fuse_batch(input_dir: str, output_dir: str, generator: Generator | str | None,
               options: FuseOptions, output_format: str | None = None,
               focus_map_dir: str | None = None, index_map_dir: str | None = None,
               log: Callable[[str], None] = print) -> BatchReport:
    """Fuses every pair or stack of `input_dir` into `output_dir/<stem>.<ext>`.

    The model is loaded once, and not at all when `options.skip_existing` finds every
    output in place. A failing item (a damaged file, sources of different sizes,
    an output that cannot be written) is reported through `log` and skipped; the others
    still run. Output folders that cannot be written stop the batch before any work.
    """
    items = plan_batch(input_dir, output_dir, options, output_format, focus_map_dir,
                       index_map_dir)
    prepare_output_folders((output_dir, focus_map_dir, index_map_dir),
                           options.remove_stale_parts)
    report = BatchReport([], [], [item.stem for item in items if not item.pending])
    items = [item for item in items if item.pending]
    if not items:
        return report
    model = generator
    if choose_engine(options, generator) == "tensorflow":
        # Loaded once for every item; with LiteRT, TensorFlow loads only for an image above
        # the LiteRT size limit (and its model is cached from then on).
        start_tensorflow(options.threads)
        from mfif_tf import fusion

        loaded = fusion.resolve_generator(
            generator, fusion.effective_precision(generator, options.precision))
        # A path or a packaged name is passed on as such (the loaded models are cached), so
        # that each item also finds the G that runs below full size for it (the default G
        # for `--model=small`: `common.find_coarse_generator_dir`).
        if not isinstance(generator, (str, os.PathLike, type(None))):
            model = loaded
    item_options = dataclasses.replace(options, progress=False, remove_stale_parts=False)
    if model is not generator:
        item_options.precision = None  # `model` is in it already
    disable = None if options.progress is None else not options.progress
    for item in tqdm(items, desc="batch", unit="image", disable=disable):
        try:
            fuse_files(item.sources, item.output, model, item_options, item.focus_map,
                       item.index_map)
            report.done.append(item.stem)
        except (InputError, ModelNotFoundError) as err:
            report.failed.append((item.stem, str(err)))
            log(f"{item.stem}: {err}")
    return report
