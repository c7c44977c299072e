"""The WGAN-GP training steps of MFIF-GAN (eqs. 1-6, section 4.1.2).

A `Trainer` owns G, D, their Adam optimizers, the step counter and a `tf.random.Generator`,
all created in a `tf.distribute.Strategy` scope. `critic_step`, `generator_step` and
`warmup_step` are `tf.function`s that take a distributed batch (a dict with `image_a`,
`image_b` in [-1, 1] and `focus` F in {0, 1}) and return losses averaged over replicas.
They hold no host-side Python (no `.numpy()`, no Python branches on tensor values), so
that any strategy can run them: one device, MirroredStrategy, MultiWorkerMirroredStrategy
(used), TPUStrategy (not tried).
"""

from __future__ import annotations

import os

import keras
import tensorflow as tf

from mfif_tf import losses
from mfif_tf.model_io import load_generator, variables_by_path
from mfif_tf.config import TrainConfig, multi_worker_task
from mfif_tf.networks import Critic, Generator, critic_input


def linear_decay(base: float, step: int, total: int, decay_fraction: float) -> float:
    """Section 4.1.2's linear decay: `base` for the first `1 - decay_fraction` of `total`
    steps, then linearly to zero at step `total`."""
    total = max(total, 1)
    decay_start = total * (1.0 - decay_fraction)
    decay_len = max(total - decay_start, 1.0)
    return base * (1.0 - min(max((step - decay_start) / decay_len, 0.0), 1.0))


def make_strategy(kind: str = "auto") -> tf.distribute.Strategy:
    """The default strategy on one device, MirroredStrategy on several GPUs (or on several
    logical CPU devices when asked with "mirrored"), or with "multi_worker"
    MultiWorkerMirroredStrategy over the cluster of the TF_CONFIG environment variable.

    "multi_worker" configures collective ops, which TensorFlow only allows before its
    runtime starts: call it before any other TensorFlow operation of the process.
    """
    if kind == "multi_worker":
        # Checked here too (the CLI checks before TensorFlow loads): TensorFlow's own
        # messages about a bad TF_CONFIG are less direct.
        multi_worker_task(os.environ.get("TF_CONFIG"))
        # Collectives: AUTO is ring all-reduce over gRPC between CPU hosts, NCCL on GPUs.
        return tf.distribute.MultiWorkerMirroredStrategy()
    if kind == "default":
        return tf.distribute.get_strategy()
    if kind == "mirrored":
        gpus = tf.config.list_logical_devices("GPU")
        devices = [d.name for d in gpus] or [d.name for d in tf.config.list_logical_devices("CPU")]
        return tf.distribute.MirroredStrategy(devices=devices)
    if len(tf.config.list_logical_devices("GPU")) > 1:
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


def _optimizer(config: TrainConfig) -> keras.optimizers.Optimizer:
    opt = keras.optimizers.Adam(
        learning_rate=config.optim.learning_rate,
        beta_1=config.optim.beta_1,
        beta_2=config.optim.beta_2,
    )
    if config.mixed_precision == "float16":
        opt = keras.optimizers.LossScaleOptimizer(opt)
    return opt


class Trainer(tf.Module):
    """Holds the state of one training run and its step functions.

    Args:
      config: the resolved `TrainConfig`.
      strategy: the distribution strategy; the default one if None.
    """

    def __init__(self, config: TrainConfig, strategy: tf.distribute.Strategy | None = None):
        super().__init__(name="trainer")
        self.config = config
        self.strategy = strategy or tf.distribute.get_strategy()
        self.global_batch = config.batch_size
        self.critic_loss_fn, self.generator_adv_fn = losses.adversarial_losses(config.loss.gan)
        self.rec_fn = losses.reconstruction_loss(config.loss.reconstruction)
        size = config.data.image_size
        with self.strategy.scope():
            self.generator = Generator(config.model, name="generator")
            self.critic = Critic(config.model, name="critic")
            self.generator(tf.zeros([1, size, size, 6]), training=False)
            self.critic(tf.zeros([1, size, size, 7]), training=False)
            self.g_opt = _optimizer(config)
            self.d_opt = _optimizer(config)
            self.g_opt.build(self.generator.trainable_variables)
            self.d_opt.build(self.critic.trainable_variables)
            # Distillation: a frozen G whose map is the target (`TrainConfig.teacher`). It is
            # not part of the checkpoint: a resumed run loads it again from its directory.
            self.teacher = (load_generator(config.teacher, "float32") if config.teacher
                            else None)
            if self.teacher is not None:
                self.teacher.trainable = False
            self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
            self.rng = tf.random.Generator.from_seed(config.seed)
        # The per-replica steps are traced inside the outer tf.functions below. XLA compiles
        # them as nested functions, which only works without cross-replica synchronisation
        # inside (one device); several replicas run uncompiled. The steps branch on settings
        # in Python and on tensors only through TensorFlow ops, so they are traced without
        # AutoGraph's rewrite, which would change nothing and cost seconds of start-up.
        wrap = (lambda fn: tf.function(fn, jit_compile=True, autograph=False)) if (
            config.jit_compile and self.strategy.num_replicas_in_sync == 1) else (lambda fn: fn)
        self._critic_replica = wrap(self._critic_replica_step)
        self._generator_replica = wrap(self._generator_replica_step)
        self._warmup_replica = wrap(self._warmup_replica_step)

    # -- per-replica steps -------------------------------------------------------------

    def _average(self, per_sample: tf.Tensor) -> tf.Tensor:
        return tf.nn.compute_average_loss(per_sample, global_batch_size=self.global_batch)

    def _apply(self, optimizer, tape, loss, variables):
        if isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
            scaled = optimizer.scale_loss(loss)
            grads = tape.gradient(scaled, variables)
        else:
            grads = tape.gradient(loss, variables)
        optimizer.apply_gradients(zip(grads, variables))

    def _target(self, batch) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        """I_A, I_B and the map G learns: F, or with a teacher w F_teacher + (1 - w) F; w = 0
        for samples whose I_B is focused between the layers (`pair_focus`): the teacher's map
        is kept where it was trained, the true map taught where it was not."""
        a, b, f = batch["image_a"], batch["image_b"], batch["focus"]
        if self.teacher is None:
            return a, b, f
        taught = tf.stop_gradient(self.teacher(tf.concat([a, b], -1), training=False))
        w = self.config.teacher_weight
        if "pair_focused" in batch:
            w = w * (1.0 - tf.reshape(tf.cast(batch["pair_focused"], tf.float32),
                                      [-1, 1, 1, 1]))
        return a, b, tf.cast(w * taught + (1.0 - w) * tf.cast(f, tf.float32), f.dtype)

    def _critic_replica_step(self, batch, alpha):
        a, b, f = self._target(batch)
        predicted = tf.stop_gradient(self.generator(tf.concat([a, b], -1), training=True))
        cfg = self.config.loss
        with tf.GradientTape() as tape:
            real = self.critic(critic_input(a, b, f), training=True)
            fake = self.critic(critic_input(a, b, predicted), training=True)
            adv = self.critic_loss_fn(real, fake)  # eq. 1 (or LS)
            if cfg.lambda_gp > 0:
                gp = losses.gradient_penalty(  # eq. 3
                    lambda f_tilde: self.critic(critic_input(a, b, f_tilde), training=True),
                    f, predicted, alpha)
            else:
                gp = tf.zeros_like(adv)
            loss = self._average(adv + cfg.lambda_gp * gp)  # eq. 5
        self._apply(self.d_opt, tape, loss, self.critic.trainable_variables)
        return {"d_loss": loss, "d_adv": self._average(adv), "gp": self._average(gp),
                "wasserstein": self._average(real - fake)}

    def _generator_replica_step(self, batch):
        a, b, f = self._target(batch)
        cfg = self.config.loss
        with tf.GradientTape() as tape:
            predicted = self.generator(tf.concat([a, b], -1), training=True)
            fake = self.critic(critic_input(a, b, predicted), training=True)
            adv = self.generator_adv_fn(fake)  # eq. 2 (or LS)
            rec = self.rec_fn(f, predicted)  # eq. 4 (or BCE)
            loss = self._average(cfg.lambda_adv * adv + cfg.lambda_rec * rec)  # eq. 6
        self._apply(self.g_opt, tape, loss, self.generator.trainable_variables)
        return {"g_loss": loss, "g_adv": self._average(adv), "rec": self._average(rec)}

    def _warmup_replica_step(self, batch):
        a, b, f = self._target(batch)
        with tf.GradientTape() as tape:
            predicted = self.generator(tf.concat([a, b], -1), training=True)
            rec = self.rec_fn(f, predicted)
            loss = self._average(self.config.loss.lambda_rec * rec)
        self._apply(self.g_opt, tape, loss, self.generator.trainable_variables)
        return {"g_loss": loss, "rec": self._average(rec)}

    # -- distributed steps -------------------------------------------------------------

    def _reduce(self, per_replica: dict) -> dict:
        return {k: self.strategy.reduce(tf.distribute.ReduceOp.SUM, v, axis=None)
                for k, v in per_replica.items()}

    @tf.function(autograph=False)
    def critic_step(self, batch) -> dict:
        # alpha ~ U[0, 1] per sample (eq. 3); drawn per replica from the trainer's RNG.
        # Under a strategy a replica's draws depend on the RNG state and on its index among
        # all replicas, not on the process: two workers draw what two local devices would.
        def replica_fn(replica_batch):
            n = tf.shape(replica_batch["focus"])[0]
            alpha = self.rng.uniform([n], 0.0, 1.0)
            return self._critic_replica(replica_batch, alpha)

        return self._reduce(self.strategy.run(replica_fn, args=(batch,)))

    @tf.function(autograph=False)
    def generator_step(self, batch) -> dict:
        out = self._reduce(self.strategy.run(self._generator_replica, args=(batch,)))
        self.step.assign_add(1)
        return out

    @tf.function(autograph=False)
    def warmup_step(self, batch) -> dict:
        out = self._reduce(self.strategy.run(self._warmup_replica, args=(batch,)))
        self.step.assign_add(1)
        return out

    def set_learning_rates(self, step: int) -> float:
        """Both learning rates follow the same linear decay (section 4.1.2) over the
        adversarial steps; warm-up steps decay the same way over the last
        `warmup_decay_fraction` of the warm-up (0: constant)."""
        optim, warmup = self.config.optim, self.config.warmup_steps
        if step < warmup:
            lr = linear_decay(optim.learning_rate, step, warmup, optim.warmup_decay_fraction)
        else:
            lr = linear_decay(optim.learning_rate, step - warmup,
                              self.config.num_steps - warmup, optim.decay_fraction)
        for opt in (self.g_opt, self.d_opt):
            inner = opt.inner_optimizer if isinstance(opt, keras.optimizers.LossScaleOptimizer) else opt
            inner.learning_rate.assign(lr)
        return lr

    def checkpoint(self, iterator=None) -> tf.train.Checkpoint:
        # Keras 3 models do not expose layers held in Python lists to tf.train.Checkpoint,
        # so every variable (BatchNorm moving statistics included) is listed by path.
        items = dict(generator=variables_by_path(self.generator),
                     critic=variables_by_path(self.critic), g_opt=self.g_opt,
                     d_opt=self.d_opt, step=self.step, rng=self.rng)
        if iterator is not None:
            items["data"] = iterator
        return tf.train.Checkpoint(**items)


