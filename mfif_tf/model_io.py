"""Saving and loading the inference part of MFIF-GAN: the generator G only.

A model directory holds `model.json` (the `ModelConfig` and how the weights were made) and
`generator.weights.h5`. `load_generator` also accepts a training work dir (it reads the
latest checkpoint) and "default", the pretrained model shipped inside the package.

Precision: G and R run in float32, or in bfloat16 under Keras' `mixed_bfloat16` policy
(float32 variables, bfloat16 arithmetic; their maps are float32 either way).
`with_precision` and `refiner_with_precision` make the bfloat16 twins (same config, same
weights); `default_precision` is bfloat16 on CPUs with bfloat16 units and float32 elsewhere
(docs/fusion.md, "Precision").
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
from collections.abc import Iterator
from typing import Any

import keras
import tensorflow as tf

from mfif_tf.common import (BF16_CPU_FLAGS, GENERATOR_WEIGHTS_FILE,  # noqa: F401
                            PACKAGED_MODEL_DIR, PRECISIONS, ModelNotFoundError,
                            check_precision, cpu_default_precision, cpu_flags, cpu_has_bf16,
                            model_directory)
from mfif_tf.config import ModelConfig, model_config_from_dict
from mfif_tf.networks import Generator
from mfif_tf.refiner import Refiner

WEIGHTS_FILE = GENERATOR_WEIGHTS_FILE
CONFIG_FILE = "model.json"


POLICIES = {"float32": "float32", "bfloat16": "mixed_bfloat16"}  # Keras dtype policy names


def default_precision(cpuinfo: str | None = None) -> str:
    """The precision G and R run in when none is asked for: `common.cpu_default_precision`
    ("bfloat16" on CPUs with bfloat16 units, else "float32"), and "float32" whenever
    TensorFlow sees a GPU (older GPUs only emulate bfloat16; ask for it with `precision`)."""
    if cpuinfo is None and tf.config.list_physical_devices("GPU"):
        return "float32"
    return cpu_default_precision(cpuinfo)


def precision_of(generator: Generator) -> str:
    """What G computes in: "float32", "bfloat16" (other compute dtypes by name)."""
    return str(generator.compute_dtype)


@contextlib.contextmanager
def _global_policy(name: str) -> Iterator[None]:
    """Keras' global dtype policy set to `name` in the block. A model's sublayers take the
    global policy when they are created, not the model's own `dtype`, so G is built inside
    this block (not thread-safe: other threads creating layers meanwhile would get it too)."""
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(name)
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(previous)


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


def _build(config: ModelConfig, precision: str | None = None, cls: type = Generator,
           name: str = "generator") -> Generator:
    """G built (weights created) under the policy of `precision`; None: the global policy."""
    with (_global_policy(POLICIES[precision]) if precision is not None
          else contextlib.nullcontext()):
        generator = cls(config, name=name)
    generator(tf.zeros([1, 16, 16, 6]), training=False)
    return generator


def with_precision(generator: Generator, precision: str) -> Generator:
    """G itself when it already computes in `precision`, else a new G of the same class and
    config computing in `precision`, holding a copy of G's weights (float32 variables in
    both, so the copy is exact). The copy does not follow later changes of G's weights."""
    check_precision(precision)
    if precision_of(generator) == precision:
        return generator
    return _with_weights_of(
        _build(generator.config, precision, type(generator), generator.name), generator)


def _with_weights_of(twin: keras.Model, model: keras.Model) -> keras.Model:
    """`twin` holding a copy of `model`'s weights (float32 variables in both: exact)."""
    for mine, theirs in zip(twin.weights, model.weights, strict=True):
        mine.assign(theirs.value)
    return twin


def refiner_with_precision(refiner: Refiner, precision: str) -> Refiner:
    """R itself when it already computes in `precision`, else a copy of R computing in it
    (its first convolution stays float32, `refiner.FIRST_CONV_DTYPE`; float32 variables in
    both, so the copy of the weights is exact)."""
    check_precision(precision)
    if str(refiner.compute_dtype) == precision:
        return refiner
    with _global_policy(POLICIES[precision]):
        twin = type(refiner)(refiner.config, name=refiner.name)
    twin(tf.zeros([1, 2 * twin.halo + 1, 2 * twin.halo + 1, 7]))
    return _with_weights_of(twin, refiner)


def load_generator(path: str | None = "default", precision: str | None = None) -> Generator:
    """Loads G from a model directory, a training work dir, "default"/None (packaged) or the
    name of another packaged G (`common.PACKAGED_MODELS`: "small", "six_branch").

    `precision` "float32" or "bfloat16" (see `with_precision`); None builds G under Keras'
    global dtype policy (float32 unless changed)."""
    if precision is not None:
        check_precision(precision)
    path = model_directory(path)
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
        generator = _build(model_config_from_dict(meta["model"]), precision)
        generator.load_weights(weights_path)
        return generator
    train_cfg = os.path.join(path, "config.json")
    if os.path.exists(train_cfg):
        with open(train_cfg) as f:
            meta = json.load(f)
        generator = _build(model_config_from_dict(meta["model"]), precision)
        latest = tf.train.latest_checkpoint(os.path.join(path, "checkpoints"))
        if latest is None:
            raise ModelNotFoundError(f"training work dir has no checkpoint yet: {path}")
        tf.train.Checkpoint(generator=variables_by_path(generator)).read(latest).expect_partial()
        return generator
    raise ModelNotFoundError(
        f"{path} holds neither {WEIGHTS_FILE} + {CONFIG_FILE} nor a training work dir")
