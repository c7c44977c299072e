"""tfds builder `mfif_benchmark` (see mfif_benchmark_dataset_builder)."""
