"""Saving and loading the inference part of MFIF-GAN: the generator G only.

A model directory holds `model.json` (the `ModelConfig` and how the weights were made) and
`generator.weights.h5`. `load_generator` also accepts a training work dir (it reads the
latest checkpoint) and "default", the pretrained model shipped inside the package.

Precision: G runs in float32, or in bfloat16 under Keras' `mixed_bfloat16` policy (float32
variables, bfloat16 arithmetic; its output F_hat is float32 either way). `with_precision`
makes the bfloat16 twin of a float32 G (same config, same weights); `default_precision` is
float32 (it can pick bfloat16 on CPUs with bfloat16 units; docs/fusion.md, "Precision").
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import os
from collections.abc import Iterator
from typing import Any

import keras
import tensorflow as tf

from mfif_tf.common import PACKAGED_MODEL_DIR, PRECISIONS, ModelNotFoundError  # noqa: F401
from mfif_tf.config import ModelConfig, model_config_from_dict
from mfif_tf.networks import Generator
from mfif_tf.refiner import Refiner

WEIGHTS_FILE = "generator.weights.h5"
CONFIG_FILE = "model.json"


POLICIES = {"float32": "float32", "bfloat16": "mixed_bfloat16"}  # Keras dtype policy names
# CPU flags (Linux /proc/cpuinfo, x86) of instructions that compute in bfloat16: AVX512_BF16
# (Cooper Lake, Sapphire Rapids and later, Zen 4 and later) and AMX-BF16 (Sapphire Rapids).
BF16_CPU_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})
# Whether `default_precision` picks bfloat16 on such CPUs. Off: bfloat16 is 1.6-1.7x faster
# there and its F_final agrees with float32's on 99.94-99.97 % of all Lytro pixels, but on
# less than 99.9 % of the pixels of some pairs (2 of 20 in mode paper, 5 in mode refined;
# docs/fusion.md, "Precision").
BF16_DEFAULT_ON_BF16_CPUS = False


def check_precision(precision: Any) -> str:
    """`precision` when it is "float32" or "bfloat16", else ValueError (one line)."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be 'float32' or 'bfloat16', got {precision!r}")
    return precision


def cpu_flags(cpuinfo: str) -> frozenset[str]:
    """The instruction-set flags of the first processor of a Linux /proc/cpuinfo text (the
    x86 "flags : ..." line; none for other layouts)."""
    for line in cpuinfo.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() == "flags":
            return frozenset(value.lower().split())
    return frozenset()


def cpu_has_bf16(cpuinfo: str) -> bool:
    """Whether a /proc/cpuinfo text reports bfloat16 units (`BF16_CPU_FLAGS`)."""
    return bool(cpu_flags(cpuinfo) & BF16_CPU_FLAGS)


@functools.cache
def _this_cpuinfo() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            return f.read()
    except OSError:  # not Linux: no flags, float32
        return ""


def default_precision(cpuinfo: str | None = None) -> str:
    """The precision G runs in when none is asked for: "float32", or "bfloat16" when
    `BF16_DEFAULT_ON_BF16_CPUS` is on and the CPU flags report bfloat16 units
    (`BF16_CPU_FLAGS`; `cpuinfo` is a /proc/cpuinfo text, default this machine's). Other
    systems than Linux, and CPUs on which oneDNN only emulates bfloat16 (slower than float32),
    get float32."""
    text = _this_cpuinfo() if cpuinfo is None else cpuinfo
    return "bfloat16" if BF16_DEFAULT_ON_BF16_CPUS and cpu_has_bf16(text) else "float32"


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
    twin = _build(generator.config, precision, type(generator), generator.name)
    for mine, theirs in zip(twin.weights, generator.weights, strict=True):
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
    for mine, theirs in zip(twin.weights, refiner.weights, strict=True):
        mine.assign(theirs.value)
    return twin


def load_generator(path: str | None = "default", precision: str | None = None) -> Generator:
    """Loads G from a model directory, a training work dir, or "default"/None (packaged).

    `precision` "float32" or "bfloat16" (see `with_precision`); None builds G under Keras'
    global dtype policy (float32 unless changed)."""
    if precision is not None:
        check_precision(precision)
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
