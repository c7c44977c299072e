"""Measures an export: latency of the SavedModel and of every TFLite model on one pair, the
F_final agreement of each TFLite model with the SavedModel, and file sizes.

  python -m export.measure --weights=default --image_a=A.jpg --image_b=B.jpg --threads=1

Without --image_a/--image_b a synthetic 520x520 pair is used (export/compare.py). With
--representative_dir the full-integer models (int8_full, calibrated on pairs synthesised from
that mask folder, as `export.export --tflite_representative_dir` makes them) are measured too.
Prints a markdown table (and writes it as JSON with --json_out).
"""

from __future__ import annotations

import dataclasses
import json
import tempfile

from absl import app, flags

from mfif_tf.cli import fail, parse_flags

FLAGS = flags.FLAGS

flags.DEFINE_string("weights", "default",
                    "Model directory or training work dir of G; 'default' is the packaged model, "
                    "'small' and 'six_branch' the other packaged Gs.")
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
flags.DEFINE_string("representative_dir", "",
                    "Also measure the full-integer models (int8_full), calibrated on pairs "
                    "synthesised from this folder of images/ + masks/ (+ train.txt).")
flags.DEFINE_integer("representative_pairs", 32, "int8_full: number of synthetic pairs.")




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
    if FLAGS.representative_dir:
        if FLAGS.representative_pairs < 1:
            fail(f"--representative_pairs must be at least 1, got {FLAGS.representative_pairs}")
        from export.config import check_representative_dir

        try:
            check_representative_dir(FLAGS.representative_dir)
        except ValueError as e:
            fail(str(e).replace("--tflite_representative_dir", "--representative_dir"))
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
            if FLAGS.representative_dir:
                rows += full_integer_rows(generator, refiner, image_a, image_b,
                                          FLAGS.workdir or tmp, scales)
        except FileExistsError as e:
            fail(f"{e} (give a new --workdir)")
    print(compare.format_rows(rows))
    if FLAGS.json_out:
        with open(FLAGS.json_out, "w") as f:
            json.dump([dataclasses.asdict(r) for r in rows], f, indent=2)


def full_integer_rows(generator, refiner, image_a, image_b, workdir: str,
                      scales) -> list:
    """Rows of `compare.benchmark_export`'s table for the int8_full models, written beside
    the export that `benchmark_export` left in `workdir` and compared with its SavedModel on
    the same inputs (the fixed-size models on the pair resized to --fixed_size)."""
    import os

    import numpy as np
    import tensorflow as tf

    from export import compare, export_lib
    from export.tflite import FULL_INTEGER, TFLiteConfig, TFLiteFuser, export_tflite

    config = TFLiteConfig(fixed_size=FLAGS.fixed_size, quantizations=(FULL_INTEGER,),
                          representative_dir=FLAGS.representative_dir,
                          representative_pairs=FLAGS.representative_pairs, scales=scales,
                          mode=FLAGS.mode)
    directory = os.path.join(workdir, "tflite_" + FULL_INTEGER)
    if os.path.exists(directory):
        raise FileExistsError(f"{directory} already exists")
    paths = export_tflite(generator, directory, config, refiner)
    saved_model = export_lib.ExportConfig(export_dir=workdir, version=1).saved_model_dir
    signature = tf.saved_model.load(saved_model).signatures["serving_default"]

    def resized(image: np.ndarray) -> np.ndarray:  # as benchmark_export resizes
        out = tf.image.resize(image.astype(np.float32), [FLAGS.fixed_size] * 2, "bilinear")
        return np.clip(np.round(out.numpy()), 0, 255).astype(np.uint8)

    pairs = {"dynamic": (image_a, image_b), "fixed": (resized(image_a), resized(image_b))}
    rows = []
    for name, path in sorted(paths.items()):
        a, b = pairs["dynamic" if "dynamic" in name else "fixed"]
        ref = {k: v.numpy()[0] for k, v in signature(image_a=tf.constant(a[None]),
                                                     image_b=tf.constant(b[None])).items()}
        a01, b01 = a.astype(np.float32) / 255.0, b.astype(np.float32) / 255.0
        fuser = TFLiteFuser(path, num_threads=FLAGS.threads or None)
        out = {k: v[0] for k, v in fuser(a01, b01).items()}
        rows.append(compare.BenchmarkRow(
            name, os.path.getsize(path), a.shape[:2],
            compare.time_call(lambda: fuser(a01, b01), FLAGS.repeats),
            agreement=compare.agreement(out["focus_map"], ref["focus_map"]),
            max_raw_diff=float(np.abs(out["focus_map_raw"] - ref["focus_map_raw"]).max()),
            max_fused_diff=float(np.abs(out["fused"] * 255.0 - ref["fused"]).max())))
    return rows


def run() -> None:
    app.run(main, flags_parser=parse_flags)


if __name__ == "__main__":
    run()
