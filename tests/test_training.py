"""Training loop: smoke run, exact resume, overfitting one batch, two logical devices, CLI errors."""

import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from mfif_tf import config as config_lib
from mfif_tf.train_lib import train_and_evaluate
from mfif_tf.trainer import Trainer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def tiny_config(num_steps=4, warmup_steps=1, **kwargs) -> config_lib.TrainConfig:
    cfg = config_lib.TrainConfig(
        model=config_lib.model_config("compact", num_blocks=2, critic_layers=4),
        batch_size=2, num_steps=num_steps, warmup_steps=warmup_steps, log_every=1,
        image_every=2, checkpoint_every=2, **kwargs)
    cfg.optim.critic_steps = 2
    cfg.data = config_lib.DataConfig(source="embedded", image_size=32, crop="random",
                                     resize_shorter=48, swap_sources=True)
    return cfg


def weights_of(trainer):
    return [v.numpy() for v in trainer.generator.weights + trainer.critic.weights]


def test_short_run_writes_checkpoint_config_and_summaries(tmp_path):
    trainer = train_and_evaluate(tiny_config(), str(tmp_path), log=lambda m: None)
    assert int(trainer.step.numpy()) == 4
    assert tf.train.latest_checkpoint(str(tmp_path / "checkpoints")).endswith("ckpt-4")
    assert (tmp_path / "config.json").exists()
    assert (tmp_path / "export" / "generator.weights.h5").exists()
    assert os.listdir(tmp_path / "tensorboard")
    assert all(np.all(np.isfinite(w)) for w in weights_of(trainer))


def test_resume_after_interruption_is_exact(tmp_path):
    straight = train_and_evaluate(tiny_config(), str(tmp_path / "a"), log=lambda m: None)
    train_and_evaluate(tiny_config(), str(tmp_path / "b"), stop_after_steps=2, log=lambda m: None)
    resumed = train_and_evaluate(tiny_config(), str(tmp_path / "b"), log=lambda m: None)
    assert int(resumed.step.numpy()) == 4
    for w1, w2 in zip(weights_of(straight), weights_of(resumed)):
        np.testing.assert_allclose(w1, w2, rtol=1e-5, atol=1e-6)


def test_warmup_decay_schedule():
    cfg = tiny_config(num_steps=14, warmup_steps=10)
    cfg.optim.warmup_decay_fraction = 0.5
    cfg.optim.decay_fraction = 1.0
    trainer = Trainer(cfg)
    base = cfg.optim.learning_rate
    # Warm-up: constant for the first half, then linear to zero over steps 5..10.
    got = [trainer.set_learning_rates(s) for s in range(14)]
    want = ([base] * 6 + [base * (1 - k / 5) for k in range(1, 5)]
            + [base * (1 - k / 4) for k in range(4)])
    np.testing.assert_allclose(got, want, rtol=1e-6)
    cfg.optim.warmup_decay_fraction = 0.0
    assert Trainer(cfg).set_learning_rates(9) == pytest.approx(base)


def test_one_batch_overfit_lowers_l1():
    cfg = tiny_config(num_steps=40, warmup_steps=40)
    cfg.optim.learning_rate = 1e-3
    trainer = Trainer(cfg)
    rng = np.random.default_rng(0)
    image = rng.uniform(-1, 1, size=[2, 32, 32, 3]).astype(np.float32)
    focus = np.zeros([2, 32, 32, 1], np.float32)
    focus[:, 8:24, 8:24] = 1
    blurred = tf.nn.avg_pool2d(image, 5, 1, "SAME").numpy()
    batch = {"image_a": np.where(focus > 0, image, blurred), "image_b": np.where(focus > 0, blurred, image),
             "focus": focus}
    batch = {k: tf.constant(v) for k, v in batch.items()}
    trainer.set_learning_rates(0)
    first = float(trainer.warmup_step(batch)["rec"])
    for _ in range(39):
        last = float(trainer.warmup_step(batch)["rec"])
    assert last < 0.5 * first, (first, last)


def _run_cli(args, timeout=300):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    return subprocess.run([sys.executable, "-m", "mfif_tf.train", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


def test_smoke_flagfile_on_two_logical_devices(tmp_path):
    proc = _run_cli(["--flagfile=configs/smoke.flags", f"--workdir={tmp_path}", "--cpu_devices=2",
                     "--distribution=mirrored"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "step 4/4" in proc.stderr
    assert tf.train.latest_checkpoint(str(tmp_path / "checkpoints")) is not None
    proc = _run_cli(["--flagfile=configs/smoke.flags", f"--workdir={tmp_path}", "--cpu_devices=2",
                     "--distribution=mirrored", "--num_steps=5"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "resumed from" in proc.stderr and "step 5/5" in proc.stderr


@pytest.mark.parametrize("args,message", [
    (["--no_such_flag=1"], "no_such_flag"),
    (["--num_steps=-3"], "num_steps"),
    (["--image_size=30"], "multiple of 4"),
    (["--batch_size=0"], "batch_size"),
])
def test_bad_flags_fail_with_one_line(tmp_path, args, message):
    proc = _run_cli(["--flagfile=configs/smoke.flags", f"--workdir={tmp_path / 'w'}", *args])
    assert proc.returncode == 2
    assert message in proc.stderr
    assert proc.stderr.strip().count("\n") == 0, proc.stderr
    assert not (tmp_path / "w").exists()


def test_workdir_that_is_a_file_is_refused(tmp_path):
    path = tmp_path / "file"
    path.write_text("keep me")
    proc = _run_cli(["--flagfile=configs/smoke.flags", f"--workdir={path}"])
    assert proc.returncode == 2 and "not a directory" in proc.stderr
    assert path.read_text() == "keep me"
