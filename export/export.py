"""Exports MFIF-GAN for TF Serving (and TFLite):

  python -m export.export --weights=default --export_dir=exports --model_name=mfif --version=1
      [--mode=refined|paper|coarse_to_fine] [--working_side=448] [--refiner=DIR] [--scales=1]
      [--precision=float32|bfloat16] [--overwrite] [--tflite] [--tflite_fixed_size=512]
      [--tflite_quantizations=float32,float16,int8,int8_full --tflite_representative_dir=DIR]

writes exports/mfif/1/ (SavedModel), exports/models.config and, with --tflite,
exports/tflite/mfif/1/*.tflite. See docs/serving.md.
"""

from __future__ import annotations


from absl import app, flags

from mfif_tf import common
from mfif_tf.cli import fail, parse_flags, quiet_native_stderr

FLAGS = flags.FLAGS

flags.DEFINE_string("weights", "default",
                    "Model directory or training work dir of G; 'default' is the packaged model, "
                    "'small' and 'six_branch' the other packaged Gs.")
flags.DEFINE_string("export_dir", None, "Root folder of the export.")
flags.DEFINE_string("model_name", "mfif", "TF Serving model name (folder under --export_dir).")
flags.DEFINE_integer("version", None, "TF Serving version number (integer folder).")
flags.DEFINE_bool("overwrite", False, "Replace an existing version folder.")
flags.DEFINE_float("min_size_fraction", common.PAPER_MIN_SIZE_FRACTION,
                   "SRR: regions below this fraction of W * H are removed (section 3.3).")
flags.DEFINE_enum("mode", common.DEFAULT_MODE, list(common.MODES),
                  "Fusion mode of every exported graph: refined (default: one "
                  "full-resolution pass, its outline redrawn by the refinement head), paper "
                  "(the pass alone) or coarse_to_fine (G at the working resolution, the "
                  "refinement head to full resolution).")
flags.DEFINE_integer("working_side", common.DEFAULT_WORKING_SIDE,
                     "coarse_to_fine: shorter side of G's working "
                     "resolution in pixels.")
flags.DEFINE_string("refiner", None, "refined, coarse_to_fine: folder of the refinement head "
                    "(default: "
                    "the one beside --weights, else the packaged one).")
flags.DEFINE_string("scales", "1", "--mode=refined/paper: G's map is the mean of its maps at "
                    "these scales (1/k for integer k); 1 is the paper's single pass.")
flags.DEFINE_enum("precision", "float32", ["float32", "bfloat16"],
                  "What G computes in inside the SavedModel: float32 (default, runs anywhere) "
                  "or bfloat16 (float32 weights, bfloat16 arithmetic; for servers whose CPUs "
                  "have bfloat16 units). Not with --tflite.")
flags.DEFINE_bool("tflite", False, "Also write TFLite models.")
flags.DEFINE_integer("tflite_fixed_size", 512, "Side of the fixed-size TFLite model.")
flags.DEFINE_list("tflite_variants", ["dynamic", "fixed"], "TFLite variants: dynamic, fixed.")
flags.DEFINE_list("tflite_quantizations", ["float32", "float16", "int8"],
                  "TFLite quantisations: float32, float16, int8 (dynamic range), int8_full "
                  "(full-integer: int8 weights and activations; not by default, needs "
                  "--tflite_representative_dir).")
flags.DEFINE_string("tflite_representative_dir", "",
                    "int8_full: folder of images/ + masks/ (+ train.txt), as for training; the "
                    "pairs that calibrate the int8 ranges are synthesised from its train split "
                    "(alpha-matte synthesis, eqs. 10-11).")
flags.DEFINE_integer("tflite_representative_pairs", 32,
                     "int8_full: number of synthetic pairs to calibrate on.")




def config_from_flags():
    from export.config import ExportConfig, TFLiteConfig

    return ExportConfig(
        export_dir=FLAGS.export_dir or "",
        model_name=FLAGS.model_name,
        version=FLAGS.version,
        overwrite=FLAGS.overwrite,
        min_size_fraction=FLAGS.min_size_fraction,
        scales=FLAGS.scales,
        mode=FLAGS.mode,
        working_side=FLAGS.working_side,
        precision=FLAGS.precision,
        tflite=FLAGS.tflite,
        tflite_config=TFLiteConfig(
            fixed_size=FLAGS.tflite_fixed_size,
            variants=tuple(FLAGS.tflite_variants),
            quantizations=tuple(FLAGS.tflite_quantizations),
            representative_dir=FLAGS.tflite_representative_dir,
            representative_pairs=FLAGS.tflite_representative_pairs,
            min_size_fraction=FLAGS.min_size_fraction,
            scales=FLAGS.scales,
            mode=FLAGS.mode,
            working_side=FLAGS.working_side),
    )


def main(argv) -> None:
    if len(argv) > 1:
        fail(f"unexpected arguments: {' '.join(argv[1:])}")
    if not FLAGS.export_dir:
        fail("--export_dir is required")
    if FLAGS.version is None:
        fail("--version is required (an integer: TF Serving serves integer version folders)")
    from export.config import check_targets

    try:  # before TensorFlow loads: a bad flag or folder fails at once
        config = config_from_flags()
        config.validate()
        check_targets(config)
    except (ValueError, FileExistsError) as e:
        fail(str(e))
    with quiet_native_stderr():  # TensorFlow's start-up notes
        from export import export_lib
        from mfif_tf.model_io import ModelNotFoundError, load_generator
    try:
        generator = load_generator(FLAGS.weights, config.precision)
    except ModelNotFoundError as e:
        fail(f"--weights={FLAGS.weights}: {e}".replace("pass --model", "pass --weights"))
    refiner = coarse_refiner = coarse_generator = None
    if config.mode != "paper":
        from mfif_tf import fusion
        from mfif_tf.image_io import InputError
        from mfif_tf.common import COARSE_REFINER_KEY

        try:
            refiner = fusion.resolve_refiner(FLAGS.refiner, FLAGS.weights, config.mode)
            if config.mode == "refined":  # as `fusion.fuse_stack` chooses it
                coarse_refiner = fusion.resolve_refiner(FLAGS.refiner, FLAGS.weights,
                                                        COARSE_REFINER_KEY)
        except (ModelNotFoundError, InputError) as e:
            fail(f"--refiner: {e}")
        if config.mode == "refined":
            try:
                coarse_generator = fusion.resolve_coarse_generator(None, FLAGS.weights,
                                                                   config.precision)
            except (ModelNotFoundError, InputError) as e:
                fail(f"--weights={FLAGS.weights}: {e}")
    try:
        result = export_lib.export_model(generator, config, refiner, coarse_refiner,
                                         coarse_generator)
    except FileExistsError as e:
        fail(str(e))
    print(f"SavedModel: {result.saved_model_dir} "
          f"({result.sizes['saved_model'] / 1e6:.2f} MB)")
    if result.models_config:
        print(f"TF Serving config: {result.models_config}")
    for name, path in result.tflite_models.items():
        print(f"TFLite: {path} ({result.sizes[name] / 1e6:.2f} MB)")


def run() -> None:
    app.run(main, flags_parser=parse_flags)


if __name__ == "__main__":
    run()
