"""Evaluates fused images with the twelve metrics of Table 1 (and Table 2 timings, Fig. 6).

  python -m mfif_tf.evaluate --dataset_dir DIR --fused_dir F1 [--fused_map_dir M1] \
      [--fused_dir F2 [--fused_map_dir M2] ...]
  python -m mfif_tf.evaluate --dataset_dir DIR --model default [--classical] [--fused_dir F1]
  python -m mfif_tf.evaluate --dataset_dir DIR --focus_map_dir MAPS --output_dir OUT

DIR holds A/ and B/ (and optionally GT/, the all-in-focus image, and MAP/, the true focus
map) paired by file stem; fused images and focus maps are matched by stem. --model, --classical
and --fused_dir can be combined into one table. Prints a Table-1-style markdown table; with
--output_dir also writes results.json, table.md, means.csv and per_image_<method>.csv (or the
diffusion.* files). Bad input gives a one-line error and exit code 2.
"""

from __future__ import annotations

import os
import sys

from absl import app, flags

from mfif_tf import common, evaluate_lib
from mfif_tf.cli import fail, parse_flags, quiet_native_stderr
from mfif_tf import metrics as metrics_lib
from mfif_tf.scales import parse_scales

FLAGS = flags.FLAGS

flags.DEFINE_string("dataset_dir", None, "Folder with A/, B/ and optionally GT/ (all-in-focus "
                    "image) and MAP/ (true focus map, white where A is in focus); with GT/, "
                    "further frames in C/, D/, ... make each stem a focus stack, fused whole.")
flags.DEFINE_multi_string("fused_dir", [], "Folder of fused images; repeat to compare methods.")
flags.DEFINE_multi_string("name", [], "Names of the --fused_dir methods (default: folder names).")
flags.DEFINE_multi_string("fused_map_dir", [],
                          "Focus maps F_final of the --fused_dir methods by stem, one per "
                          "--fused_dir in order ('' for none); scored against DIR/MAP/.")
flags.DEFINE_string("model", None, "Fuse the dataset first with our model: a path, 'default', "
                    "'small' or 'six_branch'.")
flags.DEFINE_bool("classical", False, "Also fuse the dataset with the classical baseline "
                  "(sum-modified-Laplacian, SRR, eq. 14; mfif_tf.classical), method 'classical'.")
flags.DEFINE_bool("srr", True, "With --model or --classical: apply small region removal "
                  "(section 3.3).")
flags.DEFINE_bool("flips", False, "With --model: average F_hat over the inputs mirrored "
                  "left-right and top-bottom (test-time augmentation, 3x network time).")
flags.DEFINE_enum("mode", common.DEFAULT_MODE, list(common.MODES),
                  "With --model: refined (default: G at full resolution, its outline "
                  "redrawn on the pixels by the refinement head), paper (G at full "
                  "resolution, one pass) or coarse_to_fine (G at the working resolution, the "
                  "refinement head up to full resolution).")
flags.DEFINE_integer("working_side", common.DEFAULT_WORKING_SIDE,
                     "With --model, coarse_to_fine: shorter side of G's "
                     "working resolution in pixels (never enlarged).")
flags.DEFINE_integer("g_side", common.DEFAULT_G_SIDE,
                     "With --model, refined: the largest shorter side G runs "
                     "at; sources above 3/4 of it are box-averaged by a power of two first "
                     "(0: G at full size).")
flags.DEFINE_float("measure_ratio", common.MEASURE_RATIO,
                   "With --model, refined: the focus-measure check "
                   "of the network's outline, over windows on box means, pixels and the "
                   "outline's unsure pixels at any size (0: off; mfif-fuse --measure_ratio).")
flags.DEFINE_string("refiner", None, "With --model, refined/coarse_to_fine: folder of the "
                    "refinement "
                    "head (default: the one beside --model, else the packaged one).")
flags.DEFINE_string("scales", None, "With --model --mode=refined/paper: G's map is the mean "
                    "of the "
                    "network's maps at these scales (1/k for integer k); default 1, the paper's "
                    "single pass.")
flags.DEFINE_enum("precision", "float32", ["float32", "bfloat16"],
                  "With --model: what G computes in, float32 (default, scores independent "
                  "of the CPU) or bfloat16 (float32 weights, bfloat16 arithmetic; faster on "
                  "CPUs with bfloat16 units). The refinement head, SRR and the fusion stay "
                  "float32.")
flags.DEFINE_string("focus_map_dir", None,
                    "Binary F_final maps by stem: run the diffusion/contraction study (Fig. 6).")
flags.DEFINE_integer("max_diffusion", 10, "Diffusion study: k runs from -N to N pixels.")
flags.DEFINE_enum("element", "disk", ["disk", "square"], "Diffusion study: structuring element.")
flags.DEFINE_enum("convention", "paper", list(metrics_lib.CONVENTIONS),
                  "paper: as the paper ran the MATLAB toolbox (compare with Table 1); "
                  "luminance: every metric on the luminance.")
flags.DEFINE_list("metrics", [], "Subset of metrics (default: all). Known: "
                  + ",".join(metrics_lib.ALL_METRIC_NAMES))
flags.DEFINE_string("output_dir", "", "Where to write JSON/CSV/markdown (fused PNGs with --model "
                    "in fused/, with --classical in fused_classical/).")
flags.DEFINE_bool("overwrite", False, "Replace existing result files in --output_dir.")
flags.DEFINE_bool("per_image", True, "Print the per-image tables too.")
flags.DEFINE_bool("progress", True, "Progress bar on stderr.")


def _config() -> evaluate_lib.EvalConfig:
    known = metrics_lib.ALL_METRIC_NAMES
    unknown = [m for m in FLAGS.metrics if m not in known]
    if unknown:
        raise evaluate_lib.EvaluationError(
            f"unknown --metrics {unknown}; known: {', '.join(known)}"
        )
    return evaluate_lib.EvalConfig(
        dataset_dir=FLAGS.dataset_dir,
        convention=FLAGS.convention,
        metrics=tuple(FLAGS.metrics) or known,
        output_dir=FLAGS.output_dir,
        overwrite=FLAGS.overwrite,
        progress=FLAGS.progress,
    )


def main(argv: list[str]) -> int:
    if len(argv) > 1:
        fail(f"unexpected arguments: {' '.join(argv[1:])}")
    methods = bool(FLAGS.fused_dir or FLAGS.model or FLAGS.classical)
    if not FLAGS.dataset_dir or methods == bool(FLAGS.focus_map_dir):
        fail("give --dataset_dir and either --focus_map_dir or any of --fused_dir, --model, "
             "--classical")
    try:
        config = _config()
        unused = evaluate_lib.unused_source_folders(config.dataset_dir)
        further = evaluate_lib.further_source_folders(config.dataset_dir)
        if further and not unused and not FLAGS.focus_map_dir:
            print(f"note: {config.dataset_dir} holds focus stacks (A/, B/, "
                  f"{', '.join(further)}) and GT/: each stack is fused whole and scored "
                  f"against GT/ (and MAP/: where the first frame is taken); the twelve "
                  f"no-reference metrics are defined for two sources and are left out",
                  file=sys.stderr)
        if unused:
            print(f"note: {config.dataset_dir} also holds {', '.join(unused)}: each stem is "
                  f"scored as the pair A/ + B/ (the metrics are defined for two sources), so "
                  f"{', '.join(unused)} {'is' if len(unused) == 1 else 'are'} not used; "
                  f"mfif-fuse fuses the whole stack", file=sys.stderr)
        if FLAGS.focus_map_dir:
            pairs = evaluate_lib.find_pairs(config.dataset_dir)
            ks = range(-FLAGS.max_diffusion, FLAGS.max_diffusion + 1)
            maps = evaluate_lib.maps_from_dir(FLAGS.focus_map_dir, pairs)
            _, text = evaluate_lib.diffusion_study(config, maps, ks, FLAGS.element)
            print(text)
            return 0
        if FLAGS.fused_map_dir and len(FLAGS.fused_map_dir) != len(FLAGS.fused_dir):
            raise evaluate_lib.EvaluationError(
                f"{len(FLAGS.fused_map_dir)} --fused_map_dir given for "
                f"{len(FLAGS.fused_dir)} --fused_dir; give one per --fused_dir ('' for none)")
        functions = []
        if FLAGS.model:
            # Checked before TensorFlow loads, so that a bad flag is one line.
            try:
                scales = parse_scales(FLAGS.scales or "1")
            except ValueError as err:
                raise evaluate_lib.EvaluationError(str(err)) from None
            if FLAGS.mode == "coarse_to_fine" and scales != (1.0,):
                raise evaluate_lib.EvaluationError(
                    "scales apply to modes 'refined' and 'paper' (coarse-to-fine runs G "
                    "once, at the working resolution)")
            evaluate_lib.check_output_dir(config)
            # TensorFlow's C++ runtime prints notes while it loads; they are not ours to show.
            with quiet_native_stderr():
                import tensorflow as tf  # pylint: disable=import-outside-toplevel

                tf.config.list_logical_devices("CPU")
            fuse_fn = evaluate_lib.model_fuse_fn(
                FLAGS.model, srr=FLAGS.srr, flips=FLAGS.flips, scales=FLAGS.scales,
                mode=FLAGS.mode, working_side=FLAGS.working_side, refiner=FLAGS.refiner,
                precision=FLAGS.precision, g_side=FLAGS.g_side,
                measure_ratio=FLAGS.measure_ratio)
            if FLAGS.mode == "paper":
                scales = parse_scales(FLAGS.scales or "1")
                detail = f"scales {','.join(f'{x:g}' for x in scales)}"
            elif FLAGS.mode == "refined":
                scales = parse_scales(FLAGS.scales or "1")
                detail = (f"scales {','.join(f'{x:g}' for x in scales)}, refiner "
                          f"{FLAGS.refiner or 'default'}, g_side {FLAGS.g_side}")
            else:
                detail = (f"working side {FLAGS.working_side}, refiner "
                          f"{FLAGS.refiner or 'default'}")
            settings = (f"model {FLAGS.model}, mode {FLAGS.mode}, {detail}, "
                        f"flips {'on' if FLAGS.flips else 'off'}, "
                        f"SRR {'on' if FLAGS.srr else 'off'}"
                        + (f", precision {FLAGS.precision}"
                           if FLAGS.precision != "float32" else ""))
            functions.append(evaluate_lib.FnMethod("model", fuse_fn, settings, "fused"))
        if FLAGS.classical:
            fuse_fn = evaluate_lib.classical_fuse_fn(srr=FLAGS.srr)
            settings = (f"classical sum-modified-Laplacian (mfif_tf.classical defaults), "
                        f"SRR {'on' if FLAGS.srr else 'off'}")
            functions.append(
                evaluate_lib.FnMethod("classical", fuse_fn, settings, "fused_classical"))
        results = evaluate_lib.evaluate_all(config, functions, FLAGS.fused_dir,
                                            FLAGS.name or None, FLAGS.fused_map_dir or None)
        text = evaluate_lib.results_markdown(results, config.convention, FLAGS.per_image)
        print(text)
        if config.output_dir:
            for path in evaluate_lib.write_outputs(config, results, text):
                print(f"wrote {path}", file=sys.stderr)
    except evaluate_lib.EvaluationError as err:
        fail(str(err))
    return 0


def run() -> None:
    """Console-script entry point (mfif-evaluate)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    app.run(main, flags_parser=parse_flags)


if __name__ == "__main__":
    run()
