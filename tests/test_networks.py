"""Shapes, ranges, parameter counts and serialisation of G and D (section 3.1, Fig. 3)."""

import numpy as np
import pytest
import tensorflow as tf

from mfif_tf.config import model_config
from mfif_tf.networks import Critic, Generator, build_critic, build_generator, count_trainable


def test_paper_generator_has_the_authors_parameter_count():
    assert count_trainable(build_generator(model_config("paper"))) == 13_700_928


def test_compact_generator_is_much_smaller():
    n = count_trainable(build_generator(model_config("compact")))
    assert n == 639_696
    assert n < 13_700_928 / 20


def test_critic_parameter_counts():
    assert count_trainable(build_critic(model_config("paper"))) == 15_353_281
    assert count_trainable(build_critic(model_config("compact"))) == 3_842_785


@pytest.mark.parametrize("height,width", [(37, 53), (32, 32), (1 * 4 + 3, 9), (64, 30)])
def test_generator_any_size(height, width):
    g = build_generator(model_config("compact"))
    x = tf.random.uniform([2, height, width, 6], -1, 1, seed=1)
    y = g(x, training=False).numpy()
    assert y.shape == (2, height, width, 1)
    assert y.dtype == np.float32
    assert np.all(y >= 0) and np.all(y <= 1)


def test_critic_gives_one_score_per_sample_for_any_size():
    d = build_critic(model_config("compact"))
    for size in (32, 50, 256):
        s = d(tf.zeros([3, size, size, 7])).numpy()
        assert s.shape == (3,)


def test_branches_share_weights_and_channels_matter():
    """The six channels go through one branch: permuting R, G, B inside both sources leaves
    the channel means (and so F_hat) unchanged, while swapping sources changes it."""
    g = build_generator(model_config("compact"))
    x = tf.random.uniform([1, 32, 32, 6], -1, 1, seed=2)
    perm = tf.gather(x, [2, 0, 1, 5, 3, 4], axis=-1)
    np.testing.assert_allclose(g(x).numpy(), g(perm).numpy(), atol=1e-5)
    swapped = tf.concat([x[..., 3:], x[..., :3]], -1)
    assert np.abs(g(x).numpy() - g(swapped).numpy()).max() > 1e-4


def test_ablation_switches():
    two = build_generator(model_config("compact", branches="two"))
    assert two(tf.zeros([1, 16, 16, 6])).shape == (1, 16, 16, 1)
    plain = build_generator(model_config("compact", use_se=False))
    se = build_generator(model_config("compact"))
    se_params = sum(2 * 64 * (64 // 8) for _ in range(6))
    assert count_trainable(se) - count_trainable(plain) == se_params


def test_config_round_trip_and_weights():
    g = build_generator(model_config("compact"))
    clone = Generator.from_config(g.get_config())
    clone(tf.zeros([1, 16, 16, 6]))
    clone.set_weights(g.get_weights())
    x = tf.random.uniform([1, 24, 24, 6], -1, 1, seed=3)
    np.testing.assert_allclose(g(x).numpy(), clone(x).numpy(), atol=1e-6)
    d = build_critic(model_config("compact"))
    d2 = Critic.from_config(d.get_config())
    d2(tf.zeros([1, 32, 32, 7]))
    assert count_trainable(d2) == count_trainable(d)


def test_save_and_load_generator(tmp_path):
    from mfif_tf.model_io import load_generator, save_generator

    g = build_generator(model_config("compact"))
    save_generator(g, str(tmp_path / "m"))
    loaded = load_generator(str(tmp_path / "m"))
    x = tf.random.uniform([1, 20, 28, 6], -1, 1, seed=4)
    np.testing.assert_allclose(g(x).numpy(), loaded(x).numpy(), atol=1e-6)


def test_load_generator_errors(tmp_path):
    from mfif_tf.model_io import ModelNotFoundError, load_generator

    with pytest.raises(ModelNotFoundError, match="does not exist"):
        load_generator(str(tmp_path / "missing"))
    (tmp_path / "file").write_text("x")
    with pytest.raises(ModelNotFoundError, match="not a directory"):
        load_generator(str(tmp_path / "file"))
    with pytest.raises(ModelNotFoundError, match="neither"):
        load_generator(str(tmp_path))
