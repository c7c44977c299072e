"""Losses of MFIF-GAN (section 3.2, eqs. 1-6) and the ablations of section 4.3.

All functions return one value per sample, shape (N,), so that a distribution strategy can
average them over the global batch (`tf.nn.compute_average_loss`).

Symbols: `real_score` = D(I_A, I_B, F), `fake_score` = D(I_A, I_B, F_hat), `focus` = F,
`predicted` = F_hat = G(I_A, I_B).
"""

from __future__ import annotations

from typing import Callable

import tensorflow as tf


def wgan_critic_loss(real_score: tf.Tensor, fake_score: tf.Tensor) -> tf.Tensor:
    """Eq. 1: L_adv(D) = E[D(I, G(I))] - E[D(I, F)]."""
    return fake_score - real_score


def wgan_generator_loss(fake_score: tf.Tensor) -> tf.Tensor:
    """Eq. 2: L_adv(G) = -E[D(I, G(I))]."""
    return -fake_score


def lsgan_critic_loss(real_score: tf.Tensor, fake_score: tf.Tensor) -> tf.Tensor:
    """Least-squares GAN (Mao et al. 2017), the "LS" ablation, as in FuseGAN."""
    return 0.5 * tf.square(real_score - 1.0) + 0.5 * tf.square(fake_score)


def lsgan_generator_loss(fake_score: tf.Tensor) -> tf.Tensor:
    return 0.5 * tf.square(fake_score - 1.0)


def l1_reconstruction(focus: tf.Tensor, predicted: tf.Tensor) -> tf.Tensor:
    """Eq. 4: L_rec = E|F - G(I)|, the mean over pixels of each sample."""
    diff = tf.abs(tf.cast(focus, tf.float32) - tf.cast(predicted, tf.float32))
    return tf.reduce_mean(diff, axis=[1, 2, 3])


def bce_reconstruction(focus: tf.Tensor, predicted: tf.Tensor, epsilon: float = 1e-7) -> tf.Tensor:
    """The "BCE" ablation: binary cross-entropy between F and F_hat, mean over pixels."""
    f = tf.cast(focus, tf.float32)
    p = tf.clip_by_value(tf.cast(predicted, tf.float32), epsilon, 1.0 - epsilon)
    bce = -(f * tf.math.log(p) + (1.0 - f) * tf.math.log(1.0 - p))
    return tf.reduce_mean(bce, axis=[1, 2, 3])


def gradient_penalty(
    critic_fn: Callable[[tf.Tensor], tf.Tensor],
    focus: tf.Tensor,
    predicted: tf.Tensor,
    alpha: tf.Tensor,
    epsilon: float = 1e-10,
) -> tf.Tensor:
    """Eq. 3: (||grad_{F~} D(I, F~)||_2 - 1)^2 with F~ = alpha F + (1 - alpha) F_hat.

    Args:
      critic_fn: maps a focus map F~ (N, H, W, 1) to scores (N,); the sources are bound in it.
      focus, predicted: F and F_hat, (N, H, W, 1).
      alpha: (N,) samples of U[0, 1], one per sample (Gulrajani et al. 2017).
      epsilon: inside the square root, so the gradient of the norm stays finite at zero.
    """
    alpha = tf.reshape(tf.cast(alpha, tf.float32), [-1, 1, 1, 1])
    interpolated = alpha * tf.cast(focus, tf.float32) + (1.0 - alpha) * tf.cast(predicted, tf.float32)
    with tf.GradientTape() as tape:
        tape.watch(interpolated)
        scores = critic_fn(interpolated)
    grads = tape.gradient(scores, interpolated)
    norm = tf.sqrt(tf.reduce_sum(tf.square(tf.cast(grads, tf.float32)), axis=[1, 2, 3]) + epsilon)
    return tf.square(norm - 1.0)


def reconstruction_loss(kind: str) -> Callable[[tf.Tensor, tf.Tensor], tf.Tensor]:
    if kind == "l1":
        return l1_reconstruction
    if kind == "bce":
        return bce_reconstruction
    raise ValueError(f"unknown reconstruction loss {kind!r}")


def adversarial_losses(kind: str):
    """(critic loss, generator loss) for "wgan_gp" (eqs. 1-2) or "lsgan"."""
    if kind == "wgan_gp":
        return wgan_critic_loss, wgan_generator_loss
    if kind == "lsgan":
        return lsgan_critic_loss, lsgan_generator_loss
    raise ValueError(f"unknown GAN loss {kind!r}")
