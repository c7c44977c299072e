"""Golden values of eqs. 1-6 and of the ablation losses."""

import numpy as np
import tensorflow as tf

from mfif_tf import losses


def test_wgan_losses_golden():
    real = tf.constant([2.0, -1.0])
    fake = tf.constant([0.5, 3.0])
    np.testing.assert_allclose(losses.wgan_critic_loss(real, fake).numpy(), [-1.5, 4.0])
    np.testing.assert_allclose(losses.wgan_generator_loss(fake).numpy(), [-0.5, -3.0])


def test_lsgan_losses_golden():
    real = tf.constant([1.0, 0.0])
    fake = tf.constant([0.0, 2.0])
    np.testing.assert_allclose(losses.lsgan_critic_loss(real, fake).numpy(), [0.0, 0.5 + 2.0])
    np.testing.assert_allclose(losses.lsgan_generator_loss(fake).numpy(), [0.5, 0.5])


def test_l1_and_bce_golden():
    f = tf.constant([[[[1.0], [0.0]], [[1.0], [0.0]]]])  # 1x2x2x1
    p = tf.constant([[[[0.75], [0.25]], [[0.5], [0.0]]]])
    np.testing.assert_allclose(losses.l1_reconstruction(f, p).numpy(), [(0.25 + 0.25 + 0.5 + 0) / 4])
    expected = -(np.log(0.75) + np.log(0.75) + np.log(0.5) + np.log(1 - 1e-7)) / 4
    np.testing.assert_allclose(losses.bce_reconstruction(f, p).numpy(), [expected], rtol=1e-5)


def test_gradient_penalty_of_a_linear_critic_is_exact():
    """D(F~) = sum(w * F~) has gradient w everywhere, so eq. 3 gives (||w|| - 1)^2 for any
    interpolation point alpha."""
    rng = np.random.default_rng(0)
    w = tf.constant(rng.normal(size=[1, 4, 4, 1]), tf.float32)
    critic = lambda f: tf.reduce_sum(f * w, axis=[1, 2, 3])
    f = tf.constant(rng.uniform(size=[3, 4, 4, 1]), tf.float32)
    p = tf.constant(rng.uniform(size=[3, 4, 4, 1]), tf.float32)
    alpha = tf.constant([0.0, 0.3, 1.0])
    gp = losses.gradient_penalty(critic, f, p, alpha).numpy()
    norm = np.linalg.norm(w.numpy())
    np.testing.assert_allclose(gp, [(norm - 1) ** 2] * 3, rtol=1e-5)


def test_gradient_penalty_is_zero_for_unit_norm_critic_and_uses_interpolates():
    w = tf.ones([1, 2, 2, 1]) / 2.0  # ||w|| = 1
    gp = losses.gradient_penalty(lambda f: tf.reduce_sum(f * w, [1, 2, 3]),
                                 tf.ones([2, 2, 2, 1]), tf.zeros([2, 2, 2, 1]), tf.constant([0.2, 0.9]))
    np.testing.assert_allclose(gp.numpy(), [0.0, 0.0], atol=1e-6)
    # A quadratic critic D = sum(F~^2) has gradient 2 F~ = 2 alpha at the interpolate of 1 and 0.
    gp = losses.gradient_penalty(lambda f: tf.reduce_sum(f * f, [1, 2, 3]),
                                 tf.ones([2, 2, 2, 1]), tf.zeros([2, 2, 2, 1]), tf.constant([0.25, 1.0]))
    np.testing.assert_allclose(gp.numpy(), [(2 * 0.25 * 2 - 1) ** 2, (2 * 1.0 * 2 - 1) ** 2], rtol=1e-5)
