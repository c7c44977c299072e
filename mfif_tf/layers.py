"""Building blocks of the MFIF-GAN generator (Fig. 3)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import keras
import numpy as np
import tensorflow as tf
from keras import layers

# Whether transposed ConvBNReLUs trace as sub-pixel convolutions (`subpixel_upsampling`).
_SUBPIXEL = [False]


@contextlib.contextmanager
def subpixel_upsampling() -> Iterator[None]:
    """Functions traced in this block compute every stride-2 transposed convolution of a
    `ConvBNReLU` as the same linear map in sub-pixel form (`subpixel_transposed_conv`), and
    G's head as the plain convolution (not `one_channel_conv`).

    For the LiteRT graph: a transposed convolution whose output shape depends on the input
    size (any dynamic-size graph) is not taken by LiteRT's CPU delegate (XNNPACK) and runs
    in a slower reference kernel; a convolution and a depth-to-space are taken at any size,
    while the slices and additions of the TensorFlow forms run in reference kernels there.
    """
    _SUBPIXEL[0], before = True, _SUBPIXEL[0]
    try:
        yield
    finally:
        _SUBPIXEL[0] = before


def subpixel_active() -> bool:
    """Whether the caller is tracing inside `subpixel_upsampling`."""
    return _SUBPIXEL[0]


def _parity_taps(k: int) -> tuple[dict[int, dict[int, int]], int, int]:
    """For a stride-2 transposed convolution of kernel side k (Keras' "same" padding), per
    output parity p: {offset d: tap t}, out[2m + p] = sum over them of x[m + d] w[t]
    (`_subpixel_kernel`), and the lowest (<= 0) and highest offset of both parities, the
    input padding the stride-1 forms need. The offsets of each parity are consecutive."""
    before = (k - 2) // 2
    taps = {p: {(p + before - t) // 2: t for t in range(k) if (p + before - t) % 2 == 0}
            for p in (0, 1)}
    offsets = [d for p in (0, 1) for d in taps[p]]
    return taps, min(offsets), max(offsets)


def _flat_taps(kernel: tf.Tensor, dtype: tf.DType) -> tf.Tensor:
    """A transposed convolution's kernel (k, k, out, in) as (k * k, in, out) in `dtype`,
    tap ty * k + tx first."""
    k, out_channels, in_channels = int(kernel.shape[0]), kernel.shape[2], kernel.shape[3]
    return tf.reshape(tf.transpose(tf.cast(kernel, dtype), [0, 1, 3, 2]),
                      [k * k, in_channels, out_channels])


def _subpixel_kernel(kernel: tf.Tensor, dtype: tf.DType):
    """The stride-1 kernel of `subpixel_transposed_conv` for a stride-2 transposed `kernel`
    (k, k, out, in), in `dtype`: (size, size, in, 4 * out), with the input padding it needs
    (`low` <= 0 before, `high` after).

    The transposed convolution gives out[2m + p] = sum_t x[m + d] w[t] over the taps t with
    d = (p + b - t) / 2 an integer (b = (k - 2) // 2, its padding before), for each output
    parity p and in each dimension (`_parity_taps`); the stride-1 kernel holds w[t] at
    offset d in the channel block of the parity pair (py, px), zero elsewhere. Built with
    TensorFlow ops from the kernel, so that a traced graph keeps reading the layer's weights.
    """
    k = int(kernel.shape[0])
    taps, low, high = _parity_taps(k)
    size = high - low + 1
    # index[r, c, block]: the flat tap (ty * k + tx) at kernel position (r, c) of the channel
    # block 2 py + px, or k * k (a zero tap).
    index = np.full((size, size, 4), k * k, np.int32)
    for py in (0, 1):
        for px in (0, 1):
            for dy, ty in taps[py].items():
                for dx, tx in taps[px].items():
                    index[dy - low, dx - low, 2 * py + px] = ty * k + tx
    out_channels, in_channels = kernel.shape[2], kernel.shape[3]
    flat = tf.concat([_flat_taps(kernel, dtype), tf.zeros([1, in_channels, out_channels], dtype)],
                     axis=0)
    sub = tf.gather(flat, index)  # (size, size, 4, in, out)
    sub = tf.reshape(tf.transpose(sub, [0, 1, 3, 2, 4]),
                     [size, size, in_channels, 4 * out_channels])
    return sub, low, high


def subpixel_transposed_conv(x: tf.Tensor, kernel: tf.Tensor) -> tf.Tensor:
    """Keras' Conv2DTranspose(strides=2, padding="same", no bias) of `x` with `kernel`
    (k, k, out, in), as a stride-1 convolution to 4 * out channels followed by a
    depth-to-space of 2 ("sub-pixel convolution"); equal up to float summation order
    (`_subpixel_kernel` says how)."""
    sub, low, high = _subpixel_kernel(kernel, x.dtype)
    x = tf.pad(x, [[0, 0], [-low, high], [-low, high], [0, 0]])
    return tf.nn.depth_to_space(tf.nn.conv2d(x, sub, 1, "VALID"), 2)


def parity_transposed_conv_relu(x: tf.Tensor, kernel: tf.Tensor, bias: tf.Tensor) -> tf.Tensor:
    """relu(`subpixel_transposed_conv`(x, kernel) + bias), with one convolution per output
    parity pair (py, px), each with only its own taps (2 x 2 of a 4 x 4 kernel) and with the
    bias and ReLU fused into it, and the four results interleaved by a stack and a reshape:
    the sub-pixel kernel's zero blocks are not multiplied. On CPUs this is faster than both
    the transposed convolution and the sub-pixel form (docs/benchmarks.md, "G's decoder by
    output parity"). TensorFlow graphs use it in inference; LiteRT graphs keep the single
    convolution (`subpixel_upsampling`), which the delegate runs whole.
    """
    k, out_channels = int(kernel.shape[0]), int(kernel.shape[2])
    taps, low, high = _parity_taps(k)
    flat = _flat_taps(kernel, x.dtype)
    shape = tf.shape(x)
    x = tf.pad(x, [[0, 0], [-low, high], [-low, high], [0, 0]])

    def window(p: int) -> slice:  # the padded rows (columns) that parity p reads
        first, last = min(taps[p]) - low, max(taps[p]) - low
        end = last - (high - low)  # rows after the last one read, negated
        return slice(first, end if end < 0 else None)

    rows = []
    for py in (0, 1):
        cols = []
        for px in (0, 1):
            index = np.array([[taps[py][dy] * k + taps[px][dx] for dx in sorted(taps[px])]
                              for dy in sorted(taps[py])], np.int32)
            part = tf.gather(flat, index)  # (taps in y, taps in x, in, out)
            y = tf.nn.conv2d(x[:, window(py), window(px)], part, 1, "VALID")
            cols.append(tf.nn.relu(tf.nn.bias_add(y, bias)))
        rows.append(tf.stack(cols, axis=3))  # (N, h, w, 2: px, C)
    y = tf.stack(rows, axis=2)  # (N, h, 2: py, w, 2: px, C)
    return tf.reshape(y, [shape[0], 2 * shape[1], 2 * shape[2], out_channels])


def one_channel_conv(x: tf.Tensor, kernel: tf.Tensor) -> tf.Tensor:
    """A "valid" stride-1 convolution of `x` (N, H, W, C) with `kernel` (k, k, C, 1), as one
    convolution of 1 x k taps to k channels (channel t: kernel row t) and the sum of those
    channels shifted down by t rows, in float32. The same sum in another order; on CPUs a
    convolution to a single channel runs far below the speed of one to several.
    Returns (N, H - k + 1, W - k + 1, 1) float32.
    """
    k = int(kernel.shape[0])
    rows = tf.transpose(tf.cast(kernel, x.dtype)[..., 0], [1, 2, 0])[None]  # (1, k, C, k)
    y = tf.cast(tf.nn.conv2d(x, rows, 1, "VALID"), tf.float32)  # (N, H, W - k + 1, k)

    def shifted(t: int) -> tf.Tensor:  # channel t, rows t to t + H - k
        end = t - (k - 1)
        return y[:, t:end if end < 0 else None, :, t:t + 1]

    total = shifted(0)
    for t in range(1, k):
        total += shifted(t)
    return total


def batchnorm_affine(bn: layers.BatchNormalization) -> tuple[tf.Tensor, tf.Tensor]:
    """BatchNorm `bn` in inference mode as y -> s y + t (float32, per channel):
    gamma (y - mean) / sqrt(var + eps) + beta with s = gamma / sqrt(var + eps),
    t = beta - s mean."""
    gamma, beta, mean, var = (tf.cast(w.value, tf.float32) for w in (
        bn.gamma, bn.beta, bn.moving_mean, bn.moving_variance))
    scale = gamma * tf.math.rsqrt(var + bn.epsilon)
    return scale, beta - mean * scale


def folded_batchnorm(kernel: tf.Tensor, bn: layers.BatchNormalization, out_axis: int,
                     dtype: tf.DType) -> tuple[tf.Tensor, tf.Tensor]:
    """A bias-free convolution's `kernel` followed by BatchNorm `bn` in inference mode, as one
    convolution with a bias (`batchnorm_affine`: s scales the kernel's output channels,
    `out_axis` 3 for Conv2D kernels and 2 for Conv2DTranspose ones; t is the bias).
    Computed in float32 from the variables at every call (a few thousand numbers), then cast
    to the compute `dtype`.

    A convolution with a bias and a ReLU is one fused kernel on CPUs (oneDNN) and GPUs,
    where a convolution and separate normalisation ops read and write the activations
    twice; under bfloat16 the separate ops also cast every activation to float32 and back.
    """
    scale, offset = batchnorm_affine(bn)
    shape = [1, 1, 1, 1]
    shape[out_axis] = -1
    kernel = tf.cast(kernel, tf.float32) * tf.reshape(scale, shape)
    return tf.cast(kernel, dtype), tf.cast(offset, dtype)


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
        # The sublayers compute in this layer's dtype policy (by default the global one).
        self.conv = conv_cls(filters, kernel_size, strides=strides,
                             padding="valid" if reflect else "same", use_bias=False, name="conv",
                             dtype=self.dtype_policy)
        self.bn = layers.BatchNormalization(momentum=0.9, epsilon=1e-5, name="bn",
                                            dtype=self.dtype_policy)

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
        if training:
            if self.transpose and self.strides == 2 and _SUBPIXEL[0]:
                y = subpixel_transposed_conv(x, self.conv.kernel)
            else:
                y = self.conv(x)
            return tf.nn.relu(self.bn(y, training=training))
        # Inference: BatchNorm folded into the convolution (`folded_batchnorm`).
        if self.transpose and self.strides != 2:
            # Keras' own transposed convolution (its output size and padding), then BN as
            # a per-channel scale and offset.
            scale, offset = batchnorm_affine(self.bn)
            y = self.conv(x) * tf.cast(scale, x.dtype)
            return tf.nn.relu(tf.nn.bias_add(y, tf.cast(offset, x.dtype)))
        kernel, bias = folded_batchnorm(self.conv.kernel.value, self.bn,
                                        2 if self.transpose else 3, x.dtype)
        if self.transpose and not _SUBPIXEL[0]:  # stride 2, TensorFlow
            return parity_transposed_conv_relu(x, kernel, bias)
        if self.transpose:  # stride 2, LiteRT
            y = subpixel_transposed_conv(x, kernel)
        else:
            y = tf.nn.conv2d(x, kernel, self.strides, "VALID" if self.reflect else "SAME")
        return tf.nn.relu(tf.nn.bias_add(y, bias))

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
        """The residual branch before SE: what the SE block squeezes. In inference the
        BatchNorms are folded into the convolutions (`folded_batchnorm`)."""
        if training:
            y = tf.nn.relu(self.bn1(self.conv1(x), training=training))
            return self.bn2(self.conv2(y), training=training)
        kernel, bias = folded_batchnorm(self.conv1.kernel.value, self.bn1, 3, x.dtype)
        y = tf.nn.relu(tf.nn.bias_add(tf.nn.conv2d(x, kernel, 1, "SAME"), bias))
        kernel, bias = folded_batchnorm(self.conv2.kernel.value, self.bn2, 3, x.dtype)
        return tf.nn.bias_add(tf.nn.conv2d(y, kernel, 1, "SAME"), bias)

    def call(self, x, training=None, pooled=None):
        y = self.residual(x, training=training)
        if self.se is not None:
            y = self.se(y, pooled=pooled)
        return tf.nn.relu(x + y)

    def get_config(self):
        config = super().get_config()
        config.update(channels=self.channels, reduction=self.reduction, use_se=self.use_se)
        return config
