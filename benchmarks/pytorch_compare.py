r"""The paper-size G against the authors' PyTorch G, forward time only, side by side:

  python -m benchmarks.pytorch_compare --repo=PATH/MFIF-GAN --torch_python=PATH/bin/python
      [--size=520] [--threads=2] [--rounds=2] [--repeats=3] [--out=compare.json]

`--repo` is a checkout of the official code (github.com/ycwang-libra/MFIF-GAN; its
`model.py` defines `Generator(A, B)`); `--torch_python` a Python interpreter with PyTorch
installed (kept out of this project's dependencies). Both sides get the same random 520 x 520
pair, random weights (the paper's G: 64 filters, 9 SE-ResNet blocks; the parameter counts
are printed), the same thread count, and run G's forward pass in float32 and in bfloat16
(PyTorch: `torch.autocast("cpu", torch.bfloat16)` under `torch.inference_mode()`; ours: the
Keras `mixed_bfloat16` twin of `mfif_tf.model_io.with_precision`, in a `tf.function`). Each
side runs in its own process, the two alternating for `--rounds` rounds; each process times
`--repeats` forwards per precision after one warm-up forward, and the medians over all rounds
are compared. Only what is between the sources and F_hat is timed (no SRR, no eq. 14).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys

from absl import app, flags

FLAGS = flags.FLAGS
flags.DEFINE_string("repo", None, "Checkout of the official PyTorch MFIF-GAN code.")
flags.DEFINE_string("torch_python", None, "Python interpreter that has PyTorch.")
flags.DEFINE_integer("size", 520, "Side of the square pair.")
flags.DEFINE_integer("threads", 2, "Threads of both frameworks.")
flags.DEFINE_integer("rounds", 2, "Alternating rounds of the two processes.")
flags.DEFINE_integer("repeats", 3, "Timed forwards per precision in each process.")
flags.DEFINE_string("out", None, "Also write the results as JSON here (must not exist).")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Runs in the PyTorch interpreter: argv = repo, size, threads, repeats.
_TORCH = r"""
import json, sys, time
import torch
repo, size, threads, repeats = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
sys.path.insert(0, repo)
from model import Generator
torch.set_num_threads(threads)
torch.manual_seed(0)
g = Generator().eval()
params = sum(p.numel() for p in g.parameters() if p.requires_grad)
a = torch.rand(1, 3, size, size) * 2 - 1
b = torch.rand(1, 3, size, size) * 2 - 1
out = {"params": params, "torch": torch.__version__}
for precision in ("float32", "bfloat16"):
    times = []
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16,
                                                 enabled=precision == "bfloat16"):
        for i in range(repeats + 1):
            start = time.perf_counter()
            g(a, b)
            if i:
                times.append(time.perf_counter() - start)
    out[precision] = times
print(json.dumps(out))
"""

# Runs in this project's interpreter: argv = size, threads, repeats.
_OURS = r"""
import json, sys, time
import tensorflow as tf
size, threads, repeats = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
tf.config.threading.set_intra_op_parallelism_threads(threads)
tf.config.threading.set_inter_op_parallelism_threads(1)
from mfif_tf import config as config_lib, model_io
from mfif_tf.networks import build_generator, count_trainable
tf.keras.utils.set_random_seed(0)
g = build_generator(config_lib.model_config("paper"))
x = tf.random.uniform([1, size, size, 6], -1.0, 1.0)
out = {"params": count_trainable(g), "tensorflow": tf.__version__}
for precision in ("float32", "bfloat16"):
    model = g if precision == "float32" else model_io.with_precision(g, "bfloat16")
    forward = tf.function(lambda t: model(tf.cast(t, model.stem_dtype), training=False))
    times = []
    for i in range(repeats + 1):
        start = time.perf_counter()
        forward(x).numpy()
        if i:
            times.append(time.perf_counter() - start)
    out[precision] = times
print(json.dumps(out))
"""


def _run(command: list[str], label: str) -> dict:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=ROOT)
    proc = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=3600)
    if proc.returncode != 0:
        raise RuntimeError(f"{label} failed: {proc.stderr.strip().splitlines()[-1:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv) -> None:
    from mfif_tf.cli import fail

    if len(argv) > 1:
        fail(f"unexpected arguments: {' '.join(argv[1:])}")
    if not FLAGS.repo or not os.path.isfile(os.path.join(FLAGS.repo, "model.py")):
        fail(f"--repo={FLAGS.repo}: needs a checkout of the official code (with model.py)")
    if not FLAGS.torch_python or not os.access(FLAGS.torch_python, os.X_OK):
        fail(f"--torch_python={FLAGS.torch_python}: not an executable Python")
    if FLAGS.out and os.path.exists(FLAGS.out):
        fail(f"{FLAGS.out}: already exists")
    size, threads, repeats = str(FLAGS.size), str(FLAGS.threads), str(FLAGS.repeats)
    runs = {"pytorch": [], "ours": []}
    for r in range(FLAGS.rounds):
        for side in ("pytorch", "ours"):
            if side == "pytorch":
                command = [FLAGS.torch_python, "-c", _TORCH, FLAGS.repo, size, threads,
                           repeats]
            else:
                command = [sys.executable, "-c", _OURS, size, threads, repeats]
            result = _run(command, side)
            runs[side].append(result)
            print(f"round {r + 1} {side}: float32 "
                  f"{', '.join(f'{t:.2f}' for t in result['float32'])} s, bfloat16 "
                  f"{', '.join(f'{t:.2f}' for t in result['bfloat16'])} s", flush=True)
    median = {side: {p: statistics.median(t for run in runs[side] for t in run[p])
                     for p in ("float32", "bfloat16")} for side in runs}
    best = {side: min(median[side].values()) for side in runs}
    print(f"parameters: PyTorch {runs['pytorch'][0]['params']:,}, ours "
          f"{runs['ours'][0]['params']:,}")
    print("| G forward, median (s) | float32 | bfloat16 | fastest |")
    print("|---|---|---|---|")
    for side in ("pytorch", "ours"):
        print(f"| {side} | {median[side]['float32']:.2f} | {median[side]['bfloat16']:.2f} | "
              f"{best[side]:.2f} |")
    print(f"PyTorch / ours: float32 {median['pytorch']['float32'] / median['ours']['float32']:.2f}"
          f"x, bfloat16 {median['pytorch']['bfloat16'] / median['ours']['bfloat16']:.2f}x, "
          f"fastest against fastest {best['pytorch'] / best['ours']:.2f}x")
    if FLAGS.out:
        with open(FLAGS.out, "w") as f:
            json.dump({"runs": runs, "median": median, "load": os.getloadavg()}, f, indent=1)


if __name__ == "__main__":
    app.run(main)
