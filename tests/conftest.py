import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def random_refiner(seed: int = 12, channels: int = 8, layers: int = 3):
    """A refinement head R with random, non-zero weights (it changes maps in its band)."""
    import numpy as np
    import tensorflow as tf

    from mfif_tf import refiner as refiner_lib

    tf.keras.utils.set_random_seed(seed)
    r = refiner_lib.build_refiner(refiner_lib.RefinerConfig(channels=channels, layers=layers))
    rng = np.random.default_rng(seed)
    for w in r.weights:
        w.assign(rng.normal(0.0, 0.3, w.shape).astype(np.float32))
    return r
