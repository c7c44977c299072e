"""Building blocks of the MFIF-GAN generator (Fig. 3)."""

from __future__ import annotations

import keras
import tensorflow as tf
from keras import layers


@keras.saving.register_keras_serializable(package="mfif_tf")
class ConvBNReLU(layers.Layer):
    """Conv (or transposed conv) + BatchNorm + ReLU, one "Conv-BN-ReLU" box of Fig. 3.

    Convolutions carry no bias: BatchNorm's offset plays that role (this is also how the
    paper-size generator reaches its 13,700,928 parameters).

    Args:
      filters: output channels.
      kernel_size: square kernel size.
      strides: 1, or 2 to halve (or, transposed, double) the resolution.
      transpose: use a transposed convolution (decoder).
      reflect: reflect-pad the input by kernel_size // 2 instead of zero padding, for the
        7x7 convs at full resolution, so that borders are not darkened.
    """

    def __init__(self, filters: int, kernel_size: int, strides: int = 1,
                 transpose: bool = False, reflect: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.filters = filters
        self.kernel_size = kernel_size
        self.strides = strides
        self.transpose = transpose
        self.reflect = reflect
        conv_cls = layers.Conv2DTranspose if transpose else layers.Conv2D
        self.conv = conv_cls(filters, kernel_size, strides=strides,
                             padding="valid" if reflect else "same", use_bias=False, name="conv")
        self.bn = layers.BatchNormalization(momentum=0.9, epsilon=1e-5, name="bn")

    def build(self, input_shape):
        shape = tuple(input_shape)
        if self.reflect:
            p = 2 * (self.kernel_size // 2)
            shape = (shape[0], *(None if d is None else d + p for d in shape[1:3]), shape[3])
        self.conv.build(shape)
        self.bn.build(self.conv.compute_output_shape(shape))

    def call(self, x, training=None):
        if self.reflect:
            p = self.kernel_size // 2
            x = tf.pad(x, [[0, 0], [p, p], [p, p], [0, 0]], mode="REFLECT")
        return tf.nn.relu(self.bn(self.conv(x), training=training))

    def get_config(self):
        config = super().get_config()
        config.update(filters=self.filters, kernel_size=self.kernel_size, strides=self.strides,
                      transpose=self.transpose, reflect=self.reflect)
        return config


@keras.saving.register_keras_serializable(package="mfif_tf")
class SqueezeExcitation(layers.Layer):
    """SE block (Hu et al. 2018, section 2.2): global average "squeeze", FC-ReLU-FC-sigmoid
    "excitation", channel-wise rescaling. FCs have no bias (13,700,928 parameters, Fig. 3).

    `call(x, pooled=...)` accepts the squeezed vector from outside: tiled inference computes
    the whole-image average over tiles and passes it in, so tiles match the whole image.

    Args:
      channels: channels of the input.
      reduction: bottleneck ratio r (16 in the paper).
    """

    def __init__(self, channels: int, reduction: int = 16, **kwargs):
        super().__init__(**kwargs)
        self.channels = channels
        self.reduction = reduction
        self.fc1 = layers.Dense(max(1, channels // reduction), use_bias=False, name="fc1")
        self.fc2 = layers.Dense(channels, use_bias=False, name="fc2")

    def build(self, input_shape):
        self.fc1.build((None, self.channels))
        self.fc2.build((None, max(1, self.channels // self.reduction)))

    def call(self, x, pooled=None):
        if pooled is None:
            pooled = tf.reduce_mean(x, axis=[1, 2])
        scale = tf.sigmoid(self.fc2(tf.nn.relu(self.fc1(pooled))))
        return x * tf.cast(scale[:, None, None, :], x.dtype)

    def get_config(self):
        config = super().get_config()
        config.update(channels=self.channels, reduction=self.reduction)
        return config


@keras.saving.register_keras_serializable(package="mfif_tf")
class SEResBlock(layers.Layer):
    """SE-ResNet basic block (Fig. 3): conv3x3-BN-ReLU-conv3x3-BN on the residual branch, SE
    on that branch before the addition with the identity, ReLU after the addition.

    Args:
      channels: block width (256 in the paper).
      reduction: SE ratio.
      use_se: False gives the plain residual block of the "no SE" ablation.
    """

    def __init__(self, channels: int, reduction: int = 16, use_se: bool = True, **kwargs):
        super().__init__(**kwargs)
        self.channels = channels
        self.reduction = reduction
        self.use_se = use_se
        self.conv1 = layers.Conv2D(channels, 3, padding="same", use_bias=False, name="conv1")
        self.bn1 = layers.BatchNormalization(momentum=0.9, epsilon=1e-5, name="bn1")
        self.conv2 = layers.Conv2D(channels, 3, padding="same", use_bias=False, name="conv2")
        self.bn2 = layers.BatchNormalization(momentum=0.9, epsilon=1e-5, name="bn2")
        self.se = SqueezeExcitation(channels, reduction, name="se") if use_se else None

    def build(self, input_shape):
        shape = (*tuple(input_shape)[:-1], self.channels)
        self.conv1.build(tuple(input_shape))
        self.bn1.build(shape)
        self.conv2.build(shape)
        self.bn2.build(shape)
        if self.se is not None:
            self.se.build(shape)

    def residual(self, x, training=None):
        """The residual branch before SE: what the SE block squeezes."""
        y = tf.nn.relu(self.bn1(self.conv1(x), training=training))
        return self.bn2(self.conv2(y), training=training)

    def call(self, x, training=None, pooled=None):
        y = self.residual(x, training=training)
        if self.se is not None:
            y = self.se(y, pooled=pooled)
        return tf.nn.relu(x + y)

    def get_config(self):
        config = super().get_config()
        config.update(channels=self.channels, reduction=self.reduction, use_se=self.use_se)
        return config
