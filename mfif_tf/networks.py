"""The MFIF-GAN generator G and critic D (section 3.1, Fig. 3).

Symbols: I_A, I_B are the sources (`image_a`, `image_b`, values in [-1, 1]); F is the true
focus map (`focus`); F_hat = G(I_A, I_B) the predicted focus map in [0, 1], 1 where I_A is in
focus.
"""

from __future__ import annotations

import dataclasses

import keras
import tensorflow as tf
from keras import layers

from mfif_tf.config import ModelConfig, model_config, model_config_from_dict
from mfif_tf.inference import BT601
from mfif_tf.layers import ConvBNReLU, SEResBlock, one_channel_conv, subpixel_active

# The paper's encoder halves the resolution twice and the decoder doubles it twice, so G
# works on multiples of 4. A config with n stride-2 stages (`len(down_channels)`) works on
# multiples of 2**n: use `Generator.size_multiple`, which holds for every config.
SIZE_MULTIPLE = 4

# G's first convolution (the 7x7 one at full resolution) computes in float32 under every dtype
# policy, and G's input reaches it in float32. In bfloat16 (8 significant bits) the inputs
# themselves would be rounded to about one 8-bit grey level, erasing the fine texture that
# tells focus; that alone accounted for most of bfloat16's F_final disagreement with float32
# (99.87 % of the Lytro pixels agreeing with this conv in bfloat16, 99.97 % with it in
# float32, at 1 % of G's bfloat16 time at 520 x 520; docs/fusion.md, "Precision").
STEM_DTYPE = "float32"


@dataclasses.dataclass(frozen=True)
class ConvStep:
    """One convolution along one axis, as far as which positions it reads.

    Attributes:
      kernel: kernel size k.
      stride: s (for a transposed conv: the upsampling factor).
      pad: positions padded before the input (reflect, zero or "same" padding alike).
      transpose: a transposed convolution.
    """

    kernel: int
    stride: int = 1
    pad: int = 0
    transpose: bool = False


def conv_step(layer: layers.Layer, pad: int | None = None) -> ConvStep:
    """The `ConvStep` of a `ConvBNReLU` or a Keras Conv2D(Transpose) with square kernels.

    `pad` overrides the padding, for a "valid" conv on an explicitly padded input. "same"
    padding is TF's: max(k - s, 0) // 2 before, for inputs that are multiples of s (true
    inside G, which pads its input to `size_multiple`).
    """
    if isinstance(layer, ConvBNReLU):
        k, s, transpose = layer.kernel_size, layer.strides, layer.transpose
        same = not layer.reflect
        if pad is None and layer.reflect:
            pad = k // 2
    else:
        k, s = layer.kernel_size[0], layer.strides[0]
        transpose = isinstance(layer, layers.Conv2DTranspose)
        same = layer.padding == "same"
    if pad is None:
        pad = max(k - s, 0) // 2 if same else 0
    return ConvStep(kernel=k, stride=s, pad=pad, transpose=transpose)


def input_span(steps: list[ConvStep], lo: int, hi: int) -> tuple[int, int]:
    """Input positions [lo', hi'] that the outputs lo..hi (inclusive) of `steps`, applied in
    order, read along one axis."""
    for step in reversed(steps):
        k, s, p = step.kernel, step.stride, step.pad
        if step.transpose:  # input i reaches the outputs s*i - p .. s*i - p + k - 1
            lo, hi = -(-(lo - k + 1 + p) // s), (hi + p) // s
        else:  # output o reads the inputs s*o - p .. s*o - p + k - 1
            lo, hi = s * lo - p, s * hi - p + k - 1
    return lo, hi


@dataclasses.dataclass(frozen=True)
class Reach:
    """How many input positions before and after its own ones a stage's output reads.

    For the stem (full-resolution pixels read by one encoded position, which covers
    `size_multiple` pixels), an SE block (encoded positions) and the decoder (encoded
    positions read by the `size_multiple` output pixels of one encoded position).
    """

    before: int
    after: int

    @property
    def most(self) -> int:
        return max(self.before, self.after)


def _resolve(config: ModelConfig | dict | None) -> ModelConfig:
    if config is None:
        return model_config("paper")
    if isinstance(config, dict):
        return model_config_from_dict(config)
    return config


def _deserialize_dtype(config: dict) -> dict:
    """`get_config` stores the dtype policy as a dict; the constructor wants the policy."""
    config = dict(config)
    if isinstance(config.get("dtype"), dict):
        config["dtype"] = keras.dtype_policies.deserialize(config["dtype"])
    return config


def to_grey(rgb: tf.Tensor) -> tf.Tensor:
    """Luminance of [-1, 1] RGB (ITU-R BT.601 weights, as MATLAB's rgb2gray)."""
    weights = tf.constant(BT601, rgb.dtype)
    return tf.reduce_sum(rgb * weights, axis=-1, keepdims=True)


@keras.saving.register_keras_serializable(package="mfif_tf")
class Generator(keras.Model):
    """G: six weight-shared single-channel encoder branches, averaged per source, concatenated
    and decoded to F_hat (Fig. 3).

    Input: I_A and I_B concatenated on channels, (N, H, W, 6) in [-1, 1], any H and W (the
    input is mirror-padded to a multiple of `size_multiple`, 4 for the paper's two stride-2
    stages, and the output cropped back; the mirror padding needs sides of at least
    `size_multiple / 2` pixels). Output: F_hat, (N, H, W, 1) in [0, 1], float32.

    The encoder has one stride-2 3x3 Conv-BN-ReLU per entry of `config.down_channels` (two
    in the paper) and the decoder one stride-2 4x4 transposed one per entry, in reverse.

    With `branches="two"` (ablation) each source is turned grey and G has two branches.

    The pieces are public so that tiled inference can run them one at a time:
    `to_branches` -> `stem` -> `blocks[i]` (with whole-image SE averages) -> `merge` ->
    `decode`; `stem_reach`, `block_reach` and `decode_reach` say how far each piece reads
    beyond a tile.

    Args:
      config: a `ModelConfig` or its dict.
    """

    def __init__(self, config: ModelConfig | dict | None = None, **kwargs):
        super().__init__(**kwargs)
        self.config = config = _resolve(config)
        down = tuple(config.down_channels)
        self.stem_layers = [
            ConvBNReLU(config.stem_channels, 7, reflect=True, name="stem_conv7",
                       dtype=STEM_DTYPE),
            *(ConvBNReLU(c, 3, strides=2, name=f"down{i + 1}") for i, c in enumerate(down)),
        ]
        self.blocks = [
            SEResBlock(down[-1], config.se_reduction, use_se=config.use_se, name=f"se_res_{i}")
            for i in range(config.num_blocks)
        ]
        self.decoder_layers = [ConvBNReLU(c, 4, strides=2, transpose=True, name=f"up{i + 1}")
                               for i, c in enumerate(reversed(down))]
        self.head = layers.Conv2D(1, 7, padding="valid", use_bias=False, name="head_conv7")

    @property
    def num_branches(self) -> int:
        return 6 if self.config.branches == "six" else 2

    @property
    def size_multiple(self) -> int:
        """Pixels per encoded position: 2 ** (number of stride-2 stages); 4 in the paper."""
        factor = 1
        for layer in self.stem_layers:
            factor *= layer.strides
        return factor

    @property
    def head_pad(self) -> int:
        """Reflect padding of the head conv's input (a "valid" conv keeps the size)."""
        return self.head.kernel_size[0] // 2

    def stem_reach(self) -> Reach:
        """Full-resolution pixels that one encoded position reads beyond its own ones."""
        m = self.size_multiple
        lo, hi = input_span([conv_step(layer) for layer in self.stem_layers], 0, 0)
        return Reach(before=-lo, after=hi - (m - 1))

    def block_reach(self) -> Reach:
        """Encoded positions that one SE block's output reads on either side (its two 3x3
        convs; the SE squeeze is over the whole image and handled apart)."""
        if not self.blocks:
            return Reach(0, 0)
        steps = [conv_step(conv) for conv in (self.blocks[0].conv1, self.blocks[0].conv2)]
        lo, hi = input_span(steps, 0, 0)
        return Reach(before=-lo, after=hi)

    def decode_reach(self) -> Reach:
        """Encoded positions that the output pixels of one encoded position read on either
        side (the transposed convs and the head)."""
        steps = [conv_step(layer) for layer in self.decoder_layers]
        steps.append(conv_step(self.head, pad=self.head_pad))
        lo, hi = input_span(steps, 0, self.size_multiple - 1)
        return Reach(before=-lo, after=hi)

    def to_branches(self, x: tf.Tensor) -> tf.Tensor:
        """(N, H, W, 6) -> (N * B, H, W, 1): every channel becomes a batch entry, so the
        shared branch runs as one batched call."""
        if self.config.branches == "two":
            x = tf.concat([to_grey(x[..., :3]), to_grey(x[..., 3:])], axis=-1)
        shape = tf.shape(x)
        x = tf.transpose(x, [0, 3, 1, 2])
        return tf.reshape(x, [shape[0] * self.num_branches, shape[1], shape[2], 1])

    @property
    def stem_dtype(self) -> tf.DType:
        """What G's input is fed in: the dtype of its first convolution, float32 whatever
        G's policy (`STEM_DTYPE`)."""
        return tf.as_dtype(self.stem_layers[0].compute_dtype)

    def stem(self, x: tf.Tensor, training=None) -> tf.Tensor:
        """Input in `stem_dtype`; output in G's compute dtype."""
        for layer in self.stem_layers:
            x = layer(tf.cast(x, layer.compute_dtype), training=training)
        return x

    def merge(self, features: tf.Tensor) -> tf.Tensor:
        """(N * B, h, w, C) -> (N, h, w, 2C): Feature_A and Feature_B, each the mean over its
        source's channels, concatenated (Fig. 3, "tensor concatenation")."""
        shape = tf.shape(features)
        per_source = self.num_branches // 2
        channels = features.shape[-1]
        x = tf.reshape(features, [-1, 2, per_source, shape[1], shape[2], channels])
        x = tf.reduce_mean(x, axis=2)
        x = tf.transpose(x, [0, 2, 3, 1, 4])
        return tf.reshape(x, [-1, shape[1], shape[2], 2 * channels])

    def decode(self, x: tf.Tensor, training=None) -> tf.Tensor:
        for layer in self.decoder_layers:
            x = layer(x, training=training)
        p = self.head_pad
        x = tf.pad(x, [[0, 0], [p, p], [p, p], [0, 0]], mode="REFLECT")
        if training or subpixel_active() or not self.head.built:  # the first call builds it
            return tf.sigmoid(tf.cast(self.head(x), tf.float32))
        # Inference in TensorFlow: the same sum, faster on CPUs (`one_channel_conv`).
        return tf.sigmoid(one_channel_conv(x, self.head.kernel.value))

    def call(self, inputs, training=None):
        x = tf.convert_to_tensor(inputs)
        if x.dtype != self.stem_dtype:
            x = tf.cast(x, self.stem_dtype)
        height, width = tf.shape(x)[1], tf.shape(x)[2]
        pad_h = (-height) % self.size_multiple
        pad_w = (-width) % self.size_multiple
        x = tf.pad(x, [[0, 0], [0, pad_h], [0, pad_w], [0, 0]], mode="SYMMETRIC")
        features = self.stem(self.to_branches(x), training=training)
        for block in self.blocks:
            features = block(features, training=training)
        focus = self.decode(self.merge(features), training=training)
        return focus[:, :height, :width, :]

    def get_config(self):
        config = super().get_config()  # name, trainable, dtype policy
        config.update(config=dataclasses.asdict(self.config))
        return config

    @classmethod
    def from_config(cls, config):
        return cls(**_deserialize_dtype(config))


@keras.saving.register_keras_serializable(package="mfif_tf")
class Critic(keras.Model):
    """D: scores (I_A, I_B, focus map), a 7-channel input, with one number per sample.

    Section 3.1 describes eight convs that shrink the input to a single element and a final
    sigmoid. We keep the eight 4x4 convs (seven stride-2 convs with LeakyReLU, then one to a
    single channel) and average the last map, so any input size gives one score, but we drop
    the sigmoid and use no BatchNorm: with the Wasserstein loss of eqs. 1-2 the critic
    estimates an unbounded potential, and a sigmoid would saturate its output and its
    gradient, which the penalty of eq. 3 needs to be informative (Gulrajani et al. 2017,
    section 4); BatchNorm couples samples of a batch, while the penalty is defined per
    sample, so the WGAN-GP paper recommends no batch normalisation in the critic. For the
    least-squares ablation the same raw score is used as the LSGAN output.

    Args:
      config: a `ModelConfig` or its dict.
    """

    def __init__(self, config: ModelConfig | dict | None = None, **kwargs):
        super().__init__(**kwargs)
        self.config = config = _resolve(config)
        self.convs = []
        channels = config.critic_channels
        for i in range(config.critic_layers - 1):
            self.convs.append(layers.Conv2D(channels, 4, strides=2, padding="same", name=f"conv{i}"))
            channels = min(2 * channels, config.critic_max_channels)
        self.score = layers.Conv2D(1, 4, padding="same", name="score")

    def call(self, inputs, training=None):
        x = tf.convert_to_tensor(inputs)
        if x.dtype != self.compute_dtype:
            x = tf.cast(x, self.compute_dtype)
        for conv in self.convs:
            x = tf.nn.leaky_relu(conv(x), alpha=0.2)
        return tf.reduce_mean(tf.cast(self.score(x), tf.float32), axis=[1, 2, 3])

    def get_config(self):
        config = super().get_config()  # name, trainable, dtype policy
        config.update(config=dataclasses.asdict(self.config))
        return config

    @classmethod
    def from_config(cls, config):
        return cls(**_deserialize_dtype(config))


def critic_input(image_a: tf.Tensor, image_b: tf.Tensor, focus: tf.Tensor) -> tf.Tensor:
    """The 7-channel input of D: I_A, I_B and a focus map rescaled to [-1, 1] like them."""
    focus = tf.cast(focus, image_a.dtype) * 2.0 - 1.0
    return tf.concat([image_a, image_b, focus], axis=-1)


def build_generator(config: ModelConfig, input_size: int = 64) -> Generator:
    generator = Generator(config, name="generator")
    generator(tf.zeros([1, input_size, input_size, 6]), training=False)
    return generator


def build_critic(config: ModelConfig, input_size: int = 64) -> Critic:
    critic = Critic(config, name="critic")
    critic(tf.zeros([1, input_size, input_size, 7]), training=False)
    return critic


def count_trainable(model: keras.Model) -> int:
    return int(sum(int(tf.size(w)) for w in model.trainable_weights))
