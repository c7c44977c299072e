"""tfds builder `mfif_alpha_matte` (see mfif_alpha_matte_dataset_builder)."""
