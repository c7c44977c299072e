"""Multi-worker training (--distribution=multi_worker): two worker processes on this machine
train as one process on two devices does (MirroredStrategy, which then resumes from its
checkpoint), only the chief writes the work dir, a restarted cluster resumes from the chief's
last checkpoint, and a bad TF_CONFIG fails with one line."""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from mfif_tf import config as config_lib
from mfif_tf.workdir import output_dir
from tests.conftest import SMOKE_SMALL

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# configs/smoke.flags with smaller networks: the embedded sample photos, 32x32 crops.
TINY = [*SMOKE_SMALL, "--image_every=1000"]
TIMEOUT = 240  # seconds for one process: a collective waiting for a dead peer fails CI


def free_ports(n: int) -> list[int]:
    """`n` distinct loopback ports that were free a moment ago."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def tf_config(ports: list[int], index: int) -> str:
    return json.dumps({"cluster": {"worker": [f"localhost:{p}" for p in ports]},
                       "task": {"type": "worker", "index": index}})


def start_train(args: list[str], log_path, env: dict | None = None) -> subprocess.Popen:
    """`python -m mfif_tf.train args` in the background, its output in `log_path`."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", **(env or {}))
    with open(log_path, "w") as log:
        return subprocess.Popen([sys.executable, "-m", "mfif_tf.train", *args], cwd=ROOT,
                                env=env, stdout=log, stderr=subprocess.STDOUT)


def start_workers(args: list[str], workdir, tmp_path, tag: str,
                  workdir_1=None) -> list[subprocess.Popen]:
    """Two workers of one cluster on loopback ports, with `workdir` (worker 1: `workdir_1`
    if given); worker i logs to `<tag>-i.log` and has `<tag>-tmp-i` as its temporary
    directory."""
    ports = free_ports(2)
    procs = []
    for i, path in enumerate((workdir, workdir_1 or workdir)):
        tmp = tmp_path / f"{tag}-tmp-{i}"
        tmp.mkdir()
        procs.append(start_train(
            [*args, "--distribution=multi_worker", f"--workdir={path}"],
            tmp_path / f"{tag}-{i}.log", env={"TF_CONFIG": tf_config(ports, i),
                                              "TMPDIR": str(tmp)}))
    return procs


def wait_all(procs: list[subprocess.Popen], logs: list, timeout: float = TIMEOUT,
             code: int = 0) -> None:
    """Waits for every process to end with `code`; kills them all on a timeout."""
    deadline = time.monotonic() + timeout
    try:
        for p in procs:
            p.wait(timeout=max(deadline - time.monotonic(), 1))
    except subprocess.TimeoutExpired:
        pass
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    for p, log in zip(procs, logs):
        assert p.returncode == code, f"{log}: code {p.returncode}\n{read(log)[-3000:]}"


def read(path) -> str:
    with open(path) as f:
        return f.read()


def checkpoint_step(workdir) -> int | None:
    """The number of the latest checkpoint in `workdir` (TensorFlow's state file), or None."""
    try:
        text = read(os.path.join(workdir, "checkpoints", "checkpoint"))
    except OSError:
        return None
    found = re.search(r'^model_checkpoint_path: "(?:.*/)?ckpt-(\d+)"', text, re.M)
    return int(found.group(1)) if found else None


@pytest.mark.slow
def test_two_workers_train_as_one_process_on_two_devices(tmp_path):
    import tensorflow as tf

    # Warm-up and adversarial steps (the gradient penalty draws alpha per replica).
    args = [*TINY, "--num_steps=3", "--warmup_steps=1", "--critic_steps=1",
            "--checkpoint_every=1000"]
    workers = start_workers(args, tmp_path / "mw", tmp_path, "mw")
    # The reference: one process, the same global batch split over two logical CPU devices
    # (G's BatchNorm normalises each replica's share, so one device would differ).
    mirrored = [*args, "--distribution=mirrored", "--cpu_devices=2",
                f"--workdir={tmp_path / 'ref'}"]
    reference = start_train(mirrored, tmp_path / "ref.log")
    logs = [tmp_path / "mw-0.log", tmp_path / "mw-1.log", tmp_path / "ref.log"]
    wait_all([*workers, reference], logs)
    for log in logs:
        assert "step 3/3" in read(log)

    got = tf.train.load_checkpoint(str(tmp_path / "mw" / "checkpoints" / "ckpt-3"))
    want = tf.train.load_checkpoint(str(tmp_path / "ref" / "checkpoints" / "ckpt-3"))
    names = [n for n in want.get_variable_to_shape_map()
             if n.split("/")[0] in ("generator", "critic", "step", "rng", "g_opt", "d_opt")]
    assert sum(n.startswith("generator/") for n in names) > 10
    assert set(names) <= set(got.get_variable_to_shape_map())
    for name in names:
        np.testing.assert_allclose(got.get_tensor(name), want.get_tensor(name), rtol=1e-4,
                                   atol=1e-6, err_msg=name)
    # The chief alone wrote the work dir; worker 1 removed its temporary directory.
    assert sorted(os.listdir(tmp_path / "mw")) == ["checkpoints", "config.json", "export",
                                                   "tensorboard"]
    assert len(os.listdir(tmp_path / "mw" / "tensorboard")) == 1
    assert os.listdir(tmp_path / "mw-tmp-0") == [] and os.listdir(tmp_path / "mw-tmp-1") == []

    # The reference resumes under MirroredStrategy (with the data stream reseeded: iterators
    # over several devices are not checkpointed) and makes one more WGAN-GP step.
    resumed = start_train([*mirrored, "--num_steps=4"], tmp_path / "ref-2.log")
    wait_all([resumed], [tmp_path / "ref-2.log"])
    text = read(tmp_path / "ref-2.log")
    assert f"resumed from {tmp_path / 'ref'}/checkpoints/ckpt-3 at step 3" in text
    assert "input pipeline reseeded at step 3" in text
    assert "step 4/4" in text and "d_loss" in text and "gp=" in text


@pytest.mark.slow
def test_restarted_cluster_resumes_from_the_chiefs_last_checkpoint(tmp_path):
    workdir = tmp_path / "run"
    args = [*TINY, "--warmup_steps=1000", "--checkpoint_every=2"]
    first = start_workers([*args, "--num_steps=1000"], workdir, tmp_path, "first")
    try:
        deadline = time.monotonic() + TIMEOUT
        while checkpoint_step(workdir) is None:
            assert all(p.poll() is None for p in first), read(tmp_path / "first-0.log")[-3000:]
            assert time.monotonic() < deadline, "no checkpoint written"
            time.sleep(0.2)
        first[1].send_signal(signal.SIGKILL)
        # The chief's next collective fails (its peer is gone); it exits within seconds.
        first[0].wait(timeout=60)
        assert first[0].returncode != 0
    finally:
        for p in first:
            if p.poll() is None:
                p.kill()
            p.wait()
    done = checkpoint_step(workdir)
    assert done is not None and done >= 2

    # A worker that cannot see the chief's checkpoints (a work dir that is not shared)
    # would start from scratch: both refuse with one line before training.
    wrong = start_workers([*args, f"--num_steps={done + 2}"], workdir, tmp_path, "wrong",
                          workdir_1=tmp_path / "elsewhere")
    logs = [tmp_path / "wrong-0.log", tmp_path / "wrong-1.log"]
    wait_all(wrong, logs, code=2)
    for log in logs:
        assert read(log).splitlines()[-1] == (
            f"error: the workers start at different steps ({done}, 0): all of them must "
            f"read the chief's checkpoints in one --workdir (a shared file system)")
    assert checkpoint_step(workdir) == done and not (tmp_path / "elsewhere").exists()

    second = start_workers([*args, f"--num_steps={done + 2}"], workdir, tmp_path, "second")
    logs = [tmp_path / "second-0.log", tmp_path / "second-1.log"]
    wait_all(second, logs)
    for log in logs:  # every worker restored the chief's checkpoint
        text = read(log)
        assert f"resumed from {workdir}/checkpoints/ckpt-{done} at step {done}" in text
        steps = [int(n) for n in re.findall(rf"^step (\d+)/{done + 2} ", text, re.M)]
        assert steps == [done + 1, done + 2], steps  # none before the checkpoint's
    assert checkpoint_step(workdir) == done + 2


@pytest.mark.slow
@pytest.mark.parametrize("tf_config_value,args,message", [
    (None, [], "error: --distribution=multi_worker needs the TF_CONFIG environment variable"),
    ("{'cluster': 1}", [], "error: TF_CONFIG is not valid JSON: "),
    (tf_config([1, 2], 2), [], "error: TF_CONFIG: task index 2 is not one of the 2 'worker' "
                               "tasks"),
    (tf_config([1, 2], 0), ["--batch_size=3"], "error: batch_size 3 is not divisible by the "
                                               "2 workers of TF_CONFIG"),
    (tf_config([1, 2], 0), ["--cpu_devices=2"], "error: --cpu_devices is for "),
])
def test_bad_cluster_fails_with_one_line(tmp_path, tf_config_value, args, message):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    env.pop("TF_CONFIG", None)
    if tf_config_value is not None:
        env["TF_CONFIG"] = tf_config_value
    proc = subprocess.run(
        [sys.executable, "-m", "mfif_tf.train", *TINY, "--distribution=multi_worker",
         f"--workdir={tmp_path / 'w'}", *args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert proc.stderr.startswith(message), proc.stderr
    assert proc.stderr.strip().count("\n") == 0, proc.stderr
    assert not (tmp_path / "w").exists()


def test_multi_worker_is_a_distribution_choice():
    spec = {s.name: s for s in config_lib.flag_specs()}["distribution"]
    assert "multi_worker" in spec.choices and spec.default == "auto"
    assert config_lib.config_from_flags({"distribution": "multi_worker"}).distribution == (
        "multi_worker")


def test_tf_config_names_the_chief():
    task = config_lib.multi_worker_task(tf_config([1000, 1001, 1002], 0))
    assert task == config_lib.WorkerTask("worker", 0, 3, True)
    assert not config_lib.multi_worker_task(tf_config([1000, 1001, 1002], 2)).is_chief
    with_chief = {"cluster": {"chief": ["a:1"], "worker": ["b:2", "c:3"]},
                  "task": {"type": "worker", "index": 0}}
    assert config_lib.multi_worker_task(json.dumps(with_chief)) == config_lib.WorkerTask(
        "worker", 0, 3, False)
    with_chief["task"] = {"type": "chief", "index": 0}
    assert config_lib.multi_worker_task(json.dumps(with_chief)).is_chief


@pytest.mark.parametrize("spec,message", [
    ("", "needs the TF_CONFIG environment variable"),
    ("[1, 2]", "TF_CONFIG must be a JSON object, got list"),
    ({"task": {"type": "worker", "index": 0}}, "TF_CONFIG has no 'cluster' object"),
    ({"cluster": {"worker": ["a:1"], "ps": ["b:2"]}, "task": {"type": "worker", "index": 0}},
     "TF_CONFIG: multi_worker training takes only 'chief' and 'worker' tasks, got 'ps'"),
    ({"cluster": {"worker": []}, "task": {"type": "worker", "index": 0}},
     "TF_CONFIG: cluster 'worker' must be a non-empty list of 'host:port' addresses"),
    ({"cluster": {"worker": ["localhost"]}, "task": {"type": "worker", "index": 0}},
     "'host:port' addresses, got ['localhost']"),
    ({"cluster": {"chief": ["a:1", "b:2"]}, "task": {"type": "chief", "index": 0}},
     "TF_CONFIG: a cluster has at most one chief"),
    ({"cluster": {"worker": ["a:1"]}}, "TF_CONFIG has no 'task' object"),
    ({"cluster": {"worker": ["a:1"]}, "task": {"type": "chief", "index": 0}},
     "TF_CONFIG: task type 'chief' is not a job of the cluster (worker)"),
    ({"cluster": {"worker": ["a:1"]}, "task": {"type": "worker"}},
     "TF_CONFIG: task index None is not one of the 1 'worker' tasks"),
    ({"cluster": {"worker": ["a:1", "a:1"]}, "task": {"type": "worker", "index": 0}},
     "TF_CONFIG: two tasks share an address"),
])
def test_bad_tf_config_is_named(spec, message):
    text = spec if isinstance(spec, str) else json.dumps(spec)
    with pytest.raises(ValueError) as err:
        config_lib.multi_worker_task(text)
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_output_dir_of_other_workers_is_temporary(tmp_path, monkeypatch):
    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)  # read TMPDIR again
    with output_dir(str(tmp_path / "run")) as path:
        assert path == str(tmp_path / "run")
    with pytest.raises(RuntimeError):
        with output_dir(str(tmp_path / "run"), is_chief=False) as path:
            assert os.path.dirname(path) == str(tmp_path / "tmp")
            open(os.path.join(path, "x"), "w").close()
            raise RuntimeError("a failed step")
    assert os.listdir(tmp_path / "tmp") == []
    assert not (tmp_path / "run").exists()
