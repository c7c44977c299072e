"""Trains MFIF-GAN: `python -m mfif_tf.train --flagfile=configs/paper.flags --workdir=DIR`.

With --distribution=multi_worker, every worker of the cluster in the TF_CONFIG environment
variable runs this command with the same flags and --workdir (BUILD.md, "Multi-worker
training").

Restarting with the same --workdir resumes from its latest checkpoint; flags that change the
networks (--preset and the size overrides, --use_se, --branches) must be those of the run
in it (checked against its config.json before anything changes). The flags other than
--workdir and --cpu_devices are made from the fields of `config.TrainConfig` (and of
`data_pipeline.PipelineConfig`, its `data`): one per setting, with its default and help.
"""

from __future__ import annotations

import os

from absl import app, flags

from mfif_tf import cli
from mfif_tf import config as config_lib
from mfif_tf.cli import fail, parse_flags, quiet_native_stderr
from mfif_tf.workdir import WorkdirNotShared, check_workdir

FLAGS = flags.FLAGS

flags.DEFINE_string("workdir", None, "Directory for checkpoints, TensorBoard logs and the config.")
flags.DEFINE_integer("cpu_devices", 0, "Split the CPU into this many logical devices (testing).")
# One flag per setting of `TrainConfig` and its sections (`data` is the pipeline's
# `PipelineConfig`), with the field's default and help.
CONFIG_FLAGS = config_lib.flag_specs()
cli.define_flags(CONFIG_FLAGS, FLAGS)
flags.adopt_module_key_flags(cli)  # --help lists them with the flags above


def config_from_flags() -> config_lib.TrainConfig:
    """The validated `TrainConfig` of the parsed flags."""
    return config_lib.config_from_flags(cli.read_flags(CONFIG_FLAGS, FLAGS))


def main(argv) -> None:
    if len(argv) > 1:
        fail(f"unexpected arguments: {' '.join(argv[1:])}")
    if not FLAGS.workdir:
        fail("--workdir is required")
    try:
        config = config_from_flags()
        config.validate()
        check_workdir(FLAGS.workdir, config.to_dict()["model"])
        if config.distribution == "multi_worker":
            task = config_lib.multi_worker_task(os.environ.get("TF_CONFIG"))
            if config.batch_size % task.num_workers:
                raise ValueError(f"batch_size {config.batch_size} is not divisible by the "
                                 f"{task.num_workers} workers of TF_CONFIG")
            if FLAGS.cpu_devices > 1:
                raise ValueError("--cpu_devices is for --distribution=mirrored; a "
                                 "multi_worker run has one CPU device per worker")
    except ValueError as e:
        fail(str(e))
    # After validation: bad flags fail fast. TensorFlow's C++ runtime prints notes while it
    # loads and starts (CPU features, GPU probing); silenced, so that a data error that
    # follows stands alone.
    strategy = None
    with quiet_native_stderr():
        import tensorflow as tf

        if config.distribution == "multi_worker":
            from mfif_tf.trainer import make_strategy

            # Before any other TensorFlow operation (collective ops are configured at
            # startup); waits until every task of the cluster is up.
            strategy = make_strategy(config.distribution)
        if FLAGS.cpu_devices > 1:
            cpu = tf.config.list_physical_devices("CPU")[0]
            tf.config.set_logical_device_configuration(
                cpu, [tf.config.LogicalDeviceConfiguration()] * FLAGS.cpu_devices)
        tf.config.list_logical_devices("CPU")
        import data_pipeline.pipeline  # noqa: F401 (loads tf.data's libraries here)
        from data_pipeline.readers import DataError
        from mfif_tf import train_lib

    try:
        train_lib.train_and_evaluate(config, FLAGS.workdir, strategy=strategy)
    except (DataError, WorkdirNotShared) as e:
        fail(str(e))


def run() -> None:
    app.run(main, flags_parser=parse_flags)


if __name__ == "__main__":
    run()
