"""Builds `mfif_alpha_matte` or `mfif_benchmark` with the tfds Python API.

  python -m data_pipeline.tfds.build --dataset=mfif_alpha_matte --config=alpha_matte \
      --manual_dir=/path/to/VOCdevkit [--data_dir=~/tensorflow_datasets]
  python -m data_pipeline.tfds.build --dataset=mfif_benchmark --manual_dir=/path/to/test_sets

Same result as `tfds build data_pipeline/tfds/<dataset> --manual_dir=...`, without the extra
packages the `tfds` command imports (apache-beam, mlcroissant).
"""

from __future__ import annotations

import tensorflow_datasets as tfds
from absl import app, flags

from data_pipeline.tfds import register

_DATASET = flags.DEFINE_enum("dataset", "mfif_alpha_matte", ["mfif_alpha_matte", "mfif_benchmark"],
                             "Builder to run.")
_CONFIG = flags.DEFINE_list(
    "config", None, "mfif_alpha_matte configs (alpha_matte, conventional, "
    "alpha_matte_random_sigma, alpha_matte_filled_random_sigma); default: alpha_matte.")
_MANUAL_DIR = flags.DEFINE_string("manual_dir", None, "Folder with the source data.")
_DATA_DIR = flags.DEFINE_string("data_dir", None,
                                "tfds data folder (default ~/tensorflow_datasets).")


def build(dataset: str, manual_dir: str, config: str | None = None,
          data_dir: str | None = None) -> tfds.core.DatasetBuilder:
    """Prepares one dataset (config) and returns its builder."""
    cls = {"mfif_alpha_matte": register.MfifAlphaMatte,
           "mfif_benchmark": register.MfifBenchmark}[dataset]
    builder = cls(config=config, data_dir=data_dir) if config else cls(data_dir=data_dir)
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(manual_dir=manual_dir))
    return builder


def main(argv):
    del argv
    if not _MANUAL_DIR.value:
        raise app.UsageError("--manual_dir is required")
    configs = _CONFIG.value or ([None] if _DATASET.value == "mfif_benchmark" else ["alpha_matte"])
    for config in configs:
        builder = build(_DATASET.value, _MANUAL_DIR.value, config, _DATA_DIR.value)
        splits = ", ".join(f"{k}: {v.num_examples}" for k, v in builder.info.splits.items())
        print(f"{builder.info.full_name} in {builder.data_dir} ({splits})")


if __name__ == "__main__":
    app.run(main)
