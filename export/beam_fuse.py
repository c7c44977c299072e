r"""Batch fusion on Apache Beam with the exported SavedModel (the `beam` extra).

  python -m export.beam_fuse --input_dir DIR --output_dir OUT --saved_model exports/mfif/1
      [--focus_map DIR] [--index_map DIR] [--output_format png|jpg|tif] [--skip_existing]
      [--overwrite] [--jpeg_quality Q] [--min_size_fraction F] [--runner DirectRunner]
      [--direct_num_workers N] [other Beam pipeline options, e.g. --project=... --region=...]

The folders are those of `mfif-fuse --input_dir` (subfolders A/, B/ (C/, ...) matched by
stem; `fuse_lib.find_batch_items` and `fuse_lib.plan_batch` list them and name the outputs,
and decide what `--skip_existing` keeps and what `--overwrite` replaces). Every pair or stack
is one element of the pipeline; Beam's RunInference runs it through the SavedModel of
`python -m export.export` (`--saved_model`: its version folder, or the model folder, whose
highest version is taken), loaded once per worker by `SavedModelFuser`. A stack is fused
frame by frame by the stack loop of `mfif-fuse` (`stacking.fuse_frames`): the running result
as I_A, frame k as I_B, the index map k where F_final < 0.5.

The SavedModel gives F_final only: its `fuse_float_srr` signature sees the sources as
`inference.to_unit_rgb` scales them (what G sees in `mfif-fuse`), and eq. 14 runs here on the
ORIGINAL pixels (`inference.fuse_with_map`), so bit depth, grey sources, EXIF and the files
written are those of `mfif-fuse` in batch mode with the export's settings (mode, scales,
refinement head; float32). Outputs are written all or nothing per item (`image_io.OutputSet`).

Workers read the sources and write the outputs by path: on a distributed runner the folders
and the SavedModel must be on a file system every worker mounts, and the workers need this
package installed (e.g. Dataflow's `--setup_file` or a container image). Bad input stops the
run before the pipeline with a one-line error and exit code 2; items that fail in the pipeline
(a damaged file, sources of different sizes) are reported at the end, exit code 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import logging
import os
import sys
import time
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

try:  # optional: `pip install -e ".[beam]"`
    import apache_beam as beam
    from apache_beam.ml.inference.base import ModelHandler, PredictionResult, RunInference
except ImportError:  # main() reports it
    beam = None
    ModelHandler = object

PROG = "beam_fuse"
SIGNATURE = "fuse_float_srr"
METRICS = "mfif_beam_fuse"


@dataclasses.dataclass
class FusionJob:
    """One pair or stack and its outputs (None: not written)."""

    stem: str
    sources: list[str]
    output: str | None
    focus_map: str | None = None
    index_map: str | None = None


@dataclasses.dataclass
class FusedStack:
    """What fusing a job gives: I_fused in the sources' dtype, F_final (H, W) of the last
    step (pairs: the only one), the index map and the first source's EXIF; or `error`."""

    fused: np.ndarray | None = None
    f_final: np.ndarray | None = None
    index_map: np.ndarray | None = None
    exif: bytes | None = None
    error: str | None = None


# ---------------------------------------------------------------- the SavedModel


def resolve_saved_model(path: str) -> str:
    """The SavedModel folder of `path`: `path` itself when it holds saved_model.pb, else its
    highest integer version folder (TF Serving's layout). InputError otherwise."""
    from mfif_tf.image_io import InputError

    if not os.path.isdir(path):
        raise InputError(f"{path}: --saved_model is not a directory (export one with "
                         f"python -m export.export --export_dir=DIR --version=1)")
    if os.path.isfile(os.path.join(path, "saved_model.pb")):
        return path
    versions = sorted((int(d) for d in os.listdir(path) if d.isdigit()
                       and os.path.isfile(os.path.join(path, d, "saved_model.pb"))))
    if not versions:
        raise InputError(f"{path}: no SavedModel there (no saved_model.pb, nor a version "
                         f"folder holding one)")
    return os.path.join(path, str(versions[-1]))


def check_signature(saved_model_dir: str) -> None:
    """InputError unless the SavedModel has the `fuse_float_srr` signature (read from
    saved_model.pb, without loading the model)."""
    from tensorflow.core.protobuf import saved_model_pb2

    from mfif_tf.image_io import InputError

    proto = saved_model_pb2.SavedModel()
    try:
        with open(os.path.join(saved_model_dir, "saved_model.pb"), "rb") as f:
            proto.ParseFromString(f.read())
    except Exception as err:  # a damaged file
        raise InputError(f"{saved_model_dir}: cannot read saved_model.pb ({err})") from None
    names = {name for graph in proto.meta_graphs for name in graph.signature_def}
    if SIGNATURE not in names:
        raise InputError(f"{saved_model_dir}: the SavedModel has no {SIGNATURE} signature "
                         f"(has {', '.join(sorted(names)) or 'none'}); export it with "
                         f"python -m export.export")


def fuse_job(model: Any, job: FusionJob, min_size_fraction: float) -> FusedStack:
    """Fuses one job with a loaded SavedModel as `fuse_lib.fuse_files` fuses its files: the
    frames read one at a time into `stacking.fuse_frames` (the stack loop of `mfif-fuse`),
    each step's F_final from the SavedModel. A problem with the input gives
    `FusedStack(error=...)`."""
    import tensorflow as tf

    from mfif_tf import image_io, stacking
    from mfif_tf.image_io import InputError
    from mfif_tf.inference import to_unit_rgb

    signature = model.signatures[SIGNATURE]
    fraction = tf.constant(min_size_fraction, tf.float32)

    def pair_maps(image_a, image_b, progress, timings):
        # G sees the sources as `mfif-fuse` gives them: to_unit_rgb (grey tripled).
        start = time.perf_counter()
        out = signature(image_a=tf.constant(to_unit_rgb(image_a)[None]),
                        image_b=tf.constant(to_unit_rgb(image_b)[None]),
                        min_size_fraction=fraction)
        timings["network"] += time.perf_counter() - start
        return (out["focus_map_raw"].numpy()[0, :, :, 0], out["focus_map"].numpy()[0, :, :, 0],
                True)

    try:
        first = image_io.read_image(job.sources[0])
        if job.output:
            image_io.check_can_store(job.output, first.pixels)
        frames = itertools.chain([first.pixels],
                                 (image_io.read_image(p).pixels for p in job.sources[1:]))
        # Eq. 14 on the original pixels, index map k where F_final < 0.5.
        result = stacking.fuse_frames(frames, pair_maps, names=list(job.sources))
    except InputError as err:
        return FusedStack(error=str(err))
    except tf.errors.InvalidArgumentError as err:  # the graph's own input checks
        return FusedStack(error=f"{job.sources[0]}: {err.message.splitlines()[0]}")
    return FusedStack(result.fused, result.f_final, result.index_map, first.exif)


class SavedModelFuser(ModelHandler):
    """RunInference's model handler: loads the SavedModel once per worker process (Beam
    shares it between the worker's threads) and fuses one `FusionJob` per call (pairs and
    stacks have their own sizes, so jobs are not batched)."""

    def __init__(self, saved_model_dir: str, min_size_fraction: float):
        self._saved_model_dir = saved_model_dir
        self._min_size_fraction = float(min_size_fraction)

    def load_model(self) -> Any:
        import tensorflow as tf

        return tf.saved_model.load(self._saved_model_dir)

    def run_inference(self, batch: Sequence[FusionJob], model: Any,
                      inference_args: dict | None = None) -> Iterable[Any]:
        for job in batch:
            yield PredictionResult(job, fuse_job(model, job, self._min_size_fraction))

    def batch_elements_kwargs(self) -> dict:
        return {"max_batch_size": 1}

    def get_num_bytes(self, batch: Sequence[FusionJob]) -> int:
        return sum(os.path.getsize(p) for job in batch for p in job.sources
                   if os.path.isfile(p))

    def get_metrics_namespace(self) -> str:
        return METRICS


# ---------------------------------------------------------------- the pipeline's steps


def _failed(stem: str, message: str) -> None:
    beam.metrics.Metrics.counter(METRICS, "failed").inc()
    beam.metrics.Metrics.string_set(METRICS, "errors").add(f"{stem}: {message}")


def check_job(job: FusionJob, options: Any) -> Iterable[FusionJob]:
    """`fuse_lib.check_job` on the worker (readable sources, map formats); a failing job is
    reported, not fused."""
    from mfif_tf import fuse_lib
    from mfif_tf.image_io import InputError

    try:
        fuse_lib.check_job(job.sources, job.output, options, job.focus_map, job.index_map)
    except InputError as err:
        _failed(job.stem, str(err))
        return
    yield job


def write_outputs(result: Any, overwrite: bool, jpeg_quality: int) -> None:
    """Writes the fused image and the maps of one job, all or nothing."""
    from mfif_tf import fuse_lib, image_io
    from mfif_tf.image_io import InputError

    job, fused = result.example, result.inference
    if fused.error is not None:
        _failed(job.stem, fused.error)
        return
    try:
        with image_io.OutputSet(overwrite) as out:
            if job.output:
                out.add(job.output, fused.fused, fused.exif, jpeg_quality)
            if job.focus_map:
                out.add(job.focus_map, fuse_lib.focus_map_image(fused.f_final))
            if job.index_map:
                out.add(job.index_map, fused.index_map)
            out.commit()
    except InputError as err:
        _failed(job.stem, str(err))
        return
    beam.metrics.Metrics.counter(METRICS, "fused").inc()


def build_pipeline(pipeline: Any, jobs: list[FusionJob], saved_model_dir: str,
                   options: Any) -> None:
    """Adds the fusion of `jobs` to `pipeline`: check, RunInference, write. `options`: the
    `fuse_lib.FuseOptions` (overwrite, jpeg_quality, min_size_fraction)."""
    handler = SavedModelFuser(saved_model_dir, options.min_size_fraction)
    _ = (pipeline
         | "Items" >> beam.Create(jobs)
         | "Check" >> beam.FlatMap(check_job, options=options)
         | "Fuse" >> RunInference(handler)
         | "Write" >> beam.Map(write_outputs, overwrite=options.overwrite,
                               jpeg_quality=options.jpeg_quality))


# ---------------------------------------------------------------- command line


def parse_args(argv: Sequence[str]) -> tuple[argparse.Namespace, list[str]]:
    """Our flags, and the rest for Beam's PipelineOptions."""
    p = argparse.ArgumentParser(
        prog=PROG, description="Fuses a folder of pairs or stacks (A/, B/, C/, ... matched "
        "by stem, as mfif-fuse --input_dir) with an exported SavedModel on Apache Beam. "
        "Other arguments are Beam pipeline options.")
    p.add_argument("--input_dir", required=True, help="Folder with A/, B/ (C/, ...).")
    p.add_argument("--output_dir", required=True, help="Folder for the fused images.")
    p.add_argument("--saved_model", required=True,
                   help="SavedModel of `python -m export.export`: its version folder, or the "
                        "model folder (the highest version is used).")
    p.add_argument("--focus_map", help="Folder for F_final of the pairs (255 = first source).")
    p.add_argument("--index_map", help="Folder for the index maps (number of the source "
                                       "each pixel comes from).")
    p.add_argument("--output_format", choices=["png", "jpg", "tif"],
                   help="Output format (default: that of the files in A/).")
    p.add_argument("--skip_existing", action="store_true",
                   help="Keep the outputs that exist and fuse only the missing ones.")
    p.add_argument("--overwrite", action="store_true", help="Replace existing outputs.")
    p.add_argument("--jpeg_quality", type=int, default=95, help="Quality of JPEG outputs.")
    p.add_argument("--min_size_fraction", type=float, default=0.001,
                   help="SRR: regions below this fraction of W * H are removed (0.001).")
    p.add_argument("--runner", default="DirectRunner", help="Beam runner (DirectRunner).")
    p.add_argument("--direct_num_workers", type=int, default=1,
                   help="DirectRunner: worker processes (0: one per CPU core).")
    return p.parse_known_args(list(argv))


def pipeline_options(args: argparse.Namespace, beam_args: list[str]) -> Any:
    """Beam PipelineOptions: the runner, DirectRunner's workers (in processes when more than
    one), the quiet SDK harness log level, then `beam_args` (which win)."""
    from apache_beam.options.pipeline_options import PipelineOptions

    flags = [f"--runner={args.runner}"]
    if args.runner == "DirectRunner":
        flags.append(f"--direct_num_workers={args.direct_num_workers}")
        if args.direct_num_workers != 1:
            flags.append("--direct_running_mode=multi_processing")
    flags.append("--default_sdk_harness_log_level=WARNING")
    return PipelineOptions(flags + beam_args)


def _plan(args: argparse.Namespace):
    """(jobs to run, stems whose outputs all exist, FuseOptions, SavedModel folder), after
    every check that needs no pixels; creates the output folders."""
    from mfif_tf import fuse_lib
    from mfif_tf.image_io import InputError

    if args.direct_num_workers < 0:
        raise InputError(f"--direct_num_workers must be >= 0, got {args.direct_num_workers}")
    options = fuse_lib.FuseOptions(min_size_fraction=args.min_size_fraction,
                                   overwrite=args.overwrite, skip_existing=args.skip_existing,
                                   jpeg_quality=args.jpeg_quality, progress=False)
    items = fuse_lib.plan_batch(args.input_dir, args.output_dir, options, args.output_format,
                                args.focus_map, args.index_map)
    saved_model_dir = resolve_saved_model(args.saved_model)
    check_signature(saved_model_dir)
    fuse_lib.prepare_output_folders((args.output_dir, args.focus_map, args.index_map))
    jobs = [FusionJob(i.stem, i.sources, i.output, i.focus_map, i.index_map)
            for i in items if i.pending]
    skipped = [i.stem for i in items if not i.pending]
    return jobs, skipped, options, saved_model_dir


def run_pipeline(jobs: list[FusionJob], saved_model_dir: str, options: Any,
                 beam_options: Any) -> tuple[int, list[str]]:
    """Runs the fusion of `jobs`; returns (items fused, "stem: message" of each failure)."""
    from apache_beam.metrics.metric import MetricsFilter

    pipeline = beam.Pipeline(options=beam_options)
    build_pipeline(pipeline, jobs, saved_model_dir, options)
    result = pipeline.run()
    result.wait_until_finish()
    metrics = result.metrics().query(MetricsFilter().with_namespace(METRICS))
    fused = sum(m.committed or 0 for m in metrics["counters"] if m.key.metric.name == "fused")
    errors = sorted({e for m in metrics.get("string_sets", [])
                     if m.key.metric.name == "errors" for e in (m.committed or ())})
    return fused, errors


def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    args, beam_args = parse_args(sys.argv[1:] if argv is None else argv)
    from mfif_tf.cli import fail, quiet_native_stderr

    if beam is None:
        fail("apache-beam is not installed: pip install -e \".[beam]\"", PROG)
    from mfif_tf.image_io import InputError

    logging.getLogger("apache_beam").setLevel(logging.WARNING)
    with quiet_native_stderr():
        import tensorflow  # noqa: F401 (its start-up lines are not ours to show)
    try:
        jobs, skipped, options, saved_model_dir = _plan(args)
        beam_options = pipeline_options(args, beam_args)
    except InputError as err:
        fail(str(err), PROG)
    kept = f", {len(skipped)} skipped (outputs exist)" if args.skip_existing else ""
    if not jobs:
        print(f"0 fused into {args.output_dir}{kept}, 0 failed")
        return 0
    print(f"{PROG}: fusing {len(jobs)} items with {saved_model_dir} on {args.runner}",
          file=sys.stderr, flush=True)
    start = time.perf_counter()
    try:
        fused, errors = run_pipeline(jobs, saved_model_dir, options, beam_options)
    except Exception as err:  # the runner's own failure (workers lost, bad options)
        detail = str(err).strip().splitlines()
        fail(f"the pipeline failed: {detail[0] if detail else type(err).__name__}", PROG)
    seconds = time.perf_counter() - start
    for message in errors:
        print(f"{PROG}: error: {message}", file=sys.stderr)
    failed = max(len(errors), len(jobs) - fused)
    print(f"{fused} fused into {args.output_dir}{kept}, {failed} failed "
          f"({seconds:.1f} s, {fused / seconds:.2f} items/s)")
    return 2 if failed else 0


def run() -> None:
    sys.exit(main())


if __name__ == "__main__":
    # Run the module under its own name: workers unpickle `FusionJob` and the handler from
    # `export.beam_fuse`, not from `__main__`.
    from export import beam_fuse

    beam_fuse.run()
