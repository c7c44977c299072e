"""Saving and loading the inference part of MFIF-GAN: the generator G only.

A model directory holds `model.json` (the `ModelConfig` and how the weights were made) and
`generator.weights.h5`. `load_generator` also accepts a training work dir (it reads the
latest checkpoint) and "default", the pretrained model shipped inside the package.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

import tensorflow as tf

from mfif_tf.config import ModelConfig, model_config_from_dict
from mfif_tf.networks import Generator

PACKAGED_MODEL_DIR = os.path.join(os.path.dirname(__file__), "pretrained")
WEIGHTS_FILE = "generator.weights.h5"
CONFIG_FILE = "model.json"


class ModelNotFoundError(FileNotFoundError):
    pass


def variables_by_path(model) -> tf.train.Checkpoint:
    """A model's weights keyed by their Keras paths: the layout of the trainer's
    checkpoints, so that G alone can be read back from them."""
    return tf.train.Checkpoint(**{v.path.replace("/", "."): v for v in model.weights})


def save_generator(generator: Generator, directory: str, info: dict[str, Any] | None = None) -> str:
    """Writes G's weights and config to `directory` (created if needed) atomically."""
    os.makedirs(directory, exist_ok=True)
    meta = {"model": dataclasses.asdict(generator.config), "info": info or {}}
    tmp_weights = os.path.join(directory, ".tmp." + WEIGHTS_FILE)
    generator.save_weights(tmp_weights)
    os.replace(tmp_weights, os.path.join(directory, WEIGHTS_FILE))
    tmp_cfg = os.path.join(directory, ".tmp." + CONFIG_FILE)
    with open(tmp_cfg, "w") as f:
        json.dump(meta, f, indent=2, sort_keys=True)
    os.replace(tmp_cfg, os.path.join(directory, CONFIG_FILE))
    return directory


def packaged_model_available() -> bool:
    return os.path.exists(os.path.join(PACKAGED_MODEL_DIR, WEIGHTS_FILE))


def _build(config: ModelConfig) -> Generator:
    generator = Generator(config, name="generator")
    generator(tf.zeros([1, 16, 16, 6]), training=False)
    return generator


def load_generator(path: str | None = "default") -> Generator:
    """Loads G from a model directory, a training work dir, or "default"/None (packaged)."""
    if path in (None, "", "default"):
        if not packaged_model_available():
            raise ModelNotFoundError(
                "no trained model is installed in the package; pass --model with a model "
                "directory or a training work dir")
        path = PACKAGED_MODEL_DIR
    if not os.path.exists(path):
        raise ModelNotFoundError(f"model path does not exist: {path}")
    if not os.path.isdir(path):
        raise ModelNotFoundError(f"model path is not a directory: {path}")
    cfg_path = os.path.join(path, CONFIG_FILE)
    weights_path = os.path.join(path, WEIGHTS_FILE)
    if os.path.exists(cfg_path) and os.path.exists(weights_path):
        with open(cfg_path) as f:
            meta = json.load(f)
        generator = _build(model_config_from_dict(meta["model"]))
        generator.load_weights(weights_path)
        return generator
    train_cfg = os.path.join(path, "config.json")
    if os.path.exists(train_cfg):
        with open(train_cfg) as f:
            meta = json.load(f)
        generator = _build(model_config_from_dict(meta["model"]))
        latest = tf.train.latest_checkpoint(os.path.join(path, "checkpoints"))
        if latest is None:
            raise ModelNotFoundError(f"training work dir has no checkpoint yet: {path}")
        tf.train.Checkpoint(generator=variables_by_path(generator)).read(latest).expect_partial()
        return generator
    raise ModelNotFoundError(
        f"{path} holds neither {WEIGHTS_FILE} + {CONFIG_FILE} nor a training work dir")
