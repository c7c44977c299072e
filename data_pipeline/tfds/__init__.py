"""tfds dataset builders: `mfif_alpha_matte` (training pairs) and `mfif_benchmark` (test sets).

Import `data_pipeline.tfds.register` to register both with tfds (`tfds.builder("...")`).
"""
