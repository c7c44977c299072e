"""Measures an export: latency of the SavedModel and of every TFLite model on one pair, the
F_final agreement of each TFLite model with the SavedModel, and file sizes.

  python -m export.measure --weights=default --image_a=A.jpg --image_b=B.jpg --threads=1

Without --image_a/--image_b a synthetic 520x520 pair is used (export/compare.py). Prints a
markdown table (and writes it as JSON with --json_out).
"""

from __future__ import annotations

import dataclasses
import json
import tempfile

from absl import app, flags

from mfif_tf.cli import fail, parse_flags

FLAGS = flags.FLAGS

flags.DEFINE_string("weights", "default",
                    "Model directory or training work dir of G; 'default' is the packaged model.")
flags.DEFINE_string("image_a", "", "First source I_A (any format PIL reads).")
flags.DEFINE_string("image_b", "", "Second source I_B, same size as I_A.")
flags.DEFINE_integer("synthetic_size", 520, "Side of the synthetic pair without images.")
flags.DEFINE_string("workdir", "", "Where the export is written (default: a temporary folder).")
flags.DEFINE_integer("repeats", 5, "Timed runs per model (after one warm-up run).")
flags.DEFINE_integer("threads", 1, "TF intra-op threads and LiteRT threads (0: defaults).")
flags.DEFINE_integer("fixed_size", 512, "Side of the fixed-size TFLite models.")
flags.DEFINE_string("scales", "1", "G's passes built into the graphs (1/k scales; 1 is the "
                    "paper's single pass, 1,0.5 adds a half-resolution pass).")
flags.DEFINE_string("json_out", "", "Also write the rows as JSON to this file.")
flags.DEFINE_enum("mode", "refined", ["refined", "paper", "coarse_to_fine"],
                  "Fusion mode built into the graphs (as for mfif_tf.fuse).")
flags.DEFINE_string("refiner", None, "Modes refined and coarse_to_fine: folder of the refinement "
                    "head (default: the packaged one).")




def _read_rgb(path: str):
    import numpy as np
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"))
    except FileNotFoundError:
        fail(f"image not found: {path}")
    except (UnidentifiedImageError, OSError) as e:
        fail(f"cannot read image {path}: {e}")


def main(argv) -> None:
    if len(argv) > 1:
        fail(f"unexpected arguments: {' '.join(argv[1:])}")
    if bool(FLAGS.image_a) != bool(FLAGS.image_b):
        fail("give both --image_a and --image_b, or neither (synthetic pair)")
    from mfif_tf.scales import parse_scales

    try:
        scales = parse_scales(FLAGS.scales)
    except ValueError as e:
        fail(f"--scales: {e}")
    import tensorflow as tf

    if FLAGS.threads > 0:
        tf.config.threading.set_intra_op_parallelism_threads(FLAGS.threads)
        tf.config.threading.set_inter_op_parallelism_threads(FLAGS.threads)
    from export import compare
    from mfif_tf.model_io import ModelNotFoundError, load_generator

    if FLAGS.image_a:
        image_a, image_b = _read_rgb(FLAGS.image_a), _read_rgb(FLAGS.image_b)
        if image_a.shape != image_b.shape:
            fail(f"--image_a is {image_a.shape[1]}x{image_a.shape[0]} but --image_b is "
                  f"{image_b.shape[1]}x{image_b.shape[0]}; the sources must have the same size")
    else:
        size = FLAGS.synthetic_size
        a, b, _ = compare.synthetic_pair(size, size)
        image_a, image_b = compare.to_uint8(a), compare.to_uint8(b)
    try:
        generator = load_generator(FLAGS.weights)
    except ModelNotFoundError as e:
        fail(f"--weights={FLAGS.weights}: {e}".replace("pass --model", "pass --weights"))
    refiner = None
    if FLAGS.mode != "paper":
        from mfif_tf import fusion

        try:
            refiner = fusion.resolve_refiner(FLAGS.refiner)
        except (fusion.InputError, ModelNotFoundError) as e:
            fail(f"--refiner: {e}")
    with tempfile.TemporaryDirectory() as tmp:
        try:
            rows = compare.benchmark_export(
                generator, image_a, image_b, FLAGS.workdir or tmp, repeats=FLAGS.repeats,
                threads=FLAGS.threads or None, fixed_size=FLAGS.fixed_size,
                scales=scales, mode=FLAGS.mode, refiner=refiner)
        except FileExistsError as e:
            fail(f"{e} (give a new --workdir)")
    print(compare.format_rows(rows))
    if FLAGS.json_out:
        with open(FLAGS.json_out, "w") as f:
            json.dump([dataclasses.asdict(r) for r in rows], f, indent=2)


def run() -> None:
    app.run(main, flags_parser=parse_flags)


if __name__ == "__main__":
    run()
