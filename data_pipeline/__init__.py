"""Training data for MFIF-GAN (section 4.1.1): synthesis ops, readers, tf.data pipelines, tfds.

Modules: `synthesis` (eqs. 7-13 as TF ops), `readers` (file layouts, masks, test pairs),
`random_masks`, `embedded` (scikit-image photos), `pipeline` (`make_training_dataset`,
`make_eval_dataset`), `tfds` (the `mfif_alpha_matte` and `mfif_benchmark` builders).
Entry points: `python -m data_pipeline.preview`, `.benchmark`, `.blur_estimate`,
`.ground_truth` (validation sets with I and the true focus map), `data_pipeline.tfds.build`. This package imports nothing else of the project.
"""

# Names of the synthesis models of `synthesis.synthesize_pair`, here so that flag and config
# checks need not import TensorFlow.
SYNTHESIS_METHODS = ("alpha_matte", "alpha_matte_filled", "conventional")
