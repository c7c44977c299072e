"""Writes a LiteRT graph that ships in the package for `mfif-fuse`'s LiteRT engine:

  python -m export.litert_package [--model default|small]
      [--output mfif_tf/pretrained/fusion_refined_float32.tflite] [--overwrite]

The graph is the dynamic-shape float32 TFLite model of `export.tflite` (the on-device
export) built from a packaged G (the default one, or the small one in `pretrained/small/`,
written beside it) and the packaged Rs in refined mode (G at full size up to a shorter side
of 3/4 of `litert_engine.GRAPH_G_SIDE`, on box means and with the R for that step above):
F_hat, SRR with N = 0.001 W H and eq. 14 inside (`mfif_tf.litert_engine`; like every TFLite
export, the decoder's transposed convolutions in sub-pixel form,
`mfif_tf.layers.subpixel_upsampling`). Run it whenever the packaged weights, or the way G
and R are traced, change; the tests check that the shipped graph gives the packaged weights'
maps.
"""

from __future__ import annotations

import os

from absl import app, flags

from mfif_tf.cli import fail, parse_flags

FLAGS = flags.FLAGS

flags.DEFINE_string("model", "default", "The packaged G: 'default' or the name of another "
                    "packaged G with a graph ('small').")
flags.DEFINE_string("output", None, "Where to write the graph (default: the package's, in the "
                    "model's folder).")
flags.DEFINE_bool("overwrite", False, "Replace an existing file.")


def build_graph(generator=None, refiner=None, model: str = "default") -> bytes:
    """The packaged graph's flatbuffer for G and R (default: the packaged model `model`'s G
    and the R `fuse` takes with it)."""
    from export.tflite import TFLiteModule, convert
    from mfif_tf import fusion, model_io

    from mfif_tf.common import COARSE_REFINER_KEY
    from mfif_tf.litert_engine import GRAPH_G_SIDE

    name = None if model == "default" else model
    generator = generator or model_io.load_generator(model, "float32")
    refiner = refiner or fusion.resolve_refiner(None, name)
    # Above a shorter side of `GRAPH_G_SIDE` G runs on box means, followed by the R for that
    # step, as in `fuse` (the engine's images are at most 1 MP: k = 1 or 2); the G below
    # full size is the model's own there when it has one (the small model: the default G).
    coarse_refiner = fusion.resolve_refiner(None, name, COARSE_REFINER_KEY)
    coarse_generator = fusion.resolve_coarse_generator(None, name, "float32")
    module = TFLiteModule(generator, mode="refined", refiner=refiner,  # `GRAPH_FILE`
                          coarse_refiner=coarse_refiner, g_side=GRAPH_G_SIDE,
                          coarse_generator=coarse_generator)
    return convert(module, "dynamic", "float32")


def main(argv) -> None:
    if len(argv) > 1:
        fail(f"unexpected arguments: {' '.join(argv[1:])}")
    from mfif_tf.litert_engine import graph_path

    default_output = graph_path(FLAGS.model)
    if default_output is None:
        fail(f"--model={FLAGS.model}: not a packaged model with a graph (default, small)")
    output = FLAGS.output or default_output
    if os.path.isdir(output):
        fail(f"{output}: is a directory, expected a .tflite file name")
    if os.path.exists(output) and not FLAGS.overwrite:
        fail(f"{output}: already exists (pass --overwrite to replace it)")
    folder = os.path.dirname(os.path.abspath(output))
    if not os.path.isdir(folder):
        fail(f"{folder}: no such folder")
    data = build_graph(model=FLAGS.model)
    part = f"{output}.{os.getpid()}.part"
    with open(part, "wb") as f:
        f.write(data)
    os.replace(part, output)
    print(f"{output}: {len(data) / 1e6:.2f} MB")


def run() -> None:
    app.run(main, flags_parser=parse_flags)


if __name__ == "__main__":
    run()
