"""Builds `mfif_alpha_matte` or `mfif_benchmark` with the tfds Python API.

  python -m data_pipeline.tfds.build --dataset=mfif_alpha_matte --config=alpha_matte \
      --manual_dir=/path/to/VOCdevkit [--data_dir=~/tensorflow_datasets]
  python -m data_pipeline.tfds.build --dataset=mfif_benchmark --manual_dir=/path/to/test_sets
  python -m data_pipeline.tfds.build ... \
      --beam_pipeline_options=runner=DirectRunner,direct_num_workers=2

Same result as `tfds build data_pipeline/tfds/<dataset> --manual_dir=...`, without the extra
packages the `tfds` command imports (apache-beam, mlcroissant). With
`--beam_pipeline_options` (comma-separated Beam pipeline options without the leading `--`,
as the `tfds` command takes them) the examples are made on Apache Beam (the `beam` extra;
`beam_support`).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from absl import app, flags

from data_pipeline.cli import fail, parse_flags, quiet_native_stderr

if TYPE_CHECKING:
    import tensorflow_datasets as tfds

_DATASET = flags.DEFINE_enum("dataset", "mfif_alpha_matte", ["mfif_alpha_matte", "mfif_benchmark"],
                             "Builder to run.")
_CONFIG = flags.DEFINE_list(
    "config", None, "mfif_alpha_matte configs (alpha_matte, conventional, "
    "alpha_matte_random_sigma, alpha_matte_filled_random_sigma); default: alpha_matte.")
_MANUAL_DIR = flags.DEFINE_string("manual_dir", None, "Folder with the source data.")
_DATA_DIR = flags.DEFINE_string("data_dir", None,
                                "tfds data folder (default ~/tensorflow_datasets).")
_BEAM_OPTIONS = flags.DEFINE_string(
    "beam_pipeline_options", None, "Build on Apache Beam with these comma-separated pipeline "
    "options, e.g. runner=DirectRunner,direct_num_workers=2 (needs apache-beam).")


def beam_options(text: str):
    """Beam `PipelineOptions` from "a=1,b=2" (the `tfds build` form)."""
    from apache_beam.options.pipeline_options import PipelineOptions

    return PipelineOptions([f"--{opt.strip()}" for opt in text.split(",") if opt.strip()])


def build(dataset: str, manual_dir: str, config: str | None = None,
          data_dir: str | None = None, pipeline_options=None) -> tfds.core.DatasetBuilder:
    """Prepares one dataset (config) and returns its builder; with Beam `pipeline_options`
    (or their "a=1,b=2" text) on Apache Beam."""
    import tensorflow_datasets as tfds

    from data_pipeline.tfds import register

    cls = {"mfif_alpha_matte": register.MfifAlphaMatte,
           "mfif_benchmark": register.MfifBenchmark}[dataset]
    builder = cls(config=config, data_dir=data_dir) if config else cls(data_dir=data_dir)
    if isinstance(pipeline_options, str):
        pipeline_options = beam_options(pipeline_options)
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(manual_dir=manual_dir,
                                                     beam_options=pipeline_options))
    return builder


def check_job(dataset: str, manual_dir: str | None, configs: list[str | None]) -> None:
    """Raises ValueError (one line naming the problem) unless `manual_dir` holds the sources
    of `dataset` and `configs` are its configs; tfds itself would stop deep inside the build,
    with a traceback. A missing folder is found before TensorFlow loads."""
    if not manual_dir:
        raise ValueError("--manual_dir is required")
    if not os.path.isdir(manual_dir):
        raise ValueError(f"--manual_dir: no such folder: {manual_dir}")
    from data_pipeline.readers import DataError

    with quiet_native_stderr():  # the builders import TensorFlow
        from data_pipeline.tfds import register

    if dataset == "mfif_benchmark":
        if configs != [None]:
            raise ValueError("--config: mfif_benchmark has no configs")
        find = register.mfif_benchmark_dataset_builder.find_test_sets
    else:
        known = [c.name for c in register.MfifAlphaMatte.BUILDER_CONFIGS]
        for config in configs:
            if config not in known:
                raise ValueError(f"--config: mfif_alpha_matte has no config {config!r}; "
                                 f"choose from {', '.join(known)}")
        find = register.mfif_alpha_matte_dataset_builder.find_sources
    try:
        find(manual_dir)
    except DataError as err:
        raise ValueError(str(err)) from None


def main(argv):
    if len(argv) > 1:
        fail(f"unexpected arguments: {' '.join(argv[1:])}")
    configs = _CONFIG.value or ([None] if _DATASET.value == "mfif_benchmark" else ["alpha_matte"])
    options = None
    try:
        if _BEAM_OPTIONS.value:
            try:
                options = beam_options(_BEAM_OPTIONS.value)
            except ImportError:
                raise ValueError("--beam_pipeline_options needs apache-beam: "
                                 "pip install -e \".[beam]\"") from None
        check_job(_DATASET.value, _MANUAL_DIR.value, configs)
    except ValueError as err:
        fail(str(err))
    for config in configs:
        builder = build(_DATASET.value, _MANUAL_DIR.value, config, _DATA_DIR.value, options)
        splits = ", ".join(f"{k}: {v.num_examples}" for k, v in builder.info.splits.items())
        print(f"{builder.info.full_name} in {builder.data_dir} ({splits})")


if __name__ == "__main__":
    app.run(main, flags_parser=parse_flags)
