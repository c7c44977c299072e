"""Arithmetic of G (Fig. 3): convolution FLOPs per megapixel, from the layer shapes.

Counted: every convolution and transposed convolution, 2 FLOPs per multiply-add.
A conv producing an h x w x C_out map from C_in channels with a k x k kernel costs
2 h w k^2 C_in C_out; a stride-2 transposed conv reading an h x w map costs 2 h w k^2 C_in C_out
(every input pixel scatters a k x k x C_out patch). The encoder (stem, two downsampling convs,
SE-ResNet blocks) runs once per branch: 6 single-channel branches (3 per source, section 3.1),
2 with `branches="two"`. Not counted: BatchNorm, ReLU, SE (global mean and two tiny dense
layers), padding and the branch mean: all O(channels) per pixel, under 10 % together.

`profiler_conv_flops` cross-checks the count with TensorFlow's op statistics (the registry
the tf.compat.v1 profiler uses) on a concrete function; that registry has no entry for
Conv2DBackpropInput (the transposed convs), so only the Conv2D part is compared.
"""

from __future__ import annotations

from typing import Any

from mfif_tf.networks import Generator


def _conv_macs(conv, in_scale: float, transpose: bool) -> tuple[float, float]:
    """(MACs per full-resolution input pixel, output scale) of one conv layer.

    `in_scale` is the layer input's pixel count relative to the full-resolution image.
    """
    kh, kw = conv.kernel_size
    kernel = conv.kernel.shape  # (kh, kw, in, out), or (kh, kw, out, in) when transposed
    c_in, c_out = (kernel[3], kernel[2]) if transpose else (kernel[2], kernel[3])
    stride = conv.strides[0]
    if transpose:
        out_scale = in_scale * stride * stride
        return in_scale * kh * kw * c_in * c_out, out_scale
    out_scale = in_scale / (stride * stride)
    return out_scale * kh * kw * c_in * c_out, out_scale


def generator_flops(generator: Generator) -> dict[str, Any]:
    """Convolution FLOPs per image pixel of G, by stage, and per megapixel.

    Returns {"layers": [(name, flops_per_pixel, branches)], "stem", "blocks", "decoder",
    "per_pixel", "gflop_per_megapixel", "branches"}.
    """
    branches = generator.num_branches
    layers = []
    scale = 1.0
    stem = 0.0
    for layer in generator.stem_layers:
        macs, scale = _conv_macs(layer.conv, scale, transpose=False)
        layers.append((layer.name, 2 * macs * branches, branches))
        stem += 2 * macs * branches
    blocks = 0.0
    for block in generator.blocks:
        for conv in (block.conv1, block.conv2):
            macs, _ = _conv_macs(conv, scale, transpose=False)
            layers.append((f"{block.name}/{conv.name}", 2 * macs * branches, branches))
            blocks += 2 * macs * branches
    decoder = 0.0
    for layer in generator.decoder_layers:
        macs, scale = _conv_macs(layer.conv, scale, transpose=layer.transpose)
        layers.append((layer.name, 2 * macs, 1))
        decoder += 2 * macs
    macs, _ = _conv_macs(generator.head, scale, transpose=False)
    layers.append((generator.head.name, 2 * macs, 1))
    decoder += 2 * macs
    per_pixel = stem + blocks + decoder
    return {
        "layers": layers,
        "branches": branches,
        "stem": stem,
        "blocks": blocks,
        "decoder": decoder,
        "per_pixel": per_pixel,
        "gflop_per_megapixel": per_pixel * 1e6 / 1e9,
    }


def profiler_conv_flops(generator: Generator, side: int = 64) -> dict[str, float]:
    """Conv2D and Conv2DBackpropInput FLOPs of G on a side x side input as TensorFlow's op
    statistics count them (None where it has no statistics), per image pixel."""
    import tensorflow as tf
    from tensorflow.python.framework import convert_to_constants, ops

    fn = tf.function(lambda x: generator(x, training=False)).get_concrete_function(
        tf.TensorSpec([1, side, side, 6], tf.float32))
    graph = convert_to_constants.convert_variables_to_constants_v2(fn).graph
    totals: dict[str, float | None] = {"Conv2D": 0.0, "Conv2DBackpropInput": 0.0}
    for op in graph.get_operations():
        if op.type not in totals:
            continue
        try:
            stat = ops.get_stats_for_node_def(graph, op.node_def, "flops")
        except ValueError:  # no statistics registered for this op type
            totals[op.type] = None
            continue
        if totals[op.type] is not None and stat.value is not None:
            totals[op.type] += float(stat.value)
    pixels = float(side * side)
    return {k: (None if v is None else v / pixels) for k, v in totals.items()}


def analytic_conv2d_part(count: dict[str, Any]) -> float:
    """The part of `generator_flops` made of plain (not transposed) convs, per pixel."""
    return count["stem"] + count["blocks"] + count["layers"][-1][1]
