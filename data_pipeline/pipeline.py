"""tf.data input pipelines of training pairs (section 4.1.1).

Each element is a dict of fixed-shape float32 tensors (B = batch size, S = image size):

- `image_a`  I_A, (B, S, S, 3) in [-1, 1]: foreground clear (eq. 10, or eq. 12).
- `image_b`  I_B, (B, S, S, 3) in [-1, 1]: background clear (eq. 11, or eq. 13).
- `focus`    F,   (B, S, S, 1) in {0, 1}: 1 where I_A is in focus (the foreground).
- `image`    I,   (B, S, S, 3) in [-1, 1]: the all-in-focus photo.

Order of work per example: read, draw the per-example randomness from (seed, example index),
synthesise I_A and I_B at the photo's own resolution (the blur acts on real pixels, before any
resampling), crop and resize I, I_A, I_B and F together (F bilinearly, then thresholded at 0.5,
so its edge follows the same geometry as the images), flip, scale to [-1, 1]; then batch and,
with `swap_sources`, swap I_A and I_B (F with 1 - F) in a random half of the samples.

`PipelineConfig` (defined in `data_pipeline/__init__.py`, which needs no TensorFlow) holds the
settings; `training_dataset(config, batch_size=..., seed=...)` reads it, and
`make_training_dataset(**settings)` takes them as keyword arguments.

Sources: "embedded" (photos inside scikit-image, random masks), "folder" (`images/` + `masks/`),
"voc" (PASCAL VOC 2012), "plain" (images only, random masks), "tfds" (the built
`mfif_alpha_matte` dataset, already synthesised).
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import numpy as np
import tensorflow as tf
from absl import logging

from data_pipeline import (MIXED_SYNTHESIS, SOURCES, PipelineConfig, embedded, random_masks,
                           readers, synthesis)

__all__ = ["PipelineConfig", "SOURCES", "list_examples", "make_eval_dataset",
           "make_training_dataset", "training_dataset"]

_TF_DECODABLE = (".jpg", ".jpeg", ".png", ".bmp", ".gif")
_EMBEDDED_EVAL_COPIES = 4
_SWAP_SEED = 7919  # offset of the swap coins' seed from the stream's
# Settings that `make_eval_dataset` fixes: centre crop, no flips, no swaps.
_EVAL_FIXED = ("crop", "flip", "swap_sources")


@dataclasses.dataclass(frozen=True)
class _Stream(PipelineConfig):
    """A `PipelineConfig` with what one dataset reads of it: the split, the batch size, the
    seed, whether it shuffles, repeats and drops the last partial batch, and whether it
    synthesises I_A and I_B."""

    split: str = "train"
    batch_size: int = 4
    seed: int = 0
    repeat: bool = True
    shuffle: bool = True
    drop_remainder: bool = True
    synthesise: bool = True

    def validate(self) -> None:
        super().validate()
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {self.batch_size}")


def _stream(cfg: PipelineConfig, **reading) -> _Stream:
    data = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(PipelineConfig)}
    return _Stream(**data, **reading)


def list_examples(cfg: PipelineConfig, split: str) -> list[readers.Example]:
    """Lists and validates the on-disk examples of `split` of a file source; logs what was
    skipped."""
    dirs = (cfg.data_dir,) + tuple(cfg.extra_dirs)
    examples: list[readers.Example] = []
    for d in dirs:
        if cfg.source == "voc" and d == cfg.data_dir:
            examples += readers.list_voc(d, split)
        elif cfg.source == "plain":
            examples += readers.list_plain_folder(d)
        else:  # "folder", and mask folders added to VOC with extra_dirs
            examples += readers.list_mask_folder(d, split)
    good, skipped = readers.validate_examples(examples)
    logging.info("%s split %r: %d examples from %s (%d skipped)", cfg.source, split,
                 len(good), ", ".join(dirs), len(skipped))
    if not good:
        raise readers.DataError(
            f"no usable examples in {', '.join(dirs)} (split {split!r}); "
            f"{len(skipped)} skipped, first: {skipped[0].path}: {skipped[0].reason}"
            if skipped else f"no examples in {', '.join(dirs)}")
    return good


# ---------------------------------------------------------------------------------------------
# Decoding


def _py_read_rgb(path) -> np.ndarray:
    return readers.read_rgb(path.decode() if isinstance(path, bytes) else str(path))


def _py_read_focus(path, kind) -> np.ndarray:
    path = path.decode() if isinstance(path, bytes) else str(path)
    kind = kind.decode() if isinstance(kind, bytes) else str(kind)
    return readers.read_focus_map(path, kind)[..., None]


def _decode_image(path: tf.Tensor, use_tf: bool) -> tf.Tensor:
    if use_tf:
        image = tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)
    else:
        image = tf.numpy_function(_py_read_rgb, [path], tf.uint8, stateful=False)
    return tf.ensure_shape(image, [None, None, 3])


def _decode_focus(path: tf.Tensor, kind: tf.Tensor, use_tf: bool) -> tf.Tensor:
    """F as float32 (H, W, 1) in {0, 1}; same rule as `readers.binary_focus_map`."""
    if use_tf:
        raw = tf.io.decode_image(tf.io.read_file(path), channels=1, expand_animations=False)
        raw = tf.cast(raw, tf.float32)
        threshold = tf.where(tf.reduce_max(raw) <= 1.0, 0.5, 127.5)
        focus = tf.cast(raw > threshold, tf.float32)
    else:
        focus = tf.cast(
            tf.numpy_function(_py_read_focus, [path, kind], tf.uint8, stateful=False), tf.float32)
    return tf.ensure_shape(focus, [None, None, 1])


def _to_float(image: tf.Tensor) -> tf.Tensor:
    return tf.cast(image, tf.float32) / 255.0


# ---------------------------------------------------------------------------------------------
# Geometry


def _crop_resize(stack: tf.Tensor, cfg: PipelineConfig, seed: tf.Tensor) -> tf.Tensor:
    """Crops and resizes (H, W, C) to (S, S, C): centre crop + resize, or resize + random crop."""
    size = cfg.image_size
    h, w = tf.shape(stack)[0], tf.shape(stack)[1]
    if cfg.crop == "center":
        c = tf.minimum(tf.minimum(h, w), cfg.center_crop_size)
        stack = tf.image.crop_to_bounding_box(stack, (h - c) // 2, (w - c) // 2, c, c)
        return tf.image.resize(stack, [size, size], method="bilinear", antialias=True)
    scale = cfg.resize_shorter / tf.cast(tf.minimum(h, w), tf.float32)
    new_h = tf.maximum(size, tf.cast(tf.round(tf.cast(h, tf.float32) * scale), tf.int32))
    new_w = tf.maximum(size, tf.cast(tf.round(tf.cast(w, tf.float32) * scale), tf.int32))
    stack = tf.image.resize(stack, tf.stack([new_h, new_w]), method="bilinear", antialias=True)
    channels = stack.shape[-1]
    return tf.image.stateless_random_crop(stack, [size, size, channels], seed=seed)


def _finish(sample: dict, seeds: tf.Tensor, cfg: PipelineConfig) -> dict:
    """Crop/resize, flip and scale a dict of native-resolution float tensors in [0, 1]."""
    stack = tf.concat(
        [sample["image"], sample["image_a"], sample["image_b"], sample["focus"]], axis=-1)
    stack = _crop_resize(stack, cfg, seeds[5])
    if cfg.flip:
        stack = tf.cond(tf.random.stateless_uniform([], seeds[6]) < 0.5,
                        lambda: tf.reverse(stack, [1]), lambda: stack)
        stack = tf.cond(tf.random.stateless_uniform([], seeds[7]) < 0.5,
                        lambda: tf.reverse(stack, [0]), lambda: stack)
    s = cfg.image_size
    stack = tf.ensure_shape(tf.clip_by_value(stack, 0.0, 1.0), [s, s, 10])
    out = {
        "image_a": stack[..., 3:6] * 2.0 - 1.0,
        "image_b": stack[..., 6:9] * 2.0 - 1.0,
        "focus": tf.cast(stack[..., 9:10] >= 0.5, tf.float32),
        "image": stack[..., 0:3] * 2.0 - 1.0,
    }
    if "pair_focused" in sample:
        out["pair_focused"] = sample["pair_focused"]
    return out


def _element_seeds(index: tf.Tensor, cfg: _Stream) -> tf.Tensor:
    """Eight independent stateless seeds of one sample: 0 sigma, 1 mask, 2-3 the focus of I_B
    (`pair_focus`), 4 synthesis model ("mixed"), 5 crop, 6-7 flips."""
    return tf.random.experimental.stateless_split(
        tf.stack([tf.constant(cfg.seed, tf.int64), tf.cast(index, tf.int64)]), num=8)


def _sigma(seeds: tf.Tensor, cfg: PipelineConfig) -> tf.Tensor:
    if cfg.sigma_range is None:
        return tf.constant(cfg.sigma, tf.float32)
    lo, hi = cfg.sigma_range
    return tf.random.stateless_uniform([], seeds[0], lo, hi)


def _pair(image: tf.Tensor, focus: tf.Tensor, sigma: tf.Tensor, seeds: tf.Tensor,
          cfg: _Stream, method: str) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """I_A, I_B of one model and whether I_B is focused between the layers (1.0 or 0.0): with
    `pair_focus`, in a share of the samples at t (the foreground blurred by t sigma, the
    background by (1 - t) sigma; t = 1 is eq. 11 / 13's I_B)."""
    image_a, image_b = synthesis.synthesize_pair(image, focus, sigma, method)
    if cfg.pair_focus is None:
        return image_a, image_b, tf.constant(0.0)
    lo, hi = cfg.pair_focus
    t = tf.random.stateless_uniform([], seeds[3], lo, hi)
    focused = tf.random.stateless_uniform([], seeds[2]) < cfg.pair_focus_share
    image_b = tf.cond(
        focused,
        lambda: synthesis.focused_frame(image, focus, t * sigma, (1.0 - t) * sigma, method),
        lambda: image_b)
    return image_a, image_b, tf.cast(focused, tf.float32)


def _synthesise(image: tf.Tensor, focus: tf.Tensor, seeds: tf.Tensor, cfg: _Stream):
    if not cfg.synthesise:  # the caller makes the sources itself, from I and F
        return {"image": image, "image_a": image, "image_b": image, "focus": focus}
    sigma = _sigma(seeds, cfg)
    if cfg.synthesis == MIXED_SYNTHESIS:  # eqs. 10-11 or 12-13, even odds per sample
        image_a, image_b, focused = tf.cond(
            tf.random.stateless_uniform([], seeds[4]) < 0.5,
            lambda: _pair(image, focus, sigma, seeds, cfg, "alpha_matte"),
            lambda: _pair(image, focus, sigma, seeds, cfg, "conventional"))
    else:
        image_a, image_b, focused = _pair(image, focus, sigma, seeds, cfg, cfg.synthesis)
    sample = {"image": image, "image_a": image_a, "image_b": image_b, "focus": focus}
    if cfg.pair_focus is not None:  # for a trainer that treats such samples apart
        sample["pair_focused"] = focused
    return sample


# ---------------------------------------------------------------------------------------------
# Sources


def _file_source(cfg: _Stream):
    examples = list_examples(cfg, cfg.split)
    use_tf_image = all(e.image_path.lower().endswith(_TF_DECODABLE) for e in examples)
    use_tf_mask = all(e.mask_path is None or (
        e.mask_kind == "binary" and e.mask_path.lower().endswith(_TF_DECODABLE))
        for e in examples)
    has_masks = examples[0].mask_path is not None
    table = {
        "image_path": [e.image_path for e in examples],
        "mask_path": [e.mask_path or "" for e in examples],
        "mask_kind": [e.mask_kind for e in examples],
    }

    def load(seeds, ex):
        image = _to_float(_decode_image(ex["image_path"], use_tf_image))
        if has_masks:
            focus = _decode_focus(ex["mask_path"], ex["mask_kind"], use_tf_mask)
            check = tf.debugging.Assert(
                tf.reduce_all(tf.shape(focus)[:2] == tf.shape(image)[:2]),
                ["mask size differs from image:", ex["mask_path"]])
            with tf.control_dependencies([check]):
                focus = tf.identity(focus)
        else:
            focus = random_masks.random_smooth_mask(
                tf.shape(image)[0], tf.shape(image)[1], seeds[1])
        return _synthesise(image, focus, seeds, cfg)

    return tf.data.Dataset.from_tensor_slices(table), len(examples), load


def _embedded_source(cfg: _Stream):
    items = embedded.load_embedded(cfg.split)
    # A single pass (evaluation) shows every photo with several random masks, so that even the
    # two held-out photos fill a few batches.
    copies = 1 if cfg.repeat else _EMBEDDED_EVAL_COPIES
    table = {
        "raw": [im.tobytes() for _, im in items],
        "shape": np.array([im.shape for _, im in items], np.int32),
    }

    def load(seeds, ex):
        image = tf.reshape(tf.io.decode_raw(ex["raw"], tf.uint8), ex["shape"])
        image = _to_float(tf.ensure_shape(image, [None, None, 3]))
        focus = random_masks.random_smooth_mask(tf.shape(image)[0], tf.shape(image)[1], seeds[1])
        return _synthesise(image, focus, seeds, cfg)

    ds = tf.data.Dataset.from_tensor_slices(table).repeat(copies)
    return ds, len(items) * copies, load


def _tfds_source(cfg: _Stream, training: bool):
    import tensorflow_datasets as tfds

    from data_pipeline.tfds import register  # noqa: F401  (registers the builders)

    name = cfg.tfds_name
    base, _, version = name.partition(":")
    if base == "mfif_alpha_matte":  # no config named: the synthesis argument picks it
        if cfg.synthesis == MIXED_SYNTHESIS:
            raise readers.DataError(
                "synthesis 'mixed' draws the model per sample from image files; the tfds "
                "dataset holds pairs synthesised already: name one of its configs in "
                "--tfds_name (mfif_alpha_matte/alpha_matte or /conventional)")
        name = f"{base}/{cfg.synthesis}" + (f":{version}" if version else "")
    split = {"val": "validation"}.get(cfg.split, cfg.split)
    builder = tfds.builder(name, data_dir=cfg.tfds_data_dir or None)
    if not builder.is_prepared():
        raise readers.DataError(
            f"tfds dataset {name} is not built in {builder.data_dir_root}; build it with "
            f"python -m data_pipeline.tfds.build (see docs/data.md)")
    if split not in builder.info.splits:
        raise ValueError(f"tfds dataset {name} has splits {sorted(builder.info.splits)}, "
                         f"not {split!r}")
    if cfg.sigma_range is not None or cfg.sigma != 1.0:
        logging.info("source 'tfds': sigma comes from the built dataset (%s); the sigma "
                     "arguments are ignored", name)
    read_config = tfds.ReadConfig(shuffle_seed=cfg.seed)
    ds = builder.as_dataset(split=split, shuffle_files=training and cfg.shuffle,
                            read_config=read_config)
    n = builder.info.splits[split].num_examples

    def load(seeds, ex):
        del seeds  # already synthesised
        return {
            "image": _to_float(ex["image"]),
            "image_a": _to_float(ex["image_a"]),
            "image_b": _to_float(ex["image_b"]),
            "focus": tf.cast(ex["focus"] > 0, tf.float32),
        }

    return ds, n, load


def _plain(fn):
    """`fn` for `Dataset.map`, traced as written. The pipeline branches on tensors with
    `tf.cond` and on settings in Python, so AutoGraph's rewrite of it and of every function it
    calls would change nothing, and costs seconds of start-up in every process."""
    return tf.autograph.experimental.do_not_convert(fn)


def _swap_sources(ds: tf.data.Dataset, cfg: _Stream) -> tf.data.Dataset:
    """Swaps I_A and I_B, and F with 1 - F, in a random half of the samples of the batches.

    The synthesis always puts the sharp foreground in I_A (eqs. 10-13); users give sources in
    any order, so a model must not learn "I_A holds the near focus". The coins depend only on
    the seed and the sample's position in the stream.
    """

    def swap(coins, batch):
        n = tf.shape(batch["focus"])[0]
        flip = tf.reshape(coins[:n] < 0.5, [-1, 1, 1, 1])
        a, b, f = batch["image_a"], batch["image_b"], batch["focus"]
        out = dict(batch)
        out["image_a"] = tf.where(flip, b, a)
        out["image_b"] = tf.where(flip, a, b)
        out["focus"] = tf.where(flip, 1.0 - f, f)
        return out

    coins = tf.data.Dataset.random(seed=cfg.seed + _SWAP_SEED).map(
        _plain(lambda x: tf.cast(x % 1000, tf.float32) / 1000.0)).batch(cfg.batch_size)
    return tf.data.Dataset.zip(coins, ds).map(_plain(swap),
                                              num_parallel_calls=tf.data.AUTOTUNE)


def _build(cfg: _Stream, training: bool) -> tf.data.Dataset:
    if cfg.source == "embedded":
        ds, n, load = _embedded_source(cfg)
    elif cfg.source == "tfds":
        ds, n, load = _tfds_source(cfg, training)
    else:
        ds, n, load = _file_source(cfg)
    if n < cfg.batch_size and cfg.drop_remainder and not cfg.repeat:
        raise ValueError(f"{n} examples cannot fill one batch of {cfg.batch_size}")
    if cfg.shuffle:
        # File lists are small: shuffle all of them. Decoded tfds examples use the buffer.
        buffer = cfg.shuffle_buffer if cfg.source == "tfds" else max(n, 1)
        ds = ds.shuffle(buffer, seed=cfg.seed, reshuffle_each_iteration=True)
    if cfg.repeat:
        ds = ds.repeat()
    ds = ds.enumerate()
    def per_sample(index, ex):
        seeds = _element_seeds(index, cfg)
        return _finish(load(seeds, ex), seeds, cfg)

    ds = ds.map(_plain(per_sample), num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    ds = ds.batch(cfg.batch_size, drop_remainder=cfg.drop_remainder)
    if cfg.swap_sources:
        ds = _swap_sources(ds, cfg)
    options = tf.data.Options()
    options.deterministic = True
    ds = ds.with_options(options)
    return ds.prefetch(tf.data.AUTOTUNE)


def training_dataset(cfg: PipelineConfig, *, batch_size: int, seed: int = 0,
                     split: str = "train", repeat: bool = True,
                     synthesise: bool = True) -> tf.data.Dataset:
    """Batches of training pairs {image_a, image_b, focus, image} (see the module docstring)
    made as `cfg` says.

    Args:
      cfg: the data and its synthesis, crops and augmentations.
      batch_size: B; the last partial batch is dropped so every batch has a fixed shape.
      seed: fixes file order, masks, sigmas, crops, flips and swaps; same seed, same batches.
      split: "train" or "val" (a split file name for folders; "all" = every image).
      repeat: repeat forever (epochs reshuffled).
      synthesise: False leaves out the synthesis of file and embedded sources: I_A and I_B
        are then I itself, and image, focus, crops, flips and swaps are those of True. For
        callers that synthesise the sources themselves at the crop's resolution
        (`mfif_tf.train_refiner --texture`), which saves the blur at the photo's resolution.
    """
    return _build(_stream(cfg, split=split, batch_size=batch_size, seed=seed, repeat=repeat,
                          synthesise=synthesise), training=True)


def make_training_dataset(*, split: str = "train", batch_size: int = 4, seed: int = 0,
                          repeat: bool = True, synthesise: bool = True,
                          **settings: Any) -> tf.data.Dataset:
    """`training_dataset(PipelineConfig(**settings), ...)`: the settings as keyword arguments.

    `settings` are fields of `PipelineConfig` (source, data_dir, extra_dirs, tfds_name,
    tfds_data_dir, image_size, crop, center_crop_size, resize_shorter, synthesis, sigma,
    sigma_range, flip, swap_sources, shuffle_buffer), with its defaults; the other arguments
    are those of `training_dataset`.
    """
    return training_dataset(PipelineConfig(**settings), batch_size=batch_size, seed=seed,
                            split=split, repeat=repeat, synthesise=synthesise)


def make_eval_dataset(*, split: str = "val", batch_size: int = 4, seed: int = 0,
                      drop_remainder: bool = True, **settings: Any) -> tf.data.Dataset:
    """One pass over a validation split: centre crop, no flips, no swaps, no shuffling, no
    repeat.

    `settings` as in `make_training_dataset`, except crop, flip and swap_sources, which it
    fixes. Random masks and sigmas (embedded/plain sources, `sigma_range`) depend only on
    `seed` and the example's position, so every call yields the same batches.
    `drop_remainder=False` keeps the last, smaller batch.
    """
    fixed = sorted(set(settings) & set(_EVAL_FIXED))
    if fixed:
        raise TypeError(f"make_eval_dataset fixes {', '.join(_EVAL_FIXED)}; got {fixed}")
    cfg = PipelineConfig(**settings, crop="center", flip=False, swap_sources=False)
    stream = _stream(cfg, split=split, batch_size=batch_size, seed=seed, repeat=False,
                     shuffle=False, drop_remainder=drop_remainder)
    return _build(stream, training=False)


def describe(cfg: PipelineConfig, split: str = "train") -> str:
    """One line naming the data a config reads from `split` (for logs)."""
    where = {"embedded": "skimage.data", "tfds": cfg.tfds_name}.get(
        cfg.source, os.pathsep.join((cfg.data_dir or "",) + tuple(cfg.extra_dirs)))
    sig = f"sigma~U{cfg.sigma_range}" if cfg.sigma_range else f"sigma={cfg.sigma}"
    return f"{cfg.source}:{where} split={split} {cfg.synthesis} {sig} crop={cfg.crop}"
