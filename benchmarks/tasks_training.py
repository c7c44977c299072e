"""Measurements of training steps, the input pipeline and G's arithmetic (worker tasks).

Training steps run on a fixed synthetic batch (the conventional synthesis of eqs. 12-13 on
a texture), so the input pipeline is not in the step time; the pipeline is measured alone.
One adversarial iteration of section 4.1.2 is `critic_steps` (5) critic steps and one
generator step; the supervised warm-up of the shipped model is one L1-only generator step.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from benchmarks import flops as flops_lib
from benchmarks import machine
from benchmarks.timing import set_tf_threads, timed_runs


def _batch(tf, batch_size: int, size: int, seed: int) -> dict[str, Any]:
    from export.compare import synthetic_pair

    a, b, focus = synthetic_pair(size, size, seed=seed)
    tile = lambda x: np.repeat(x[None], batch_size, axis=0)  # noqa: E731
    return {"image_a": tf.constant(tile(a * 2.0 - 1.0)),
            "image_b": tf.constant(tile(b * 2.0 - 1.0)),
            "focus": tf.constant(tile(focus[..., None]))}


def training_task(spec: dict[str, Any]) -> dict[str, Any]:
    """Steps per second of `Trainer.warmup_step`, `critic_step` and `generator_step`."""
    tf = set_tf_threads(spec.get("threads", 0))
    import keras

    from mfif_tf import config as config_lib
    from mfif_tf.trainer import Trainer

    keras.utils.set_random_seed(spec.get("seed", 0))
    cfg = config_lib.TrainConfig(model=config_lib.model_config(spec["preset"]),
                                 batch_size=spec["batch"], jit_compile=spec["jit"],
                                 distribution="default", seed=spec.get("seed", 0))
    cfg.data = config_lib.DataConfig(image_size=spec["size"])
    cfg.validate()
    trainer = Trainer(cfg)
    trainer.set_learning_rates(0)
    batch = _batch(tf, spec["batch"], spec["size"], spec.get("seed", 0))
    row: dict[str, Any] = {"preset": spec["preset"], "batch": spec["batch"], "size": spec["size"],
                           "jit_compile": spec["jit"], "critic_steps": cfg.optim.critic_steps,
                           "setup_rss_mb": machine.rss_mb()}
    steps = {"warmup": trainer.warmup_step, "critic": trainer.critic_step,
             "generator": trainer.generator_step}
    for name, step in steps.items():
        def call(step=step):
            out = step(batch)
            return {k: float(v) for k, v in out.items()}

        start = time.perf_counter()
        call()  # tracing (and XLA compilation)
        row[f"{name}_first_call_s"] = time.perf_counter() - start
        call()
        runs = timed_runs(call, spec["repeats"], spec["budget_s"])
        row[f"{name}_runs"] = runs.summary()
        row[f"{name}_s"] = runs.median_wall
        row[f"{name}_cpu_s"] = runs.median_cpu
        if not all(np.isfinite(v) for v in runs.last.values()):
            raise FloatingPointError(f"{name} step gave non-finite losses {runs.last}")
    row["warmup_steps_per_s"] = 1.0 / row["warmup_s"]
    row["critic_steps_per_s"] = 1.0 / row["critic_s"]
    row["generator_steps_per_s"] = 1.0 / row["generator_s"]
    iteration = cfg.optim.critic_steps * row["critic_s"] + row["generator_s"]
    row["adversarial_iterations_per_s"] = 1.0 / iteration
    row["warmup_examples_per_s"] = spec["batch"] / row["warmup_s"]
    row["peak_rss_mb"] = machine.peak_rss_mb()
    return row


def pipeline_task(spec: dict[str, Any]) -> dict[str, Any]:
    """Examples per second of `make_training_dataset` alone (no model)."""
    tf = set_tf_threads(spec.get("threads", 0))
    from data_pipeline.benchmark import measure
    from data_pipeline.pipeline import make_training_dataset

    sigma_range = tuple(spec["sigma_range"]) if spec.get("sigma_range") else None
    dataset = make_training_dataset(
        source=spec["source"], data_dir=spec.get("data_dir") or None, batch_size=spec["batch"],
        image_size=spec["size"], crop=spec["crop"],
        center_crop_size=spec.get("center_crop_size", 178),
        resize_shorter=spec.get("resize_shorter", 288), sigma=spec.get("sigma", 1.0),
        sigma_range=sigma_range, seed=spec.get("seed", 0))
    if spec.get("threads"):
        options = tf.data.Options()
        options.threading.private_threadpool_size = spec["threads"]
        dataset = dataset.with_options(options)
    rates = [measure(dataset, spec["batches"], spec["warmup_batches"])
             for _ in range(spec.get("repeats", 1))]
    return {"source": spec["source"], "batch": spec["batch"], "size": spec["size"],
            "crop": spec["crop"], "examples_per_s": float(np.median(rates)),
            "runs": rates, "batches": spec["batches"], "peak_rss_mb": machine.peak_rss_mb()}


def _matmul_rate(tf, n: int, repeats: int, budget_s: float) -> dict[str, float]:
    """A float32 n x n matmul: the attainable rate of this CPU's FMA units under TF."""
    a = tf.random.stateless_normal([n, n], seed=[1, 2])
    b = tf.random.stateless_normal([n, n], seed=[3, 4])
    fn = tf.function(lambda: tf.linalg.matmul(a, b))
    fn().numpy()
    runs = timed_runs(lambda: fn().numpy(), max(repeats, 3), budget_s)
    flop = 2.0 * n**3
    return {"n": n, "gflops_wall": flop / runs.median_wall / 1e9,
            "gflops_per_cpu_second": flop / runs.median_cpu / 1e9, "runs": len(runs.wall)}


def _time_network(tf, generator, side: int, repeats: int, budget_s: float):
    """(first call seconds, `Runs`) of G as a `tf.function` on one side x side input."""
    net = tf.function(lambda t: generator(t, training=False))
    x = tf.random.stateless_uniform([1, side, side, 6], seed=[0, 1], minval=-1.0, maxval=1.0)
    start = time.perf_counter()
    net(x).numpy()
    first = time.perf_counter() - start
    return first, timed_runs(lambda: net(x).numpy(), repeats, budget_s)


def flops_task(spec: dict[str, Any]) -> dict[str, Any]:
    """Convolution FLOPs per megapixel of each preset (with TensorFlow's count as a check),
    the rate G reaches as a `tf.function` on a whole `side` x `side` image, and a matmul's."""
    tf = set_tf_threads(spec.get("threads", 0))
    import keras

    from mfif_tf.config import model_config
    from mfif_tf.networks import build_generator, count_trainable

    side = spec.get("side", 520)
    rows = {}
    for preset in spec["presets"]:
        keras.utils.set_random_seed(spec.get("seed", 0))
        generator = build_generator(model_config(preset))
        count = flops_lib.generator_flops(generator)
        check = flops_lib.profiler_conv_flops(generator, spec.get("probe_side", 64))
        analytic_conv2d = flops_lib.analytic_conv2d_part(count)
        first, runs = _time_network(tf, generator, side, spec["repeats"], spec["budget_s"])
        gflop = count["gflop_per_megapixel"] * side * side / 1e6
        rows[preset] = {
            "parameters": count_trainable(generator),
            "gflop_per_megapixel": count["gflop_per_megapixel"],
            "stem_gflop_per_mp": count["stem"] * 1e-3,
            "blocks_gflop_per_mp": count["blocks"] * 1e-3,
            "decoder_gflop_per_mp": count["decoder"] * 1e-3,
            "layers": [{"name": n, "flops_per_pixel": f, "branches": b}
                       for n, f, b in count["layers"]],
            "tf_conv2d_per_pixel": check["Conv2D"],
            "tf_conv2d_transpose_per_pixel": check["Conv2DBackpropInput"],
            "analytic_conv2d_per_pixel": analytic_conv2d,
            "analytic_conv2d_transpose_per_pixel": count["per_pixel"] - analytic_conv2d,
            "network_side": side,
            "network_first_call_s": first,
            "network": runs.summary(),
            "network_gflops_wall": gflop / runs.median_wall,
            "network_gflops_per_cpu_second": gflop / runs.median_cpu,
        }
    return {"presets": rows, "probe_side": spec.get("probe_side", 64),
            "matmul": _matmul_rate(tf, 2048, spec["repeats"], spec["budget_s"]),
            "peak_rss_mb": machine.peak_rss_mb()}
