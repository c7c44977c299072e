"""Measures examples per second of the training input pipeline alone.

  python -m data_pipeline.benchmark --source=folder --data_dir=DIR --batch_size=8 \
      --image_size=128 --crop=random

Pulls `--warmup_batches` batches first (tracing, file cache, autotuning), then times
`--batches` batches.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from absl import app, flags

from data_pipeline import SOURCES, SYNTHESIS_METHODS
from data_pipeline.cli import fail, parse_flags, quiet_native_stderr

if TYPE_CHECKING:
    import tensorflow as tf

_SOURCE = flags.DEFINE_enum("source", "embedded", list(SOURCES), "Data source.")
_DATA_DIR = flags.DEFINE_string("data_dir", None, "Folder of a folder/voc/plain source.")
_BATCH = flags.DEFINE_integer("batch_size", 8, "Batch size.")
_SIZE = flags.DEFINE_integer("image_size", 128, "Training image size S.")
_CROP = flags.DEFINE_enum("crop", "random", ["center", "random"], "Crop mode.")
_SYNTHESIS = flags.DEFINE_enum("synthesis", "alpha_matte", list(SYNTHESIS_METHODS),
                               "Eqs. 10-11, 10-11 with the hidden background filled, or 12-13.")
_SIGMA = flags.DEFINE_float("sigma", 1.0, "Sigma of G.")
_SIGMA_RANGE = flags.DEFINE_list("sigma_range", None, "lo,hi: random sigma per example.")
_BATCHES = flags.DEFINE_integer("batches", 50, "Timed batches.")
_WARMUP = flags.DEFINE_integer("warmup_batches", 10, "Untimed batches first.")
_TFDS_DATA_DIR = flags.DEFINE_string("tfds_data_dir", None, "tfds data folder (source=tfds).")
_EXTRA_DIRS = flags.DEFINE_list("extra_dirs", [], "More images/ + masks/ folders.")
_THREADS = flags.DEFINE_integer("threads", 0, "tf.data private thread pool size (0: default).")


def measure(dataset: tf.data.Dataset, batches: int, warmup_batches: int) -> float:
    """Examples per second over `batches` batches after `warmup_batches`."""
    it = iter(dataset)
    for _ in range(warmup_batches):
        next(it)
    count = 0
    start = time.perf_counter()
    for _ in range(batches):
        count += int(next(it)["image_a"].shape[0])
    return count / (time.perf_counter() - start)


def main(argv):
    if len(argv) > 1:
        fail(f"unexpected arguments: {' '.join(argv[1:])}")
    sigma_range = tuple(float(v) for v in _SIGMA_RANGE.value) if _SIGMA_RANGE.value else None
    with quiet_native_stderr():  # after the flags: a bad one fails at once
        import tensorflow as tf

        from data_pipeline import pipeline
    try:
        ds = pipeline.make_training_dataset(
            source=_SOURCE.value, data_dir=_DATA_DIR.value, batch_size=_BATCH.value,
            image_size=_SIZE.value, crop=_CROP.value, synthesis=_SYNTHESIS.value,
            sigma=_SIGMA.value, sigma_range=sigma_range, tfds_data_dir=_TFDS_DATA_DIR.value,
            extra_dirs=tuple(_EXTRA_DIRS.value))
    except ValueError as err:  # readers.DataError too: a missing or empty data folder
        fail(str(err))
    if _THREADS.value:
        options = tf.data.Options()
        options.threading.private_threadpool_size = _THREADS.value
        ds = ds.with_options(options)
    rate = measure(ds, _BATCHES.value, _WARMUP.value)
    print(f"{_SOURCE.value} batch={_BATCH.value} size={_SIZE.value} crop={_CROP.value} "
          f"{_SYNTHESIS.value}: {rate:.1f} examples/s")


if __name__ == "__main__":
    app.run(main, flags_parser=parse_flags)
