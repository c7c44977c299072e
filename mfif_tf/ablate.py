"""Trains and evaluates the section 4.3 ablations into one table.

  python -m mfif_tf.ablate --dataset_dir=DATA/lytro --output_dir=runs/ablations \
      [--num_steps=400] [--variants=full,no_se] [--train_flags=--data_dir=DATA/ecssd]
"""

from __future__ import annotations

from absl import app, flags

from mfif_tf.cli import fail, parse_flags

FLAGS = flags.FLAGS
flags.DEFINE_string("dataset_dir", None, "Test pairs: a folder with A/ and B/.")
flags.DEFINE_string("output_dir", None, "Work dirs of the variants and the tables.")
flags.DEFINE_string("flags_dir", "configs/ablations", "Folder of the ablation flagfiles.")
flags.DEFINE_list("variants", [], "Variants to run (default: all, in the paper's order).")
flags.DEFINE_integer("num_steps", 0, "Override the training steps of every variant (0: keep).")
flags.DEFINE_multi_string("train_flags", [], "Extra flags for every training run.")


def main(argv) -> None:
    from mfif_tf import ablation_lib

    if len(argv) > 1 or not FLAGS.dataset_dir or not FLAGS.output_dir:
        fail("--dataset_dir and --output_dir are required")
    config = ablation_lib.AblationConfig(
        dataset_dir=FLAGS.dataset_dir, output_dir=FLAGS.output_dir, flags_dir=FLAGS.flags_dir,
        variants=ablation_lib.parse_variants(FLAGS.variants), num_steps=FLAGS.num_steps,
        extra_flags=tuple(FLAGS.train_flags))
    try:
        print(ablation_lib.run_ablations(config))
    except (ValueError, RuntimeError) as e:
        fail(str(e))


def run() -> None:
    app.run(main, flags_parser=parse_flags)


if __name__ == "__main__":
    run()
