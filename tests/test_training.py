"""Training loop: smoke run, exact resume, overfitting one batch, two logical devices, CLI errors."""

import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from data_pipeline import PipelineConfig
from mfif_tf import config as config_lib
from mfif_tf.train_lib import train_and_evaluate
from mfif_tf.trainer import Trainer
from tests.conftest import SMOKE_SMALL

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def tiny_config(num_steps=4, warmup_steps=1, **kwargs) -> config_lib.TrainConfig:
    cfg = config_lib.TrainConfig(
        model=config_lib.model_config("compact", num_blocks=2, critic_layers=4),
        batch_size=2, num_steps=num_steps, warmup_steps=warmup_steps, log_every=1,
        image_every=2, checkpoint_every=2, **kwargs)
    cfg.optim.critic_steps = 2
    cfg.data = PipelineConfig(source="embedded", image_size=32, crop="random",
                              resize_shorter=48, swap_sources=True)
    return cfg


def weights_of(trainer):
    return [v.numpy() for v in trainer.generator.weights + trainer.critic.weights]


@pytest.fixture(scope="module")
def straight_run(tmp_path_factory):
    """`tiny_config()` trained from scratch to its end in one go: (work dir, weights)."""
    workdir = tmp_path_factory.mktemp("straight")
    trainer = train_and_evaluate(tiny_config(), str(workdir), log=lambda m: None)
    assert int(trainer.step.numpy()) == 4
    return workdir, weights_of(trainer)


def test_short_run_writes_checkpoint_config_and_summaries(straight_run):
    workdir, weights = straight_run
    assert tf.train.latest_checkpoint(str(workdir / "checkpoints")).endswith("ckpt-4")
    assert (workdir / "config.json").exists()
    assert (workdir / "export" / "generator.weights.h5").exists()
    assert os.listdir(workdir / "tensorboard")
    assert all(np.all(np.isfinite(w)) for w in weights)


def test_resume_after_interruption_is_exact(tmp_path, straight_run):
    # Whatever ran before in the process (another run, a user's seed), the same settings
    # give the same batches: tf.data's shuffle also draws from the global seed.
    tf.random.set_seed(4321)
    train_and_evaluate(tiny_config(), str(tmp_path / "b"), stop_after_steps=2, log=lambda m: None)
    resumed = train_and_evaluate(tiny_config(), str(tmp_path / "b"), log=lambda m: None)
    assert int(resumed.step.numpy()) == 4
    for w1, w2 in zip(straight_run[1], weights_of(resumed)):
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


def snapshot(folder):
    """Every file under `folder` with its bytes and modification time."""
    found = {}
    for root, _, files in os.walk(folder):
        for name in files:
            path = os.path.join(root, name)
            with open(path, "rb") as f:
                found[os.path.relpath(path, folder)] = (f.read(), os.stat(path).st_mtime_ns)
    return found


def test_resume_with_other_networks_changes_nothing(tmp_path, straight_run):
    from mfif_tf.model_io import load_generator

    tmp_path = tmp_path / "run"
    shutil.copytree(straight_run[0], tmp_path)
    before = snapshot(tmp_path)
    other = tiny_config()
    other.model = config_lib.model_config("compact", num_blocks=3, critic_layers=4,
                                          use_se=False)
    with pytest.raises(ValueError) as err:
        train_and_evaluate(other, str(tmp_path), log=lambda m: None)
    assert str(err.value) == (f"{tmp_path} holds a run with other networks: num_blocks (2 there, "
                              "3 now), use_se (True there, False now); resume with its settings "
                              "or use another --workdir")
    assert snapshot(tmp_path) == before
    assert load_generator(str(tmp_path)).config.num_blocks == 2
    # Settings that leave the networks alone may change on resume.
    longer = tiny_config(num_steps=5)
    assert int(train_and_evaluate(longer, str(tmp_path), log=lambda m: None).step.numpy()) == 5


def test_cli_resume_with_other_preset_is_refused(tmp_path):
    stored = config_lib.TrainConfig(model=config_lib.model_config("compact")).to_json()
    (tmp_path / "config.json").write_text(stored)
    proc = _run_cli(["--flagfile=configs/smoke.flags", f"--workdir={tmp_path}",
                     "--preset=paper"])
    assert proc.returncode == 2
    assert proc.stderr.startswith(f"error: {tmp_path} holds a run with other networks: "
                                  "critic_channels (32 there, 64 now), ")
    assert "preset (compact there, paper now)" in proc.stderr
    assert proc.stderr.strip().count("\n") == 0, proc.stderr
    assert os.listdir(tmp_path) == ["config.json"]
    assert (tmp_path / "config.json").read_text() == stored
    (tmp_path / "config.json").write_text("")  # e.g. a disk that filled up
    proc = _run_cli(["--flagfile=configs/smoke.flags", f"--workdir={tmp_path}"])
    assert proc.returncode == 2 and "not a readable run configuration" in proc.stderr
    assert proc.stderr.strip().count("\n") == 0, proc.stderr


def test_data_errors_are_one_line(tmp_path):
    from PIL import Image

    data = tmp_path / "data"
    for sub in ("images", "masks"):
        (data / sub).mkdir(parents=True)
    for i in range(3):  # empty masks: every example is skipped
        Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(data / "images" / f"{i}.png")
        Image.fromarray(np.zeros((40, 40), np.uint8)).save(data / "masks" / f"{i}.png")
    for data_dir, message in ((tmp_path / "none", "images folder not found: "),
                              (data, "no usable examples in ")):
        proc = _run_cli(["--flagfile=configs/smoke.flags", f"--workdir={tmp_path / 'w'}",
                         "--data_source=folder", f"--data_dir={data_dir}"])
        assert proc.returncode == 2
        assert proc.stderr.startswith(f"error: {message}"), proc.stderr[-3000:]
        assert proc.stderr.strip().count("\n") == 0, proc.stderr[-3000:]
        assert not (tmp_path / "w").exists()


def test_stale_files_of_killed_runs_are_removed_and_nothing_else(tmp_path):
    ckpt = tmp_path / "checkpoints"
    (ckpt / "ckpt-6_temp").mkdir(parents=True)
    for name in ("part-00000-of-00001.index", "part-00000-of-00001.data-00000-of-00001",
                 "part-00000-of-00001.index.tempstate1234567890"):
        (ckpt / "ckpt-6_temp" / name).write_bytes(b"x")
    (ckpt / "ckpt-8_temp").mkdir()  # empty: also a leftover
    (ckpt / ("checkpoint.tmp" + "0123456789abcdef" * 2)).write_text("x")
    (tmp_path / ".config.json.part").write_text("{")
    (tmp_path / "export").mkdir()
    (tmp_path / "export" / ".tmp.generator.weights.h5").write_bytes(b"x")
    (tmp_path / "export" / ".tmp.model.json").write_text("{")
    kept = ["ckpt-7_temp", "ckpt-9_temp", "ckpt-x_temp", "ckpt-1_temp_old", "other_temp",
            "checkpoint.tmp0123", "ckpt-5_tmp"]
    (ckpt / "ckpt-7_temp").mkdir()
    (ckpt / "ckpt-7_temp" / "notes.txt").write_text("mine")  # not only shard files
    (ckpt / "ckpt-9_temp").symlink_to(ckpt / "ckpt-7_temp")
    for name in kept[2:]:
        (ckpt / name).write_text("keep")
    (tmp_path / "export" / ".tmp.notes").write_text("keep")
    logs = []
    train_and_evaluate(tiny_config(), str(tmp_path), stop_after_steps=0, log=logs.append)
    assert sorted(os.listdir(ckpt)) == sorted(kept)
    assert (ckpt / "ckpt-7_temp" / "notes.txt").read_text() == "mine"
    assert sorted(os.listdir(tmp_path / "export")) == [".tmp.notes"]
    assert ".config.json.part" not in os.listdir(tmp_path)
    assert (tmp_path / "config.json").exists()
    assert sum("left by an interrupted run" in m for m in logs) == 6


def test_fine_tuning_starts_from_a_model_directory(tmp_path, straight_run):
    """--init_checkpoint takes a model directory (model.json + generator.weights.h5): G starts
    from its weights; a model of another network is refused in one line."""
    from data_pipeline.readers import DataError
    from mfif_tf import model_io

    model_dir = str(straight_run[0] / "export")
    cfg = tiny_config(num_steps=0, init_checkpoint=model_dir)
    tuned = train_and_evaluate(cfg, str(tmp_path / "b"), log=lambda m: None)
    trained = straight_run[1][:len(tuned.generator.weights)]  # G's weights come first
    for w1, w2 in zip(trained, tuned.generator.weights):
        np.testing.assert_array_equal(w1, w2.numpy())
    assert model_io.load_generator(model_dir).config == tuned.generator.config
    other = tiny_config(num_steps=0, init_checkpoint=model_dir)
    other.model = config_lib.model_config("compact", num_blocks=1, critic_layers=4)
    with pytest.raises(DataError, match="its network differs from this run's"):
        train_and_evaluate(other, str(tmp_path / "c"), log=lambda m: None)


def test_distillation_target_and_six_to_two_branches(tmp_path, straight_run):
    """--teacher: G learns w F_teacher + (1 - w) F, the teacher's map in inference mode; a
    six-branch model starts a two-branch run with the same weights."""
    import dataclasses

    from mfif_tf import model_io
    from mfif_tf.trainer import Trainer

    teacher_dir = str(straight_run[0] / "export")
    teacher = model_io.load_generator(teacher_dir, "float32")
    rng = np.random.default_rng(0)
    batch = {"image_a": tf.constant(rng.uniform(-1, 1, (2, 32, 32, 3)), tf.float32),
             "image_b": tf.constant(rng.uniform(-1, 1, (2, 32, 32, 3)), tf.float32),
             "focus": tf.constant(rng.integers(0, 2, (2, 32, 32, 1)), tf.float32)}
    taught = teacher(tf.concat([batch["image_a"], batch["image_b"]], -1), training=False)
    assert float(tf.reduce_mean(tf.abs(taught - batch["focus"]))) > 0.1
    for w in (1.0, 0.25):
        trainer = Trainer(tiny_config(teacher=teacher_dir, teacher_weight=w))
        _, _, target = trainer._target(batch)
        np.testing.assert_allclose(target, w * taught + (1 - w) * batch["focus"], atol=1e-6)
    assert Trainer(tiny_config())._target(batch)[2] is batch["focus"]
    # Samples whose I_B is focused between the layers (pair_focus) learn the true map.
    focused = dict(batch, pair_focused=tf.constant([1.0, 0.0]))
    _, _, target = Trainer(tiny_config(teacher=teacher_dir, teacher_weight=0.75))._target(focused)
    np.testing.assert_allclose(target[0], batch["focus"][0], atol=1e-6)
    np.testing.assert_allclose(target[1], 0.75 * taught[1] + 0.25 * batch["focus"][1], atol=1e-6)

    two = tiny_config(num_steps=2, init_checkpoint=teacher_dir, teacher=teacher_dir)
    two.model = dataclasses.replace(two.model, branches="two")
    logs = []
    student = train_and_evaluate(two, str(tmp_path / "b"), stop_after_steps=0, log=logs.append)
    for w1, w2 in zip(teacher.weights, student.generator.weights):
        np.testing.assert_array_equal(w1.numpy(), w2.numpy())
    student = train_and_evaluate(two, str(tmp_path / "b"), log=logs.append)
    assert int(student.step.numpy()) == 2
    assert model_io.load_generator(str(tmp_path / "b" / "export")).config.branches == "two"
    with pytest.raises(ValueError, match="teacher_weight"):
        tiny_config(teacher=teacher_dir, teacher_weight=1.5).validate()


@pytest.mark.parametrize("flag,message", [
    ("init_checkpoint", "nor a training checkpoint"),
    ("teacher", "nor a training work dir with a checkpoint"),
])
def test_missing_init_checkpoint_or_teacher_fails_before_the_work_dir(tmp_path, flag, message):
    from data_pipeline.readers import DataError

    missing = str(tmp_path / "nowhere")
    with pytest.raises(DataError, match=f"--{flag}=.*nowhere: neither a model directory .*{message}"):
        train_and_evaluate(tiny_config(**{flag: missing}), str(tmp_path / "run"),
                           log=lambda m: None)
    assert not (tmp_path / "run").exists()
