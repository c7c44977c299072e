"""Runs the benchmark suite, prints markdown tables and writes (or resumes) a JSON file.

  python -m benchmarks.run [--quick] [--sections=fusion,stack] [--out=results.json] [--force]
      [--methods=refined,enfuse] [--model=DIR] [--refiner=DIR] [--lytro_dir=DIR]
      [--train_dir=DIR] [--threads=N] [--stack_size=WxH]

Sections: flops, srr, fusion, whole_process, stack, formats, quality, pipeline, training (all
by default). The fusion, stack and quality sections compare the methods refined (the default
fuse_arrays call, and the reference of the ratios besides enfuse), coarse_to_fine, paper,
paper_two_scales, classical and enfuse; whole_process times `python -m mfif_tf.fuse` (mode
refined) against enfuse as processes. Configurations already in --out are kept and skipped;
--force measures the selected sections again. --quick stops at 2 megapixels and leaves out
the paper modes' stacks and paper-size training.
See docs/benchmarks.md for what each section measures.
"""

from __future__ import annotations

import os
import sys

from absl import app, flags

from benchmarks import report, suite

FLAGS = flags.FLAGS

flags.DEFINE_string("out", "benchmarks/results.json", "Results JSON (resumed when it exists).")
flags.DEFINE_list("sections", list(suite.SECTIONS), "Sections to run: "
                  + ", ".join(suite.SECTIONS) + ".")
flags.DEFINE_bool("quick", False, "Fusion sizes up to 2 MP; no stacks in the paper modes; "
                  "no paper-size training.")
flags.DEFINE_bool("force", False, "Measure the selected sections again.")
flags.DEFINE_list("sizes", [], "Fusion sizes: 0.27MP, 2MP, 12MP, 24MP or WIDTHxHEIGHT "
                  "(default: all four, the first two with --quick).")
flags.DEFINE_list("methods", list(suite.methods_lib.METHODS), "Methods of the fusion, stack "
                  "and quality sections (the whole-process section runs "
                  + " and ".join(suite.methods_lib.PROCESS_METHODS) + " among them; ratios are "
                  f"given to {suite.methods_lib.REFERENCE} and enfuse): "
                  + ", ".join(suite.methods_lib.METHODS) + ".")
flags.DEFINE_string("refiner", "", "Refinement head R for refined and coarse_to_fine (a folder "
                    "with refiner.weights.h5); default: the one beside --model, else the "
                    "packaged one.")
flags.DEFINE_integer("working_side", 0, "coarse_to_fine's working side in pixels (0: the "
                     "fuse_arrays default).")
flags.DEFINE_list("presets", ["compact", "paper"], "Generator presets of the flops and "
                  "training sections (random weights).")
flags.DEFINE_string("stack_size", suite.STACK_SIZE, "Frame size of the stack section "
                    "(WIDTHxHEIGHT or 0.27MP, 2MP, 12MP, 24MP).")
flags.DEFINE_list("stack_depths", ["3", "6", "10"], "Frames N of the stack section.")
flags.DEFINE_integer("repeats", 5, "Timed runs per configuration at most (median reported).")
flags.DEFINE_float("budget", 120.0, "Seconds of timed runs per configuration before no new "
                   "run starts (at least one always runs).")
flags.DEFINE_integer("threads", 0, "CPU threads for TensorFlow, LiteRT and enfuse (0: all).")
flags.DEFINE_string("model", "", "Trained G (model dir or training work dir) for every "
                    "section that fuses; default: the packaged model.")
flags.DEFINE_string("lytro_dir", "", "Lytro pairs (A/, B/) for the quality section; "
                    "empty skips it.")
flags.DEFINE_string("train_dir", "", "images/ + masks/ folder for the input-pipeline section "
                    "(the embedded source is always measured).")
flags.DEFINE_bool("enfuse", True, "Include enfuse when it is installed.")
flags.DEFINE_float("timeout", 4 * 3600.0, "Seconds after which a configuration is stopped.")
flags.DEFINE_integer("train_image_size", 0, "Override every training size (0: the paper's 256 "
                     "and the shipped model's 128); for a quick check of the machinery.")
flags.DEFINE_float("cpu_ghz", None, "Clock for the peak estimate (default: from /proc/cpuinfo).")
flags.DEFINE_integer("flops_per_cycle", None, "FP32 FLOPs per cycle per core for the peak "
                     "estimate (default: from the CPU family).")
flags.DEFINE_string("markdown_out", "", "Also write the tables to this file (must not exist).")


def _fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def _parse(argv):
    try:
        return FLAGS(argv)
    except flags.Error as err:
        _fail(str(err))


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        _fail(f"unexpected arguments: {' '.join(argv[1:])}")
    try:
        depths = tuple(int(n) for n in FLAGS.stack_depths)
    except ValueError:
        _fail(f"--stack_depths must be integers, got {','.join(FLAGS.stack_depths)}")
    if FLAGS.markdown_out and os.path.exists(FLAGS.markdown_out):
        _fail(f"--markdown_out {FLAGS.markdown_out} exists; choose a new file")
    config = suite.SuiteConfig(
        out=FLAGS.out, sections=tuple(FLAGS.sections), quick=FLAGS.quick, force=FLAGS.force,
        sizes=tuple(FLAGS.sizes), presets=tuple(FLAGS.presets), methods=tuple(FLAGS.methods),
        refiner=FLAGS.refiner, working_side=FLAGS.working_side, stack_size=FLAGS.stack_size,
        stack_depths=depths,
        repeats=FLAGS.repeats, budget_s=FLAGS.budget, threads=FLAGS.threads, model=FLAGS.model,
        lytro_dir=FLAGS.lytro_dir, train_dir=FLAGS.train_dir, enfuse=FLAGS.enfuse,
        timeout_s=FLAGS.timeout, train_image_size=FLAGS.train_image_size, ghz=FLAGS.cpu_ghz,
        flops_per_cycle=FLAGS.flops_per_cycle)
    try:
        results = suite.run_suite(config)
    except suite.SuiteError as err:
        _fail(str(err))
    except KeyboardInterrupt:
        _fail(f"interrupted; finished configurations are kept in {config.out}")
    text = report.markdown(results)
    print(text)
    if FLAGS.markdown_out:
        with open(FLAGS.markdown_out, "x") as f:
            f.write(text)
    print(f"wrote {config.out}", file=sys.stderr)


def run() -> None:
    app.run(main, flags_parser=_parse)


if __name__ == "__main__":
    run()
