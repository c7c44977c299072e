"""Importing this module registers the `mfif_alpha_matte` and `mfif_benchmark` builders."""

from data_pipeline.tfds.mfif_alpha_matte import mfif_alpha_matte_dataset_builder
from data_pipeline.tfds.mfif_benchmark import mfif_benchmark_dataset_builder

MfifAlphaMatte = mfif_alpha_matte_dataset_builder.Builder
MfifBenchmark = mfif_benchmark_dataset_builder.Builder

__all__ = ["MfifAlphaMatte", "MfifBenchmark"]
