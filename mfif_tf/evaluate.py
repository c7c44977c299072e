"""Evaluates fused images with the twelve metrics of Table 1 (and Table 2 timings, Fig. 6).

  python -m mfif_tf.evaluate --dataset_dir DIR --fused_dir F1 [--fused_dir F2 ...]
  python -m mfif_tf.evaluate --dataset_dir DIR --model default
  python -m mfif_tf.evaluate --dataset_dir DIR --focus_map_dir MAPS --output_dir OUT

DIR holds A/ and B/ (and optionally GT/) paired by file stem; fused images and focus maps
are matched by stem. Prints a Table-1-style markdown table; with --output_dir also writes
results.json, table.md, means.csv and per_image_<method>.csv (or the diffusion.* files).
"""

from __future__ import annotations

import sys

from absl import app, flags

from mfif_tf import evaluate_lib
from mfif_tf import metrics as metrics_lib
from mfif_tf.scales import parse_scales

FLAGS = flags.FLAGS

flags.DEFINE_string("dataset_dir", None, "Folder with A/, B/ and optionally GT/.")
flags.DEFINE_multi_string("fused_dir", [], "Folder of fused images; repeat to compare methods.")
flags.DEFINE_multi_string("name", [], "Names of the --fused_dir methods (default: folder names).")
flags.DEFINE_string("model", None, "Fuse the dataset first with our model: a path or 'default'.")
flags.DEFINE_bool("srr", True, "With --model: apply small region removal (section 3.3).")
flags.DEFINE_bool("flips", False, "With --model: average F_hat over the inputs mirrored "
                  "left-right and top-bottom (test-time augmentation, 3x network time).")
flags.DEFINE_string("scales", "1,0.5", "With --model: F_hat is the mean of the network's maps "
                    "at these scales (1/k for integer k); 1 is the paper's single pass.")
flags.DEFINE_string("focus_map_dir", None,
                    "Binary F_final maps by stem: run the diffusion/contraction study (Fig. 6).")
flags.DEFINE_integer("max_diffusion", 10, "Diffusion study: k runs from -N to N pixels.")
flags.DEFINE_enum("element", "disk", ["disk", "square"], "Diffusion study: structuring element.")
flags.DEFINE_enum("convention", "paper", list(metrics_lib.CONVENTIONS),
                  "paper: as the paper ran the MATLAB toolbox (compare with Table 1); "
                  "luminance: every metric on the luminance.")
flags.DEFINE_list("metrics", [], "Subset of metrics (default: all). Known: "
                  + ",".join(metrics_lib.METRIC_NAMES + metrics_lib.REFERENCE_METRIC_NAMES))
flags.DEFINE_string("output_dir", "", "Where to write JSON/CSV/markdown (fused PNGs with --model).")
flags.DEFINE_bool("overwrite", False, "Replace existing result files in --output_dir.")
flags.DEFINE_bool("per_image", True, "Print the per-image tables too.")
flags.DEFINE_bool("progress", True, "Progress bar on stderr.")


def _config() -> evaluate_lib.EvalConfig:
    known = metrics_lib.METRIC_NAMES + metrics_lib.REFERENCE_METRIC_NAMES
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
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    modes = sum(bool(x) for x in (FLAGS.fused_dir, FLAGS.model, FLAGS.focus_map_dir))
    if not FLAGS.dataset_dir or modes != 1:
        raise app.UsageError(
            "give --dataset_dir and exactly one of --fused_dir, --model, --focus_map_dir"
        )
    try:
        config = _config()
        if FLAGS.focus_map_dir:
            pairs = evaluate_lib.find_pairs(config.dataset_dir)
            ks = range(-FLAGS.max_diffusion, FLAGS.max_diffusion + 1)
            maps = evaluate_lib.maps_from_dir(FLAGS.focus_map_dir, pairs)
            _, text = evaluate_lib.diffusion_study(config, maps, ks, FLAGS.element)
            print(text)
            return 0
        if FLAGS.model:
            try:
                scales = parse_scales(FLAGS.scales)
            except ValueError as err:
                raise evaluate_lib.EvaluationError(f"--scales: {err}") from None
            fuse_fn = evaluate_lib.model_fuse_fn(FLAGS.model, srr=FLAGS.srr, flips=FLAGS.flips,
                                                   scales=scales)
            settings = (f"model {FLAGS.model}, scales {','.join(f'{x:g}' for x in scales)}, "
                        f"flips {'on' if FLAGS.flips else 'off'}, "
                        f"SRR {'on' if FLAGS.srr else 'off'}")
            results = [evaluate_lib.evaluate_fn(config, fuse_fn, name="model", source=settings)]
        else:
            results = evaluate_lib.evaluate_dirs(config, FLAGS.fused_dir, FLAGS.name or None)
        text = evaluate_lib.results_markdown(results, config.convention, FLAGS.per_image)
        print(text)
        if config.output_dir:
            for path in evaluate_lib.write_outputs(config, results, text):
                print(f"wrote {path}", file=sys.stderr)
    except evaluate_lib.EvaluationError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


def run() -> None:
    """Console-script entry point (mfif-evaluate)."""
    app.run(main)


if __name__ == "__main__":
    run()
