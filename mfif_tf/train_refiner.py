"""Trains the refinement head R of coarse-to-fine fusion (`mfif_tf.refiner`) against exact maps.

  python -m mfif_tf.train_refiner --flagfile=configs/refiner.flags --workdir=runs/refiner

G is frozen (the packaged model, or --generator). Each step draws synthetic pairs of the
alpha-matte model (eqs. 10-11) and of the conventional model (eqs. 12-13), half and half,
with their exact F; G runs on the sources area-downscaled by a random factor in
[--min_factor, --max_factor] (1 for the refined mode; 2 for the step from one resolution
level of `mfif_tf.inference`'s coarse_to_fine mode to the next),
its map is brought back up bilinearly as c, and R learns to redraw c's outline on the
full-resolution pixels: binary cross-entropy against F over R's band (eq. 4's role for G).
Sensor noise of a random strength is added to both sources after the synthesis, so R does
not mistake noise for focus; with --jpeg_quality half of the pairs are then JPEG-compressed,
so that it does not mistake block artefacts for focus either. In half of the samples I_A and
I_B are swapped (F -> 1 - F). With --regimes each step also mixes image scales in equal
shares (e.g. `288:1:6,640:1:16`: photos resized to a shorter side of 288 with 1-6 px blur, and
to 640 with 1-16 px blur), so that one R serves small pairs and the blur of tens of pixels of
large photos.

With --texture (for large scales, where the training photos are enlarged and so carry no
texture at the pixel scale, unlike a camera's), the sources are synthesised again at the
training resolution from the all-in-focus crop plus fine Gaussian texture of a random std in
[lo, hi] / 255 (before the blur: only the in-focus regions keep it), each sample with its
stream's model and a sigma drawn from its regime's LO:HI, in pixels of the training
resolution.

With --init_refiner, R starts from a packaged head (or any saved R) instead of at random:
fine-tuning on other data or another regime, with a fresh Adam and the learning rate's own
linear decay over --num_steps.

Resumable: checkpoints in WORKDIR/checkpoints every --checkpoint_every steps; the same command
continues from the latest one. WORKDIR/refiner/ holds the latest weights in the packaged
format (`refiner.weights.h5`, `refiner.json`).
"""

from __future__ import annotations

import json
import os
import sys
import time

from absl import app, flags

from mfif_tf.cli import parse_flags

FLAGS = flags.FLAGS

flags.DEFINE_string("workdir", None, "Where checkpoints, logs and the weights go.")
flags.DEFINE_string("generator", "default", "G that makes the coarse maps: 'default' or a "
                    "model directory / training work dir.")
flags.DEFINE_string("data_dir", None, "Mask folder (images/, masks/, train.txt).")
flags.DEFINE_integer("num_steps", 1500, "Training steps.")
flags.DEFINE_integer("batch_size", 8, "Pairs per step (half of each synthesis model).")
flags.DEFINE_integer("image_size", 192, "Crop side at full resolution.")
flags.DEFINE_integer("resize_shorter", 288, "Images are resized to this shorter side first.")
flags.DEFINE_list("sigma_range", ["1.0", "6.0"], "Blur sigma ~ U[lo, hi] (pixels).")
flags.DEFINE_list("regimes", [], "Image scales to mix, each SHORTER:LO:HI (resize to a shorter "
                  "side of SHORTER, blur sigma ~ U[LO, HI]); every step takes an equal share of "
                  "each (and of each synthesis model). Default: --resize_shorter and "
                  "--sigma_range alone.")
flags.DEFINE_float("min_factor", 1.0, "Downscaling factors of G's pass ~ U[min_factor, "
                   "max_factor].")
flags.DEFINE_float("max_factor", 2.0, "Downscaling factors of G's pass ~ U[min_factor, "
                   "max_factor]; 1 for the refined mode (G at full resolution), 2 for one "
                   "octave of coarse_to_fine.")
flags.DEFINE_float("max_noise", 3.0, "Sensor noise std ~ U[0, max_noise] / 255.")
flags.DEFINE_list("texture", [], "lo,hi: synthesise the sources again at the training "
                  "resolution from the all-in-focus crop plus Gaussian texture of std ~ U[lo, "
                  "hi] / 255, with sigma from the regime's LO:HI in training-resolution "
                  "pixels (default: off).")
flags.DEFINE_list("pair_focus", [], "lo,hi (0 < lo <= hi <= 1), with --texture: a share "
                  "(--pair_focus_share) of the pairs have I_B focused between the layers, at "
                  "t ~ U[lo, hi] of the way from the foreground to the background "
                  "(foreground blurred t sigma, background (1 - t) sigma), as a focus "
                  "stack's middle frames are.")
flags.DEFINE_float("pair_focus_share", 0.5, "With --pair_focus: the share of such pairs.")
flags.DEFINE_integer("texture_min_shorter", 0, "With --texture: add the texture only to "
                     "samples of regimes whose SHORTER is at least this (the others are "
                     "synthesised at the training resolution without it).")
flags.DEFINE_list("jpeg_quality", [], "lo,hi: half of the pairs are JPEG-compressed at a "
                  "quality ~ U[lo, hi] after the noise, as most photos are (default: none).")
flags.DEFINE_integer("channels", 24, "R's hidden channels.")
flags.DEFINE_integer("layers", 4, "R's 3x3 convolutions (also its halo in pixels).")
flags.DEFINE_integer("band_grow", 4, "Pixels by which the band where R runs is grown when it "
                     "fuses, saved in R's config (a setting of the fusion; the training loss's "
                     "band is grown by refiner.BAND_GROW whatever this is).")
flags.DEFINE_string("init_refiner", None, "Start R from these weights instead of at random: "
                    "'default' (the packaged R of the refined mode), 'g_side' or "
                    "'coarse_to_fine' (the other packaged heads), or a folder holding "
                    "refiner.weights.h5 (a train_refiner work dir's refiner/). Its --channels "
                    "and --layers must match. Ignored when the work dir has a checkpoint "
                    "(the run resumes from it).")
flags.DEFINE_float("learning_rate", 1e-3, "Adam learning rate (decays linearly to 0).")
flags.DEFINE_integer("seed", 0, "Seed of data and initialisation.")
flags.DEFINE_integer("log_every", 25, "Steps between log lines.")
flags.DEFINE_integer("checkpoint_every", 100, "Steps between checkpoints.")


def _streams(batch: int, regimes) -> tuple[int, list[tuple[str, tuple]]]:
    """(pairs per stream, [(synthesis model, regime)] in batch order): one stream per
    regime and model, alpha-matte (eqs. 10-11) then conventional (eqs. 12-13)."""
    share = max(1, batch // (2 * len(regimes)))
    return share, [(m, r) for r in regimes for m in ("alpha_matte", "conventional")]


def _per_sample(batch: int, regimes, value) -> list:
    """value(synthesis model, regime) for each sample of a batch, in `_streams` order."""
    share, streams = _streams(batch, regimes)
    return [value(m, r) for m, r in streams for _ in range(share)]


def textured_samples(batch: int, regimes, min_shorter: int) -> list[float]:
    """Per sample of a batch: 1.0 where --texture applies (its regime's SHORTER is at least
    `min_shorter`), else 0.0."""
    return _per_sample(batch, regimes, lambda m, r: float(r[0] >= min_shorter))


def _datasets(tf, data_dir: str, batch: int, size: int, regimes, seed: int,
              synthesise: bool = True):
    """One stream per (regime, synthesis model), batch / streams pairs each, joined; without
    `synthesise` (--texture) only I and F are made, the sources being I (same crops)."""
    from data_pipeline.pipeline import make_training_dataset

    share, streams = _streams(batch, regimes)
    streams = [
        make_training_dataset(source="folder", data_dir=data_dir, split="train",
                              batch_size=share, image_size=size, crop="random",
                              resize_shorter=shorter, synthesis=method,
                              sigma_range=sigma_range, seed=seed + k,
                              synthesise=synthesise)
        for k, (method, (shorter, sigma_range)) in enumerate(streams)
    ]

    def join(*parts):
        return {key: tf.concat([p[key] for p in parts], axis=0)
                for key in ("image", "image_a", "image_b", "focus")}

    return tf.data.Dataset.zip(*streams).map(join).prefetch(2)


def textured_pairs(image, focus, sigma, alpha, texture, b_focus=None):
    """(I_A, I_B) synthesised from the all-in-focus crops `image` (N, S, S, 3) in [0, 1] plus
    `texture` (same shape; added before the blur, clipped to [0, 1]), with masks `focus`
    (N, S, S, 1), a blur sigma (N,) per sample, the alpha-matte model (eqs. 10-11) where
    `alpha` (N,) is true and the conventional one (eqs. 12-13) elsewhere. `b_focus` (N,)
    in (0, 1], optional: I_B focused at that fraction of the way from the foreground to the
    background (`synthesis.focused_frame` with t sigma and (1 - t) sigma; 1 is eq. 11 / 13's
    I_B)."""
    import tensorflow as tf  # pylint: disable=import-outside-toplevel

    from data_pipeline import synthesis  # pylint: disable=import-outside-toplevel

    image = tf.clip_by_value(image + texture, 0.0, 1.0)

    if b_focus is None:
        b_focus = tf.ones_like(sigma)

    def pair(i, m, s, method, t):
        a, b = synthesis.synthesize_pair(i, m, s, method)
        return a, tf.cond(t < 1.0, lambda: synthesis.focused_frame(i, m, t * s, (1.0 - t) * s,
                                                                   method), lambda: b)

    def one(args):
        i, m, s, is_alpha, t = args
        return tf.cond(is_alpha, lambda: pair(i, m, s, "alpha_matte", t),
                       lambda: pair(i, m, s, "conventional", t))

    signature = (tf.TensorSpec(image.shape[1:], tf.float32),) * 2
    return tf.map_fn(one, (image, focus, sigma, alpha, b_focus), fn_output_signature=signature)


def parse_regimes(entries, shorter: int, sigma_range) -> list[tuple[int, tuple[float, float]]]:
    """--regimes entries SHORTER:LO:HI (or the single regime of --resize_shorter and
    --sigma_range); ValueError names a bad entry."""
    if not entries:
        return [(shorter, tuple(sigma_range))]
    regimes = []
    for entry in entries:
        try:
            side, lo, hi = entry.split(":")
            regime = (int(side), (float(lo), float(hi)))
        except ValueError:
            raise ValueError(f"--regimes entries must be SHORTER:LO:HI, got {entry!r}") from None
        if regime[0] < 1 or not 0 < regime[1][0] <= regime[1][1]:
            raise ValueError(f"--regimes entry {entry!r} needs SHORTER >= 1 and 0 < LO <= HI")
        regimes.append(regime)
    return regimes


def main(argv: list[str]) -> int:
    del argv
    if not FLAGS.workdir:
        print("train_refiner: --workdir is required", file=sys.stderr)
        return 2
    if not FLAGS.data_dir or not os.path.isdir(FLAGS.data_dir):
        print(f"train_refiner: --data_dir {FLAGS.data_dir!r} is not a folder", file=sys.stderr)
        return 2
    try:
        sigma_range = tuple(float(s) for s in FLAGS.sigma_range)
        if len(sigma_range) != 2 or not 0 < sigma_range[0] <= sigma_range[1]:
            raise ValueError
    except ValueError:
        print(f"train_refiner: --sigma_range must be lo,hi with 0 < lo <= hi, got "
              f"{','.join(FLAGS.sigma_range)}", file=sys.stderr)
        return 2
    try:
        jpeg = tuple(int(q) for q in FLAGS.jpeg_quality)
        if jpeg and (len(jpeg) != 2 or not 1 <= jpeg[0] <= jpeg[1] <= 100):
            raise ValueError
    except ValueError:
        print(f"train_refiner: --jpeg_quality must be lo,hi with 1 <= lo <= hi <= 100, got "
              f"{','.join(FLAGS.jpeg_quality)}", file=sys.stderr)
        return 2
    try:
        texture = tuple(float(v) for v in FLAGS.texture)
        if texture and (len(texture) != 2 or not 0 <= texture[0] <= texture[1]):
            raise ValueError
    except ValueError:
        print(f"train_refiner: --texture must be lo,hi with 0 <= lo <= hi, got "
              f"{','.join(FLAGS.texture)}", file=sys.stderr)
        return 2
    try:
        pair_focus = tuple(float(v) for v in FLAGS.pair_focus)
        if pair_focus and (len(pair_focus) != 2 or not 0 < pair_focus[0] <= pair_focus[1] <= 1
                           or not 0 <= FLAGS.pair_focus_share <= 1):
            raise ValueError
    except ValueError:
        print(f"train_refiner: --pair_focus must be lo,hi with 0 < lo <= hi <= 1 and "
              f"--pair_focus_share in [0, 1], got {','.join(FLAGS.pair_focus)} and "
              f"{FLAGS.pair_focus_share}", file=sys.stderr)
        return 2
    if pair_focus and not texture:
        print("train_refiner: --pair_focus needs --texture (the sources are then synthesised "
              "in the training step)", file=sys.stderr)
        return 2
    try:
        regimes = parse_regimes(FLAGS.regimes, FLAGS.resize_shorter, sigma_range)
    except ValueError as e:
        print(f"train_refiner: {e}", file=sys.stderr)
        return 2
    if FLAGS.batch_size < 2 * len(regimes):
        print(f"train_refiner: --batch_size must be at least 2 per regime "
              f"({2 * len(regimes)}), got {FLAGS.batch_size}", file=sys.stderr)
        return 2
    if FLAGS.band_grow < 0:
        print(f"train_refiner: --band_grow must be at least 0, got {FLAGS.band_grow}",
              file=sys.stderr)
        return 2
    if not 1.0 <= FLAGS.min_factor <= FLAGS.max_factor:
        print(f"train_refiner: need 1 <= --min_factor <= --max_factor, got "
              f"{FLAGS.min_factor}, {FLAGS.max_factor}", file=sys.stderr)
        return 2

    init_dir = None
    if FLAGS.init_refiner:
        try:
            init_dir = init_refiner_dir(FLAGS.init_refiner, FLAGS.channels, FLAGS.layers)
        except ValueError as e:
            print(f"train_refiner: {e}", file=sys.stderr)
            return 2

    import tensorflow as tf  # pylint: disable=import-outside-toplevel

    from mfif_tf import fusion, inference, refiner as refiner_lib

    tf.random.set_seed(FLAGS.seed)
    generator = fusion.resolve_generator(FLAGS.generator)
    generator.trainable = False
    refiner = refiner_lib.build_refiner(
        refiner_lib.RefinerConfig(channels=FLAGS.channels, layers=FLAGS.layers,
                                  band_grow=FLAGS.band_grow))
    schedule = keras_linear_decay(FLAGS.learning_rate, FLAGS.num_steps)
    optimizer = tf.keras.optimizers.Adam(schedule)
    # Built before the checkpoint is read, so that the restore can check that every value
    # in it found its variable (R, Adam's step and moments, the step, the RNG).
    optimizer.build(refiner.trainable_variables)
    step_var = tf.Variable(0, dtype=tf.int64, name="step")
    rng = tf.random.Generator.from_seed(FLAGS.seed + 17)
    checkpoint = tf.train.Checkpoint(refiner=refiner, optimizer=optimizer, step=step_var,
                                     rng=rng)
    manager = tf.train.CheckpointManager(checkpoint, os.path.join(FLAGS.workdir, "checkpoints"),
                                         max_to_keep=3)
    if manager.latest_checkpoint:
        checkpoint.restore(manager.latest_checkpoint).assert_consumed()
        print(f"resumed from {manager.latest_checkpoint} (step {int(step_var.numpy())})",
              flush=True)
    elif init_dir is not None:
        refiner.load_weights(os.path.join(init_dir, refiner_lib.REFINER_WEIGHTS_FILE))
        print(f"R starts from {init_dir}", flush=True)
    os.makedirs(FLAGS.workdir, exist_ok=True)
    with open(os.path.join(FLAGS.workdir, "flags.json"), "w") as f:
        json.dump({k: getattr(FLAGS, k) for k in (
            "generator", "data_dir", "num_steps", "batch_size", "image_size", "resize_shorter",
            "sigma_range", "regimes", "min_factor", "max_factor", "max_noise", "texture",
            "texture_min_shorter", "pair_focus", "pair_focus_share", "jpeg_quality", "init_refiner",
            "channels", "layers", "band_grow", "learning_rate", "seed")}, f, indent=2)

    data = iter(_datasets(tf, FLAGS.data_dir, FLAGS.batch_size, FLAGS.image_size,
                          regimes, FLAGS.seed + 1000 * int(step_var.numpy()),
                          synthesise=not texture))
    size = FLAGS.image_size
    # Sample i of a batch comes from stream i // share (`_datasets`).
    sigma_lo = tf.constant(_per_sample(FLAGS.batch_size, regimes, lambda m, r: r[1][0]),
                           tf.float32)
    sigma_hi = tf.constant(_per_sample(FLAGS.batch_size, regimes, lambda m, r: r[1][1]),
                           tf.float32)
    alpha = tf.constant(_per_sample(FLAGS.batch_size, regimes,
                                    lambda m, r: m == "alpha_matte"))
    textured = tf.reshape(tf.constant(textured_samples(FLAGS.batch_size, regimes,
                                                      FLAGS.texture_min_shorter),
                                     tf.float32), [-1, 1, 1, 1])

    def synthesise_again(batch):
        """--texture: the sources made again from I + texture at the training resolution."""
        image = (batch["image"] + 1.0) * 0.5
        n = tf.shape(image)[0]
        # The draws in this order: the shipped head was trained with it.
        std = rng.uniform([n, 1, 1, 1], texture[0] / 255.0, texture[1] / 255.0 + 1e-9)
        grain = textured * std * rng.normal(tf.shape(image))
        sigma = sigma_lo + (sigma_hi - sigma_lo) * rng.uniform([n])
        b_focus = None
        if pair_focus:  # drawn after the others, so that runs without it draw as before
            between = rng.uniform([n]) < FLAGS.pair_focus_share
            b_focus = tf.where(between, rng.uniform([n], pair_focus[0], pair_focus[1]), 1.0)
        return textured_pairs(image, batch["focus"], sigma, alpha, grain, b_focus)

    @tf.function
    def train_step(batch):
        if texture:
            a, b = synthesise_again(batch)
        else:
            a = (batch["image_a"] + 1.0) * 0.5
            b = (batch["image_b"] + 1.0) * 0.5
        focus = batch["focus"]
        n = tf.shape(a)[0]
        swap = tf.reshape(rng.uniform([n]) < 0.5, [-1, 1, 1, 1])
        a, b, focus = tf.where(swap, b, a), tf.where(swap, a, b), tf.where(swap, 1.0 - focus,
                                                                             focus)
        noise = rng.uniform([n, 1, 1, 1], 0.0, FLAGS.max_noise / 255.0)
        a = tf.clip_by_value(a + noise * rng.normal(tf.shape(a)), 0.0, 1.0)
        b = tf.clip_by_value(b + noise * rng.normal(tf.shape(b)), 0.0, 1.0)
        if jpeg:
            quality = tf.cast(rng.uniform([n], jpeg[0], jpeg[1] + 1), tf.int32)
            compress = rng.uniform([n]) < 0.5

            def maybe_jpeg(args):
                image, q, on = args
                return tf.cond(on, lambda: tf.image.adjust_jpeg_quality(image, q),
                               lambda: image)

            signature = tf.TensorSpec([None, None, 3], tf.float32)
            a = tf.map_fn(maybe_jpeg, (a, quality, compress), fn_output_signature=signature)
            b = tf.map_fn(maybe_jpeg, (b, quality, compress), fn_output_signature=signature)
            a = tf.reshape(a, [n, size, size, 3])
            b = tf.reshape(b, [n, size, size, 3])
        factor = rng.uniform([], FLAGS.min_factor, FLAGS.max_factor)
        small = tf.cast(tf.round(size / factor), tf.int32)
        x = tf.concat([a, b], axis=-1)
        x_small = tf.image.resize(x, [small, small], method="area")
        coarse = generator(x_small * 2.0 - 1.0, training=False)
        coarse = tf.image.resize(coarse, [size, size], method="bilinear")
        region = tf.cast(refiner_lib.band(coarse), tf.float32)
        with tf.GradientTape() as tape:
            halo = refiner.halo
            refined = refiner(inference.replicate_pad(refiner_lib.refiner_input(a, b, coarse),
                                                      halo, halo, halo, halo), training=True)
            p = tf.clip_by_value(refined, 1e-6, 1.0 - 1e-6)
            bce = -(focus * tf.math.log(p) + (1.0 - focus) * tf.math.log(1.0 - p))
            loss = tf.reduce_sum(bce * region) / (tf.reduce_sum(region) + 1.0)
        grads = tape.gradient(loss, refiner.trainable_variables)
        optimizer.apply_gradients(zip(grads, refiner.trainable_variables))
        right = tf.cast(tf.equal(refined > 0.5, focus > 0.5), tf.float32)
        before = tf.cast(tf.equal(coarse > 0.5, focus > 0.5), tf.float32)
        denom = tf.reduce_sum(region) + 1.0
        return (loss, tf.reduce_mean(region), tf.reduce_sum(right * region) / denom,
                tf.reduce_sum(before * region) / denom)

    # The flagfile(s) of the command line, recorded with the weights (absl consumes them).
    flagfile = ",".join(a.split("=", 1)[1] for a in sys.argv if a.startswith("--flagfile="))
    start, first = time.perf_counter(), int(step_var.numpy())
    sums = None
    while int(step_var.numpy()) < FLAGS.num_steps:
        out = [float(v) for v in train_step(next(data))]
        step_var.assign_add(1)
        step = int(step_var.numpy())
        sums = out if sums is None else [s + v for s, v in zip(sums, out)]
        if step % FLAGS.log_every == 0 or step == FLAGS.num_steps:
            k = FLAGS.log_every if step % FLAGS.log_every == 0 else step % FLAGS.log_every
            loss, frac, acc, acc0 = (s / k for s in sums)
            rate = (step - first) / (time.perf_counter() - start)
            eta = (FLAGS.num_steps - step) / max(rate, 1e-9)
            print(f"step {step}/{FLAGS.num_steps} loss {loss:.4f} band {frac:.3f} "
                  f"band accuracy {acc0:.4f} -> {acc:.4f} ({rate:.2f} steps/s, "
                  f"eta {eta / 60:.1f} min)", flush=True)
            sums = None
        if step % FLAGS.checkpoint_every == 0 or step == FLAGS.num_steps:
            manager.save(checkpoint_number=step)
            refiner_lib.save_refiner(refiner, os.path.join(FLAGS.workdir, "refiner"),
                                     info={"steps": step, "flagfile": flagfile,
                                           "init_refiner": FLAGS.init_refiner or None})
    return 0


def init_refiner_dir(name: str, channels: int, layers: int) -> str:
    """The folder of --init_refiner: a packaged head by name ('default', 'g_side',
    'coarse_to_fine'), else `name` itself or its refiner/ (a work dir). ValueError when it
    holds no R or one of another size than --channels/--layers."""
    from mfif_tf import common  # pylint: disable=import-outside-toplevel

    packaged = dict(common.PACKAGED_REFINER_DIRS, default=common.PACKAGED_MODEL_DIR)
    candidates = [packaged[name]] if name in packaged else [name, os.path.join(name, "refiner")]
    path = next((p for p in candidates
                 if os.path.isfile(os.path.join(p, common.REFINER_WEIGHTS_FILE))), None)
    if path is None:
        raise ValueError(f"--init_refiner {name!r}: no {common.REFINER_WEIGHTS_FILE} there "
                         f"(give 'default', 'g_side', 'coarse_to_fine' or a folder)")
    try:
        with open(os.path.join(path, common.REFINER_CONFIG_FILE)) as f:
            config = json.load(f)["refiner"]
        size = (int(config["channels"]), int(config["layers"]))
    except (OSError, ValueError, KeyError, TypeError):
        raise ValueError(f"--init_refiner {name!r}: {path} has no readable "
                         f"{common.REFINER_CONFIG_FILE}") from None
    if size != (channels, layers):
        raise ValueError(f"--init_refiner {name!r} has {size[0]} channels and {size[1]} "
                         f"layers; --channels {channels} --layers {layers} must match")
    return path


def keras_linear_decay(initial: float, steps: int):
    import keras  # pylint: disable=import-outside-toplevel

    return keras.optimizers.schedules.PolynomialDecay(initial, max(1, steps), 0.0, power=1.0)


def run() -> None:
    app.run(lambda argv: sys.exit(main(argv)), flags_parser=parse_flags)


if __name__ == "__main__":
    run()
