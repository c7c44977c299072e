"""Times small region removal (section 3.3): the TensorFlow op against skimage, and TFLite.

  python benchmarks/srr_bench.py --json_out=srr_bench.json

The default maps look like generator output F_hat: smooth blobs with soft edges, small islands
along the edges, and speckle (a fraction of pixels replaced by uniform noise); `--maps` adds
adversarial ones. For each size it reports the median wall time of the TF op (a `tf.function`,
after warm-up) and of skimage's two passes (`remove_small_objects` on the map, then on the
inverted result), their ratio, the median CPU time of both (less sensitive to other load on
the machine; TF may use several threads), the union-find rounds, and checks that both give the
same map. The TFLite model (builtin ops only) is timed at one fixed size.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import time
from typing import Any, Callable

import cv2
import numpy as np
from absl import app, flags

_SIZES = flags.DEFINE_list(
    "sizes", ["520x520", "3840x2160", "6000x4000"], "Map sizes as WIDTHxHEIGHT."
)
_REPEATS = flags.DEFINE_integer("repeats", 5, "Timed runs per measurement (median reported).")
_SPECKLE = flags.DEFINE_float("speckle", 0.01, "Fraction of pixels replaced by uniform noise.")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the synthetic maps.")
_MAPS = flags.DEFINE_list(
    "maps",
    ["focus"],
    "Map kinds: focus (F_hat-like blobs and speckle), serpentine (one-pixel vertical lines "
    "joined at alternate ends: one region, one run per pixel), percolation (i.i.d. noise at "
    "density 0.593, near the percolation threshold: huge tangled regions).",
)
_THREADS = flags.DEFINE_integer("threads", 0, "TF intra-op threads (0: TF default).")
_TFLITE_SIZE = flags.DEFINE_integer("tflite_size", 512, "Side of the square TFLite map; 0 skips.")
_JSON_OUT = flags.DEFINE_string("json_out", "srr_bench.json", "Where to write the results.")
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Replace an existing --json_out file.")


def focus_map_like(height: int, width: int, seed: int, speckle: float) -> np.ndarray:
    """A synthetic F_hat in [0, 1] of shape (height, width), float32."""
    rng = np.random.default_rng(seed)

    def smooth_noise(cell: int) -> np.ndarray:
        coarse = rng.standard_normal((height // cell + 2, width // cell + 2)).astype(np.float32)
        return cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)

    # Blobs about a sixth of the image across; 12-px texture makes islands near their edges.
    logits = 4.0 * smooth_noise(max(2, max(height, width) // 6)) + 1.2 * smooth_noise(12)
    f_hat = 1.0 / (1.0 + np.exp(-logits))
    noisy = rng.random((height, width), dtype=np.float32) < speckle
    f_hat[noisy] = rng.random(int(noisy.sum()), dtype=np.float32)
    return f_hat


def make_map(kind: str, height: int, width: int, seed: int, speckle: float) -> np.ndarray:
    if kind == "focus":
        return focus_map_like(height, width, seed, speckle)
    if kind == "serpentine":
        m = np.zeros((height, width), np.float32)
        m[:, 0::2] = 1
        m[0, 1::4] = 1
        m[height - 1, 3::4] = 1
        return m
    if kind == "percolation":
        return (np.random.default_rng(seed).random((height, width)) < 0.593).astype(np.float32)
    raise ValueError(f"unknown map kind {kind!r}")


def skimage_srr(binary: np.ndarray, n: int) -> np.ndarray:
    """The reference: regions of fewer than n pixels removed, foreground then background."""
    from skimage.morphology import remove_small_objects

    if n <= 1:
        return binary.copy()
    # skimage >= 0.26: max_size=n - 1 removes components of at most n - 1 pixels.
    fg = remove_small_objects(binary, max_size=n - 1, connectivity=1)
    return ~remove_small_objects(~fg, max_size=n - 1, connectivity=1)


def median_time(fn: Callable[[], Any], repeats: int, cpu: bool = False) -> float:
    """Median wall time of fn(), or median CPU time of this process (all threads) if cpu."""
    clock = time.process_time if cpu else time.perf_counter
    times = []
    for _ in range(repeats):
        start = clock()
        fn()
        times.append(clock() - start)
    return statistics.median(times)


def bench_size(kind: str, width: int, height: int, srr_fn, repeats: int) -> dict[str, Any]:
    import tensorflow as tf

    from mfif_tf import srr

    f_hat = make_map(kind, height, width, _SEED.value, _SPECKLE.value)
    binary = f_hat > 0.5
    n = int(srr.default_min_size(height, width))
    x = tf.constant(f_hat[None, ..., None])

    want = skimage_srr(binary, n)  # warm-up too
    t_skimage = median_time(lambda: skimage_srr(binary, n), repeats)
    got, stats = srr_fn(x)  # traces once
    got, stats = srr_fn(x)
    t_tf = median_time(lambda: srr_fn(x)[0].numpy(), repeats)
    cpu_skimage = median_time(lambda: skimage_srr(binary, n), repeats, cpu=True)
    cpu_tf = median_time(lambda: srr_fn(x)[0].numpy(), repeats, cpu=True)
    equal = bool(np.array_equal(got.numpy()[0, ..., 0] > 0.5, want))
    stats = {k: int(v) for k, v in stats._asdict().items()}
    return {
        "map": kind,
        "width": width,
        "height": height,
        "min_size": n,
        "skimage_s": t_skimage,
        "tf_s": t_tf,
        "tf_over_skimage": t_tf / t_skimage,
        "skimage_cpu_s": cpu_skimage,
        "tf_cpu_s": cpu_tf,
        "equal_to_skimage": equal,
        "foreground_fraction": float(binary.mean()),
        "changed_pixels": int((want != binary).sum()),
        **stats,
    }


def bench_tflite(side: int, repeats: int, threads: int) -> dict[str, Any]:
    import tensorflow as tf
    from ai_edge_litert.interpreter import Interpreter

    from mfif_tf import srr

    fn = tf.function(lambda f_hat: srr.small_region_removal(f_hat)).get_concrete_function(
        tf.TensorSpec([1, side, side, 1], tf.float32)
    )
    converter = tf.lite.TFLiteConverter.from_concrete_functions([fn])
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    model = converter.convert()
    interpreter = Interpreter(model_content=model, num_threads=threads or None)
    interpreter.allocate_tensors()
    inp = interpreter.get_input_details()[0]["index"]
    out = interpreter.get_output_details()[0]["index"]
    f_hat = focus_map_like(side, side, _SEED.value, _SPECKLE.value)
    n = int(srr.default_min_size(side, side))

    def run() -> np.ndarray:
        interpreter.set_tensor(inp, f_hat[None, ..., None])
        interpreter.invoke()
        return interpreter.get_tensor(out)

    got = run()
    want = skimage_srr(f_hat > 0.5, n)
    x = tf.constant(f_hat[None, ..., None])
    fn(x)  # warm-up
    return {
        "width": side,
        "height": side,
        "min_size": n,
        "model_bytes": len(model),
        "tflite_s": median_time(run, repeats),
        "tf_s": median_time(lambda: fn(x).numpy(), repeats),
        "skimage_s": median_time(lambda: skimage_srr(f_hat > 0.5, n), repeats),
        "equal_to_skimage": bool(np.array_equal(got[0, ..., 0] > 0.5, want)),
    }


def markdown(rows: list[dict[str, Any]], tflite: dict[str, Any] | None) -> str:
    lines = [
        "| map | size | N | runs | rounds fg/bg | jumps | skimage (s) | TF (s) | TF / skimage "
        "| skimage CPU (s) | TF CPU (s) | equal |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['map']} | {r['width']}x{r['height']} | {r['min_size']} | {r['num_runs']} | "
            f"{r['rounds_fg']}/{r['rounds_bg']} | {r['jumps']} | {r['skimage_s']:.4f} | "
            f"{r['tf_s']:.4f} | {r['tf_over_skimage']:.2f} | {r['skimage_cpu_s']:.4f} | "
            f"{r['tf_cpu_s']:.4f} | {r['equal_to_skimage']} |"
        )
    if tflite:
        lines += [
            "",
            "| TFLite map | skimage (s) | TF (s) | TFLite (s) | TFLite / skimage | equal |",
            "|---|---|---|---|---|---|",
            f"| {tflite['width']}x{tflite['height']} | {tflite['skimage_s']:.4f} | "
            f"{tflite['tf_s']:.4f} | {tflite['tflite_s']:.4f} | "
            f"{tflite['tflite_s'] / tflite['skimage_s']:.2f} | {tflite['equal_to_skimage']} |",
        ]
    return "\n".join(lines)


def main(argv: list[str]) -> None:
    del argv
    out_path = _JSON_OUT.value
    if os.path.exists(out_path) and not _OVERWRITE.value:
        sys.exit(f"error: {out_path} exists; pass --overwrite to replace it")
    for kind in _MAPS.value:
        if kind not in ("focus", "serpentine", "percolation"):
            sys.exit(f"error: --maps entry {kind!r} is not focus, serpentine or percolation")
    sizes = []
    for text in _SIZES.value:
        try:
            width, height = (int(v) for v in text.lower().split("x"))
        except ValueError:
            sys.exit(f"error: --sizes entry {text!r} is not WIDTHxHEIGHT")
        sizes.append((width, height))

    load_at_start = os.getloadavg()[0]  # other processes skew timings; recorded in the JSON
    import tensorflow as tf

    from mfif_tf import srr

    if _THREADS.value:
        tf.config.threading.set_intra_op_parallelism_threads(_THREADS.value)
        tf.config.threading.set_inter_op_parallelism_threads(1)

    srr_fn = tf.function(
        srr.small_region_removal_with_stats,
        input_signature=[tf.TensorSpec([None, None, None, 1], tf.float32)],
    )
    rows = []
    for kind in _MAPS.value:
        for width, height in sizes:
            rows.append(bench_size(kind, width, height, srr_fn, _REPEATS.value))
            print(rows[-1], flush=True)
    tflite = None
    if _TFLITE_SIZE.value:
        tflite = bench_tflite(_TFLITE_SIZE.value, _REPEATS.value, _THREADS.value)
    import skimage

    result = {
        "tensorflow": tf.__version__,
        "skimage": skimage.__version__,
        "cpu_count": os.cpu_count(),
        "machine": platform.machine(),
        "tf_intra_op_threads": _THREADS.value,
        "load_average_1min_at_start": load_at_start,
        "load_average_1min_at_end": os.getloadavg()[0],
        "repeats": _REPEATS.value,
        "speckle": _SPECKLE.value,
        "sizes": rows,
        "tflite": tflite,
    }
    print(markdown(rows, tflite))
    with open(out_path, "w") as fh:
        json.dump(result, fh, indent=2)
    print(f"wrote {out_path}")


if __name__ == "__main__":
    app.run(main)
