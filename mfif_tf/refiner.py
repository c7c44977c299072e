"""The refinement head R: brings a coarse focus map back to the sources' full resolution.

G decides which source is in focus from context and is trained at one image scale (images
about 320 pixels on their shorter side, 1-4.5 pixel blur). In coarse-to-fine fusion
(`mfif_tf.inference`) G runs on the sources resampled to that working resolution, and R
redraws the outline of its map on the full-resolution pixels, one octave at a time.

R is a small fully convolutional network in the spirit of the learned guided filters of Wu
et al. ("Fast End-to-End Trainable Guided Filter", CVPR 2018): it sees I_A and I_B at one
resolution level and the map of the level below, upsampled (c), and corrects c where it is
uncertain:

    R(I_A, I_B, c) = sigmoid(logit(c) + delta(I_A, I_B, c))   in the band, c elsewhere

The band is where c is neither clearly 0 nor clearly 1 (`BAND_LOW` < c < 1 - `BAND_LOW`),
grown by the head's `band_grow` pixels (`BAND_GROW` unless its config says otherwise), so R
only ever moves an outline and never touches the inside of a region G decided; its cost is
proportional to the outline's length, not the image's area.
delta is `layers` 3x3 convolutions (ReLU between), so R at a pixel depends on the inputs
within `halo` = `layers` pixels: computing it in tiles or bands with that halo gives the same
map as one whole-image call.

Inputs are scaled as G's are: sources in [-1, 1] (RGB; grey tripled), c as 2c - 1.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

import keras
import tensorflow as tf
from keras import layers

from mfif_tf.common import REFINER_CONFIG_FILE, REFINER_WEIGHTS_FILE
from mfif_tf.windows import max_square

# c in (BAND_LOW, 1 - BAND_LOW) is uncertain; the band is that set grown by BAND_GROW pixels.
BAND_LOW = 0.02
BAND_GROW = 4
_LOGIT_CLIP = 1e-4
# R's first convolution computes in float32 under every dtype policy, so that the sources
# reach it unrounded (bfloat16 would lose about one grey level of an 8-bit photo, the fine
# texture that tells focus), as G's stem does (`networks.STEM_DTYPE`).
FIRST_CONV_DTYPE = "float32"


@dataclasses.dataclass(frozen=True)
class RefinerConfig:
    """Sizes of R.

    Attributes:
      channels: feature channels of the hidden 3x3 convolutions.
      layers: number of 3x3 convolutions (the last one outputs delta); also R's halo.
      band_grow: pixels by which the band where R runs is grown when it fuses
        (`mfif_tf.inference.refine`): a setting measured for the weights it is saved with.
        Training's loss band is always grown by `BAND_GROW`.
    """

    channels: int = 24
    layers: int = 4
    band_grow: int = BAND_GROW

    def __post_init__(self):
        if self.channels < 1 or self.layers < 2 or self.band_grow < 0:
            raise ValueError(f"refiner needs channels >= 1, layers >= 2 and band_grow >= 0, "
                             f"got {self}")


class Refiner(keras.Model):
    """R: (N, H + 2h, W + 2h, 7) = [I_A, I_B in [-1, 1], 2c - 1] with a halo of h = `halo`
    pixels -> refined map (N, H, W, 1) in [0, 1] (before the band selection of
    `mfif_tf.inference.refine`). The convolutions are unpadded, so a tile with its halo
    gives exactly the whole-image values."""

    def __init__(self, config: RefinerConfig | dict | None = None, **kwargs):
        super().__init__(**kwargs)
        if isinstance(config, dict):
            config = RefinerConfig(**config)
        self.config = config = config or RefinerConfig()
        self.convs = [
            layers.Conv2D(config.channels, 3, padding="valid", activation="relu",
                          name=f"conv{i}", dtype=FIRST_CONV_DTYPE if i == 0 else None)
            for i in range(config.layers - 1)
        ]
        self.out_conv = layers.Conv2D(1, 3, padding="valid", name="delta",
                                      kernel_initializer="zeros")

    @property
    def halo(self) -> int:
        return self.config.layers

    def call(self, inputs, training=None):
        x = tf.convert_to_tensor(inputs)
        h = self.halo
        coarse = (x[:, h:-h, h:-h, 6:7] + 1.0) * 0.5
        for conv in self.convs:
            x = conv(x)
        delta = tf.cast(self.out_conv(x), tf.float32)
        c = tf.clip_by_value(tf.cast(coarse, tf.float32), _LOGIT_CLIP, 1.0 - _LOGIT_CLIP)
        return tf.sigmoid(tf.math.log(c) - tf.math.log1p(-c) + delta)

    def get_config(self):
        return {"config": dataclasses.asdict(self.config), "name": self.name}

    @classmethod
    def from_config(cls, config):
        return cls(**config)


def build_refiner(config: RefinerConfig | None = None) -> Refiner:
    refiner = Refiner(config, name="refiner")
    refiner(tf.zeros([1, 2 * refiner.halo + 1, 2 * refiner.halo + 1, 7]))
    return refiner


def band(coarse: tf.Tensor, grow: int = BAND_GROW) -> tf.Tensor:
    """(N, H, W, 1) bool: c in (BAND_LOW, 1 - BAND_LOW), grown by `grow` pixels (a square)."""
    uncertain = tf.cast(tf.logical_and(coarse > BAND_LOW, coarse < 1.0 - BAND_LOW), tf.float32)
    if grow:  # the square's maximum, separable (`windows.max_square`)
        uncertain = max_square(uncertain, 2 * grow + 1)
    return uncertain > 0.5


def refiner_input(image_a: tf.Tensor, image_b: tf.Tensor, coarse: tf.Tensor) -> tf.Tensor:
    """R's input from sources in [0, 1] (N, H, W, 3) and c (N, H, W, 1) (without the halo,
    which the caller adds)."""
    return tf.concat([image_a * 2.0 - 1.0, image_b * 2.0 - 1.0, coarse * 2.0 - 1.0], axis=-1)


# ---------------------------------------------------------------- saving and loading

def save_refiner(refiner: Refiner, directory: str, info: dict[str, Any] | None = None) -> str:
    """Writes R's weights and config into `directory` (atomic renames)."""
    os.makedirs(directory, exist_ok=True)
    tmp = os.path.join(directory, ".tmp." + REFINER_WEIGHTS_FILE)
    refiner.save_weights(tmp)
    os.replace(tmp, os.path.join(directory, REFINER_WEIGHTS_FILE))
    tmp = os.path.join(directory, ".tmp." + REFINER_CONFIG_FILE)
    with open(tmp, "w") as f:
        json.dump({"refiner": dataclasses.asdict(refiner.config), "info": info or {}}, f,
                  indent=2, sort_keys=True)
    os.replace(tmp, os.path.join(directory, REFINER_CONFIG_FILE))
    return directory


def has_refiner(directory: str) -> bool:
    return os.path.exists(os.path.join(directory, REFINER_WEIGHTS_FILE))


def load_refiner(directory: str) -> Refiner:
    """R from a directory written by `save_refiner`."""
    with open(os.path.join(directory, REFINER_CONFIG_FILE)) as f:
        meta = json.load(f)
    refiner = build_refiner(RefinerConfig(**meta["refiner"]))
    refiner.load_weights(os.path.join(directory, REFINER_WEIGHTS_FILE))
    return refiner
