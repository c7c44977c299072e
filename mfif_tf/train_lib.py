"""Training driver: data, strategy, resume, logging, TensorBoard and checkpoints.

`train_and_evaluate(config, workdir)` is what `python -m mfif_tf.train` calls. Resume order:
the latest checkpoint in `workdir/checkpoints`, else `config.init_checkpoint`, else scratch.
In a multi-worker run every worker calls it with the same work dir; only the chief writes
there (`workdir.output_dir`).
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import json
import logging
import os
import re
import shutil
import stat
import sys
import time
from typing import Callable, Iterator

import keras
import tensorflow as tf

from data_pipeline.readers import DataError
from mfif_tf import inference, model_io
from mfif_tf.config import TrainConfig
from mfif_tf.model_io import CONFIG_FILE, WEIGHTS_FILE, save_generator
from mfif_tf.trainer import Trainer, make_strategy
from mfif_tf.workdir import RUN_CONFIG, WorkdirNotShared, check_workdir, output_dir

CONFIG_TMP = ".config.json.part"  # config.json while it is written
# What an interrupted save leaves in checkpoints/: TensorFlow's unfinished checkpoint
# `ckpt-N_temp/` (shard files `part-00000-of-00001.index`, `.data-00000-of-00001`, and
# their `.tempstate<n>` while written) and its unfinished list of checkpoints.
_CKPT_TEMP_DIR = re.compile(r"ckpt-[0-9]+_temp")
_CKPT_TEMP_FILE = re.compile(r"part-[0-9]+-of-[0-9]+(\.index|\.data-[0-9]+-of-[0-9]+)"
                             r"(\.tempstate[0-9]+)?")
_CKPT_STATE_TEMP = re.compile(r"checkpoint\.tmp[0-9a-f]{32}")


def build_dataset(config: TrainConfig, seed_offset: int = 0) -> tf.data.Dataset:
    """The training stream of dicts (`image_a`, `image_b`, `focus`, `image`), global batch."""
    from data_pipeline.pipeline import training_dataset

    # tf.data's shuffle and random coins draw from the global seed as well as their own:
    # build the stream with none set, as the first run of a process does (the shipped
    # recipes' runs), so that every run of these settings sees the same batches, also after
    # an earlier run in the same process has set the global seed (`_train`).
    tf.random.set_seed(None)
    return training_dataset(config.data, batch_size=config.batch_size,
                            seed=config.seed + seed_offset)


class _Held(logging.Handler):
    def __init__(self):
        super().__init__(logging.NOTSET)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@contextlib.contextmanager
def _logs_dropped_on_data_error() -> Iterator[None]:
    """Holds the log records of the block (the data pipeline logs what it lists and skips)
    and passes them on when it ends, unless it raises `DataError`: its message says what
    matters, and the tools print it as their only line."""

    root = logging.getLogger()
    held, handlers = _Held(), root.handlers[:]
    root.handlers = [held]
    try:
        yield
    except DataError:
        held.records.clear()
        raise
    finally:
        root.handlers = handlers
        for record in held.records:
            for handler in handlers:
                if record.levelno >= handler.level:
                    handler.handle(record)


def _set_precision(config: TrainConfig) -> None:
    policy = {"none": "float32", "float16": "mixed_float16", "bfloat16": "mixed_bfloat16"}
    keras.mixed_precision.set_global_policy(policy[config.mixed_precision])


def _format_eta(seconds: float) -> str:
    seconds = int(max(0, seconds))
    return f"{seconds // 3600}h{(seconds % 3600) // 60:02d}m{seconds % 60:02d}s"


def _to_uint8(images: tf.Tensor, signed: bool) -> tf.Tensor:
    images = tf.cast(images, tf.float32)
    if signed:
        images = (images + 1.0) / 2.0
    return tf.cast(tf.clip_by_value(images, 0.0, 1.0) * 255.0 + 0.5, tf.uint8)


def _is_model_dir(path: str) -> bool:
    """`path` is "default" or holds a saved G (model.json + generator.weights.h5)."""
    return path == "default" or all(os.path.isfile(os.path.join(path, name))
                                    for name in (CONFIG_FILE, WEIGHTS_FILE))


def _initialise(trainer: Trainer, config: TrainConfig) -> None:
    """Loads `config.init_checkpoint`: a training checkpoint, or G of a model directory
    ("default": the packaged model), whose network settings must be the run's."""
    path = config.init_checkpoint
    if not _is_model_dir(path):
        trainer.checkpoint().read(path).expect_partial()
        return
    source = model_io.load_generator(path, "float32")
    # Six and two branches share one set of weights (Fig. 3's branches are weight-shared).
    same_weights = dataclasses.replace(source.config, branches=trainer.generator.config.branches)
    if same_weights != trainer.generator.config:
        raise DataError(f"--init_checkpoint={path}: its network differs from this run's "
                        f"(model.json {source.config} against {trainer.generator.config})")
    trainer.generator.set_weights(source.get_weights())


def check_model_sources(config: TrainConfig) -> None:
    """DataError in one line when --init_checkpoint or --teacher names nothing loadable:
    checked before the work dir is touched."""
    for flag, path in (("init_checkpoint", config.init_checkpoint),
                       ("teacher", config.teacher)):
        if not path:
            continue
        if path == "default" and not model_io.packaged_model_available():
            raise DataError(f"--{flag}=default: no trained model is installed in the package")
        if _is_model_dir(path):
            continue
        if flag == "init_checkpoint" and os.path.isfile(f"{path}.index"):
            continue  # a training checkpoint's prefix
        if flag == "teacher" and os.path.isfile(os.path.join(path, RUN_CONFIG)) and \
                tf.train.latest_checkpoint(os.path.join(path, "checkpoints")):
            continue  # a training work dir
        what = ("a training checkpoint (its path without .index)" if flag == "init_checkpoint"
                else "a training work dir with a checkpoint")
        raise DataError(f"--{flag}={path}: neither a model directory ({CONFIG_FILE} + "
                        f"{WEIGHTS_FILE}) nor {what}")


def _local(batch: dict, strategy: tf.distribute.Strategy) -> dict:
    """The first replica's part of a distributed batch, for image summaries."""
    return {k: strategy.experimental_local_results(v)[0] for k, v in batch.items()}


def train_and_evaluate(
    config: TrainConfig,
    workdir: str,
    dataset: tf.data.Dataset | None = None,
    stop_after_steps: int | None = None,
    log: Callable[[str], None] | None = None,
    strategy: tf.distribute.Strategy | None = None,
) -> Trainer:
    """Trains until `config.num_steps` generator steps (or `stop_after_steps` more steps,
    to simulate an interruption) and returns the trainer.

    `strategy` defaults to `make_strategy(config.distribution)`. With several workers
    (`MultiWorkerMirroredStrategy`) every worker runs this function; only the chief writes
    `workdir`, and all of them resume from the chief's latest checkpoint in it, so the work
    dir must be one directory for all (a shared file system on a cluster).
    """
    log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    config.validate()
    # A work dir of a run with other networks is refused before anything in it changes.
    check_workdir(workdir, config.to_dict()["model"])
    check_model_sources(config)
    # First: a multi-worker strategy must be made before any other TensorFlow operation.
    strategy = strategy or make_strategy(config.distribution)
    if config.batch_size % strategy.num_replicas_in_sync:
        raise ValueError(
            f"batch_size {config.batch_size} is not divisible by the "
            f"{strategy.num_replicas_in_sync} replicas")
    is_chief = strategy.extended.should_checkpoint  # False on the other workers only
    own_dataset = dataset is None
    if own_dataset:  # before touching the work dir: bad data fails with nothing written
        with _logs_dropped_on_data_error():
            dataset = build_dataset(config)
    if is_chief:
        os.makedirs(workdir, exist_ok=True)
        for path in remove_stale_files(workdir):
            log(f"removed {path}, left by an interrupted run")
        write_config(workdir, config)
    with output_dir(workdir, is_chief) as out_dir:
        return _train(config, workdir, out_dir, strategy, dataset, own_dataset,
                      stop_after_steps, log)


def _train(config: TrainConfig, workdir: str, out_dir: str, strategy: tf.distribute.Strategy,
           dataset: tf.data.Dataset, own_dataset: bool, stop_after_steps: int | None,
           log: Callable[[str], None]) -> Trainer:
    """The run of `train_and_evaluate` in one process: restores from `workdir`, writes
    checkpoints, summaries and the export to `out_dir` (`workdir` but on a non-chief
    worker)."""
    _set_precision(config)
    # Every worker resumes from the chief's checkpoints: the same state everywhere.
    latest = tf.train.latest_checkpoint(os.path.join(workdir, "checkpoints"))
    if strategy.num_replicas_in_sync > 1 and latest and own_dataset:
        # Iterators over several devices cannot be checkpointed: a resumed multi-device run
        # restores models, optimizers, step and RNG exactly and continues the data stream
        # with a seed derived from the step, so it does not replay the batches it has seen.
        done = int(tf.train.load_checkpoint(latest).get_tensor("step/.ATTRIBUTES/VARIABLE_VALUE"))
        dataset = build_dataset(config, seed_offset=done)
        log(f"multi-device resume: input pipeline reseeded at step {done}")
    # After the stream is built (`build_dataset` clears the global seed).
    keras.utils.set_random_seed(config.seed)  # Python, NumPy, TF and Keras initialisers
    trainer = Trainer(config, strategy)
    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        # Every worker makes the same global batches and keeps its share of each (sharding
        # by data, not by files): the batches of a run do not depend on how many workers
        # train it, and a file-based source needs no more files than workers.
        options = tf.data.Options()
        policy = tf.data.experimental.AutoShardPolicy.DATA
        options.experimental_distribute.auto_shard_policy = policy
        dataset = dataset.with_options(options)
    iterator = iter(strategy.experimental_distribute_dataset(dataset))
    trackable = isinstance(iterator, tf.__internal__.tracking.Trackable)
    ckpt = trainer.checkpoint(iterator if trackable else None)
    manager = tf.train.CheckpointManager(ckpt, os.path.join(out_dir, "checkpoints"),
                                         max_to_keep=config.keep_checkpoints)
    if latest:
        ckpt.restore(latest).assert_existing_objects_matched()
        log(f"resumed from {latest} at step {int(trainer.step.numpy())}")
    elif config.init_checkpoint:
        _initialise(trainer, config)
        trainer.step.assign(0)
        log(f"initialised from {config.init_checkpoint}")

    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        _check_same_start(strategy, trainer.step)
    start = int(trainer.step.numpy())
    end = config.num_steps
    if stop_after_steps is not None:
        end = min(end, start + stop_after_steps)
    writer = tf.summary.create_file_writer(os.path.join(out_dir, "tensorboard"))
    sums: dict[str, float] = collections.defaultdict(float)
    count = 0
    t_window = time.time()
    t_start = time.time()
    batch = None
    for step in range(start, end):
        lr = trainer.set_learning_rates(step)
        if step < config.warmup_steps:
            batch = next(iterator)
            out = trainer.warmup_step(batch)
        else:
            for _ in range(config.optim.critic_steps):
                out_d = trainer.critic_step(next(iterator))
            batch = next(iterator)
            out = dict(trainer.generator_step(batch))
            out.update(out_d)
        for k, v in out.items():
            sums[k] += float(v)
        count += 1
        done = step + 1
        if done % config.log_every == 0 or done == end:
            now = time.time()
            rate = count / max(now - t_window, 1e-9)
            means = {k: v / count for k, v in sums.items()}
            with writer.as_default(step=done):
                for k, v in means.items():
                    tf.summary.scalar(f"loss/{k}", v)
                tf.summary.scalar("train/learning_rate", lr)
                tf.summary.scalar("train/steps_per_second", rate)
            left = (config.num_steps - done) / max(rate, 1e-9)
            text = " ".join(f"{k}={v:.4f}" for k, v in sorted(means.items()))
            log(f"step {done}/{config.num_steps} {text} lr={lr:.2e} "
                f"{rate:.3f} steps/s elapsed {_format_eta(now - t_start)} left {_format_eta(left)}")
            sums.clear()
            count = 0
            t_window = now
        if batch is not None and (done % config.image_every == 0 or done == end):
            _write_images(trainer, _local(batch, strategy), writer, done)
        if done % config.checkpoint_every == 0 or done == end:
            manager.save(checkpoint_number=done)
            save_generator(trainer.generator, os.path.join(out_dir, "export"),
                           info={"step": done, "config": config.to_dict()})
    writer.close()  # before a non-chief worker's directory is removed
    return trainer


def _check_same_start(strategy: tf.distribute.Strategy, step: tf.Variable) -> None:
    """Raises `WorkdirNotShared` on every worker when they restored different steps: a
    worker that cannot read the chief's checkpoints would train from other weights, and
    loops of different lengths would leave the longer ones waiting for their peers."""
    local = strategy.experimental_distribute_values_from_function(
        lambda _: tf.reshape(tf.identity(step), [1]))
    steps = [int(s) for s in strategy.gather(local, axis=0).numpy()]
    if len(set(steps)) > 1:
        raise WorkdirNotShared(
            f"the workers start at different steps ({', '.join(map(str, steps))}): all of them "
            f"must read the chief's checkpoints in one --workdir (a shared file system)")


def _write_images(trainer: Trainer, batch: dict, writer, step: int, max_outputs: int = 2) -> None:
    a, b, f = batch["image_a"], batch["image_b"], batch["focus"]
    predicted = trainer.generator(tf.concat([a, b], -1), training=False)
    fused = inference.fuse(tf.cast(a, tf.float32), tf.cast(b, tf.float32), predicted)  # eq. 14
    with writer.as_default(step=step):
        tf.summary.image("I_A", _to_uint8(a, True), max_outputs=max_outputs)
        tf.summary.image("I_B", _to_uint8(b, True), max_outputs=max_outputs)
        tf.summary.image("F", _to_uint8(f, False), max_outputs=max_outputs)
        tf.summary.image("F_hat", _to_uint8(predicted, False), max_outputs=max_outputs)
        tf.summary.image("fused", _to_uint8(fused, True), max_outputs=max_outputs)
        if "image" in batch:
            tf.summary.image("I_ground_truth", _to_uint8(batch["image"], True), max_outputs=max_outputs)


def remove_stale_files(workdir: str) -> list[str]:
    """Removes what a killed run (kill -9, a power cut) left in `workdir`, matched by exact
    name and nothing else: `checkpoints/ckpt-N_temp/` holding only TensorFlow's shard files,
    `checkpoints/checkpoint.tmp<32 hex digits>`, the temporary `config.json`, and the
    temporaries of `model_io.save_generator` in `export/`. Only one run may use a work dir
    at a time, so none of them can belong to a live run. Returns the paths removed."""
    removed = []

    def remove_file(path: str) -> None:
        try:
            if stat.S_ISREG(os.lstat(path).st_mode):
                os.remove(path)
                removed.append(path)
        except OSError:
            pass

    remove_file(os.path.join(workdir, CONFIG_TMP))
    for name in (WEIGHTS_FILE, CONFIG_FILE):
        remove_file(os.path.join(workdir, "export", ".tmp." + name))
    ckpt_dir = os.path.join(workdir, "checkpoints")
    try:
        names = os.listdir(ckpt_dir)
    except OSError:
        return removed
    for name in names:
        path = os.path.join(ckpt_dir, name)
        if _CKPT_STATE_TEMP.fullmatch(name):
            remove_file(path)
        elif (_CKPT_TEMP_DIR.fullmatch(name) and not os.path.islink(path)
              and os.path.isdir(path)):
            try:
                entries = list(os.scandir(path))
                if all(_CKPT_TEMP_FILE.fullmatch(e.name) and e.is_file(follow_symlinks=False)
                       for e in entries):
                    shutil.rmtree(path)
                    removed.append(path)
            except OSError:
                pass
    return removed


def write_config(workdir: str, config: TrainConfig) -> None:
    """Writes `workdir/config.json` through a temporary file, so that an interruption never
    leaves it empty or half written."""
    tmp = os.path.join(workdir, CONFIG_TMP)
    with open(tmp, "w") as f:
        f.write(config.to_json())
    os.replace(tmp, os.path.join(workdir, RUN_CONFIG))


def read_config(workdir: str) -> dict:
    with open(os.path.join(workdir, RUN_CONFIG)) as f:
        return json.load(f)
