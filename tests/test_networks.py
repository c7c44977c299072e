"""Shapes, ranges, parameter counts and serialisation of G and D (section 3.1, Fig. 3)."""

import numpy as np
import pytest
import tensorflow as tf

import keras

from mfif_tf.config import model_config
from mfif_tf.layers import ConvBNReLU, SEResBlock, SqueezeExcitation
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


def test_encoder_depth_follows_the_config():
    """Three stride-2 stages: G pads to multiples of 8 and still gives any-size maps."""
    config = model_config("compact", stem_channels=8, down_channels=(8, 16, 32), num_blocks=2,
                          se_reduction=4)
    g = build_generator(config)
    assert g.size_multiple == 8 and build_generator(model_config("compact")).size_multiple == 4
    assert [layer.name for layer in g.stem_layers] == ["stem_conv7", "down1", "down2", "down3"]
    assert [layer.filters for layer in g.decoder_layers] == [32, 16, 8]
    y = g(tf.random.uniform([1, 37, 53, 6], -1, 1, seed=5), training=False)
    assert y.shape == (1, 37, 53, 1)


LAYERS = {
    "conv": (lambda: ConvBNReLU(6, 3, strides=2, transpose=True, name="up_x"), [1, 8, 8, 4]),
    "reflect": (lambda: ConvBNReLU(5, 7, reflect=True, name="stem_x"), [1, 12, 12, 1]),
    "se": (lambda: SqueezeExcitation(16, reduction=4, name="se_x"), [2, 5, 5, 16]),
    "block": (lambda: SEResBlock(8, reduction=2, name="block_x"), [1, 6, 6, 8]),
    "plain_block": (lambda: SEResBlock(8, reduction=2, use_se=False, name="plain_x"),
                    [1, 6, 6, 8]),
    "generator": (lambda: Generator(model_config("compact", num_blocks=1), name="g_x"),
                  [1, 16, 20, 6]),
    "critic": (lambda: Critic(model_config("compact", critic_layers=3), name="d_x"),
               [1, 32, 32, 7]),
}


@pytest.mark.parametrize("kind", LAYERS)
def test_get_config_round_trip(kind):
    """from_config(get_config()) rebuilds the same layer (name, settings, outputs), also
    through Keras' registered serialisation."""
    make, shape = LAYERS[kind]
    layer = make()
    x = tf.random.uniform(shape, -1, 1, seed=6)
    want = layer(x, training=False)
    config = layer.get_config()
    assert config["name"] == layer.name and config["trainable"] is True
    revived = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
    if kind not in ("generator", "critic"):  # layers build all weights from the build config
        assert len(revived.weights) == len(layer.weights)
    for clone in (type(layer).from_config(config), revived):
        assert type(clone) is type(layer) and clone.name == layer.name
        assert clone.get_config() == config
        clone(x, training=False)
        clone.set_weights(layer.get_weights())
        np.testing.assert_allclose(clone(x, training=False).numpy(), want.numpy(), atol=1e-6)


def test_generator_config_keeps_dtype_policy_and_trainable():
    g = Generator(model_config("compact"), name="g16", dtype="mixed_float16", trainable=False)
    clone = Generator.from_config(g.get_config())
    assert clone.dtype_policy.name == "mixed_float16" and clone.compute_dtype == "float16"
    assert clone.trainable is False and clone.config == g.config


@pytest.mark.parametrize("kernel_size", [3, 4, 5, 6])
def test_subpixel_form_equals_the_transposed_convolution(kernel_size):
    """`subpixel_upsampling`: a transposed ConvBNReLU traced in the block gives the same
    output through a convolution and a depth-to-space (the LiteRT graph's form)."""
    from mfif_tf.layers import ConvBNReLU, subpixel_transposed_conv, subpixel_upsampling

    block = ConvBNReLU(6, kernel_size, strides=2, transpose=True)
    x = tf.random.stateless_normal([1, 9, 14, 5], seed=[1, kernel_size])
    plain = block(x, training=False)
    with subpixel_upsampling():
        traced = tf.function(lambda t: block(t, training=False)).get_concrete_function(
            tf.TensorSpec([1, None, None, 5]))
    graph_ops = {op.type for op in traced.graph.get_operations()}
    assert "DepthToSpace" in graph_ops and "Conv2DBackpropInput" not in graph_ops
    np.testing.assert_allclose(traced(x).numpy(), plain.numpy(), atol=2e-6)
    direct = subpixel_transposed_conv(x, block.conv.kernel)
    np.testing.assert_allclose(direct.numpy(), block.conv(x).numpy(), atol=2e-6)
    # Outside the block the layer traces by output parity (`parity_transposed_conv_relu`).
    outside = tf.function(lambda t: block(t, training=False)).get_concrete_function(
        tf.TensorSpec([1, None, None, 5]))
    outside_ops = [op.type for op in outside.graph.get_operations()]
    assert outside_ops.count("Conv2D") == 4 and "Conv2DBackpropInput" not in outside_ops


@pytest.mark.parametrize("kernel_size", [3, 4, 5, 6])
def test_parity_form_equals_the_transposed_convolution(kernel_size):
    """`parity_transposed_conv_relu`: four convolutions, one per output parity pair, with
    the bias and ReLU, interleaved, give relu(transposed convolution + bias) at odd and
    even sizes and with a batch."""
    from mfif_tf.layers import parity_transposed_conv_relu

    conv = keras.layers.Conv2DTranspose(6, kernel_size, strides=2, padding="same",
                                        use_bias=False)
    bias = tf.random.stateless_normal([6], seed=[2, kernel_size])
    for shape in ([2, 9, 14, 5], [1, 8, 7, 5], [1, 1, 1, 5]):
        x = tf.random.stateless_normal(shape, seed=[4, kernel_size])
        expected = tf.nn.relu(conv(x) + bias).numpy()
        traced = tf.function(lambda t: parity_transposed_conv_relu(t, conv.kernel.value, bias))
        got = traced.get_concrete_function(tf.TensorSpec([None, None, None, 5]))(x).numpy()
        assert got.shape == expected.shape == (shape[0], 2 * shape[1], 2 * shape[2], 6)
        assert (expected == 0).any() and (expected > 0.5).any()
        np.testing.assert_allclose(got, expected, atol=2e-6)


@pytest.mark.parametrize("kernel_size,channels", [(7, 32), (3, 5), (1, 4)])
def test_one_channel_conv_equals_the_convolution(kernel_size, channels):
    """`one_channel_conv` (rows of taps as channels, then shifted sums) equals the "valid"
    convolution to one channel, in float32 and (to bfloat16's precision) in bfloat16."""
    from mfif_tf.layers import one_channel_conv

    x = tf.random.stateless_normal([2, 23, 17, channels], seed=[5, kernel_size])
    kernel = tf.random.stateless_normal([kernel_size, kernel_size, channels, 1],
                                        seed=[6, kernel_size]) * 0.1
    expected = tf.nn.conv2d(tf.cast(x, tf.float64), tf.cast(kernel, tf.float64), 1,
                            "VALID").numpy()
    got = one_channel_conv(x, kernel)
    assert got.dtype == tf.float32 and got.shape == expected.shape
    np.testing.assert_allclose(got.numpy(), expected, atol=5e-6)
    low = one_channel_conv(tf.cast(x, tf.bfloat16), kernel)
    assert low.dtype == tf.float32
    np.testing.assert_allclose(low.numpy(), expected, atol=0.05 * np.abs(expected).max())


def test_generator_inference_forms_agree():
    """G in inference gives the same F_hat in TensorFlow's forms (decoder by output parity,
    head by `one_channel_conv`) as in the LiteRT graph's (sub-pixel decoder, plain head
    convolution); only the TensorFlow forms are free of one-channel convolutions."""
    from mfif_tf.layers import subpixel_upsampling

    g = build_generator(model_config("compact"))
    x = tf.random.stateless_uniform([1, 37, 42, 6], seed=[8, 1], minval=-1.0, maxval=1.0)
    g(x, training=False)
    _randomise_batchnorms(g, 3)
    spec = tf.TensorSpec([1, None, None, 6])
    plain = tf.function(lambda t: g(t, training=False)).get_concrete_function(spec)
    with subpixel_upsampling():
        litert = tf.function(lambda t: g(t, training=False)).get_concrete_function(spec)

    def one_channel_convs(fn):
        return [op for op in fn.graph.get_operations()
                if op.type == "Conv2D" and op.outputs[0].shape[-1] == 1]

    assert not one_channel_convs(plain) and len(one_channel_convs(litert)) == 1
    a, b = plain(x).numpy(), litert(x).numpy()
    assert a.shape == (1, 37, 42, 1) and a.std() > 1e-3
    np.testing.assert_allclose(a, b, atol=1e-5)


def _randomise_batchnorms(layer, seed):
    rng = np.random.default_rng(seed)
    norms = [w for w in layer._flatten_layers() if isinstance(w, keras.layers.BatchNormalization)]
    for bn in norms:
        n = bn.gamma.shape[0]
        bn.gamma.assign(rng.uniform(0.5, 2.0, n).astype(np.float32))
        bn.beta.assign(rng.normal(0, 0.5, n).astype(np.float32))
        bn.moving_mean.assign(rng.normal(0, 0.5, n).astype(np.float32))
        bn.moving_variance.assign(rng.uniform(0.1, 3.0, n).astype(np.float32))


@pytest.mark.parametrize("kind", ["conv7_reflect", "down", "up", "up_subpixel", "se_block"])
def test_inference_folds_batchnorm_into_the_convolutions(kind):
    """In inference (training False/None) the BatchNorms are folded into the convolutions:
    the same values as convolution -> BatchNorm(moving statistics) -> ReLU, and no
    normalisation op left in the traced graph; training still normalises by the batch."""
    from mfif_tf.layers import subpixel_upsampling

    if kind == "se_block":
        layer = SEResBlock(8, reduction=4)
        x = tf.random.stateless_normal([2, 10, 12, 8], seed=[3, 1])
    else:
        layer = {"conv7_reflect": ConvBNReLU(8, 7, reflect=True),
                 "down": ConvBNReLU(8, 3, strides=2),
                 "up": ConvBNReLU(8, 4, strides=2, transpose=True),
                 "up_subpixel": ConvBNReLU(8, 4, strides=2, transpose=True)}[kind]
        x = tf.random.stateless_normal([2, 11, 13, 5], seed=[3, 2])
    layer(x, training=False)
    _randomise_batchnorms(layer, 7)

    if kind == "se_block":
        def reference(t):
            y = tf.nn.relu(layer.bn1(layer.conv1(t), training=False))
            y = layer.se(layer.bn2(layer.conv2(y), training=False))
            return tf.nn.relu(t + y)
    else:
        def reference(t):
            if layer.reflect:
                p = layer.kernel_size // 2
                t = tf.pad(t, [[0, 0], [p, p], [p, p], [0, 0]], mode="REFLECT")
            return tf.nn.relu(layer.bn(layer.conv(t), training=False))

    if kind == "up_subpixel":
        with subpixel_upsampling():
            folded = tf.function(lambda t: layer(t, training=False))
            out = folded(x)
    else:
        folded = tf.function(lambda t: layer(t, training=False))
        out = folded(x)
    expected = reference(x).numpy()
    assert np.abs(expected).max() > 0.1  # the statistics matter
    np.testing.assert_allclose(out.numpy(), expected, atol=2e-5, rtol=1e-5)
    np.testing.assert_allclose(layer(x).numpy(), expected, atol=2e-5, rtol=1e-5)  # None
    ops = {op.type for op in folded.get_concrete_function(x).graph.get_operations()}
    assert "BiasAdd" in ops  # the fold's bias (the convolutions have none, BN adds none)
    trained = layer(x, training=True).numpy()
    assert np.abs(trained - expected).max() > 1e-2  # batch statistics in training
