r"""Fuses multi-focus photos with MFIF-GAN (console script `mfif-fuse`).

  python -m mfif_tf.fuse A.jpg B.jpg [C.jpg ...] -o fused.png [--focus_map map.png]
      [--index_map idx.png] [--model PATH] [--mode refined|paper|coarse_to_fine]
      [--g_side 640] [--measure_ratio 3] [--working_side S] [--refiner DIR] [--scales 1,0.5]
      [--precision float32|bfloat16]
      [--flips] [--no_srr] [--min_size N]
      [--edge_pixels K] [--align] [--align_model M] [--stack_order bisect|sequential]
      [--tile_size T] [--overwrite]
      [--jpeg_quality Q] [--threads N] [--engine auto|litert|tensorflow]
  python -m mfif_tf.fuse --input_dir DIR --output_dir OUT [--output_format png]
      [--skip_existing] ...

In batch mode DIR holds subfolders A/, B/ (C/, ...) matched by file stem; --focus_map and
--index_map then name folders. Bad input gives a one-line error and exit code 2. See
docs/fusion.md.
"""

from __future__ import annotations

import os
import sys
from typing import NoReturn

from absl import app, flags

from mfif_tf import common
from mfif_tf.cli import fail, parse_flags

FLAGS = flags.FLAGS

flags.DEFINE_string("output", None, "Fused image to write (.png, .jpg or .tif).", short_name="o")
flags.DEFINE_string("focus_map", None, "Also write F_final here (pairs; 255 = first source). "
                    "In batch mode: a folder.")
flags.DEFINE_string("index_map", None, "Also write the index map here: the number (0-based) of "
                    "the source each pixel comes from. In batch mode: a folder.")
flags.DEFINE_string("model", None, "Model directory or training work dir, or a packaged G: "
                    "'small' (a quarter of the channels: about 2x faster up to a shorter side of "
                    "480 (3/4 of --g_side), less exact on some photos; MODEL_CARD.md) or "
                    "'six_branch'; default: "
                    "the model shipped with the package.")
flags.DEFINE_bool("no_srr", False, "Skip small region removal (eq. 14 then blends with F_hat).")
flags.DEFINE_integer("min_size", None, "SRR's N in pixels; default 0.001 * W * H.")
flags.DEFINE_float("min_size_fraction", common.PAPER_MIN_SIZE_FRACTION,
                   "N = fraction * W * H when --min_size is unset.")
flags.DEFINE_integer("edge_pixels", 0, "Grow (> 0) or shrink (< 0) the foreground of F_final "
                     "by this many pixels.")
flags.DEFINE_bool("flips", False, "Average F_hat over the sources mirrored left-right and "
                  "top-bottom (test-time augmentation: 3x network time, slightly better maps).")
flags.DEFINE_enum("mode", common.DEFAULT_MODE, list(common.MODES),
                  "refined (default): one network pass at full resolution, then a "
                  "refinement head redraws the map's outline on the pixels; paper: the "
                  "network pass alone, as in the paper; coarse_to_fine: the network decides "
                  "at a working resolution near the scale it learned and the refinement head "
                  "brings the map up to full resolution (faster on big photos, less accurate).")
flags.DEFINE_integer("working_side", common.DEFAULT_WORKING_SIDE,
                     "coarse_to_fine: shorter side of the network's "
                     "working resolution in pixels (sources are area-downscaled to it, never "
                     "enlarged).")
flags.DEFINE_integer("g_side", common.DEFAULT_G_SIDE,
                     "refined: the largest shorter side the network runs at; sources "
                     "with a shorter side above 3/4 of it are box-averaged by a power of two "
                     "(2 to 4) first and a refinement head trained for it redraws the "
                     "outline at full size (0: the network at full size whatever the size).")
flags.DEFINE_float("measure_ratio", common.MEASURE_RATIO,
                   "refined, network on box means: near its outline, "
                   "take the source whose sum-modified-Laplacian focus measure is more than "
                   "this many times the other's, whatever the map says; then, at any size, "
                   "within 4 px of the outline the source whose pixel's own measure is more "
                   "than 5 times the other's, and on the outline, where neither that nor the "
                   "map is sure, the side most decided neighbours take (0: no check).")
flags.DEFINE_string("refiner", None, "refined, coarse_to_fine: folder of the refinement head "
                    "(default: "
                    "the one beside --model, else the packaged one).")
flags.DEFINE_string("scales", None, "--mode=refined/paper: the network's full-resolution map "
                    "is the mean of its maps at "
                    "these scales (1/k for integer k, e.g. 1,0.5); default 1, the paper's "
                    "single pass.")
flags.DEFINE_enum("precision", None, ["float32", "bfloat16"],
                  "What G and the refinement head compute in: float32 or bfloat16 (float32 "
                  "weights, bfloat16 arithmetic: about 2x faster on CPUs with AVX512_BF16 or "
                  "AMX, slower on others; the maps differ on a few pixels). Default: "
                  "bfloat16 on CPUs with bfloat16 units (TensorFlow engine), else float32. "
                  "SRR and the fusion stay float32; the LiteRT graph computes in float32.")
flags.DEFINE_bool("align", False, "Register the frames to the first one (hand-held stacks).")
flags.DEFINE_enum("align_model", "similarity", ["translation", "similarity", "affine",
                                                "homography"], "Motion model of --align.")
flags.DEFINE_enum("stack_order", "bisect", ["bisect", "sequential"],
                  "Stacks of three or more frames: the order they are fused in. bisect "
                  "(default): the first and the last frame, then the frame midway between two "
                  "fused ones, so that every step weighs frames far apart in focus; "
                  "sequential: command-line order. Either fuses each frame once.")
flags.DEFINE_integer("tile_size", None, "Tile side in pixels for large images, at least 64 "
                     "(0: whole image at once; default: automatic).")
flags.DEFINE_bool("overwrite", False, "Replace existing output files.")
flags.DEFINE_bool("skip_existing", False, "Batch mode: keep the outputs that exist and fuse "
                  "only the missing ones (to finish an interrupted batch).")
flags.DEFINE_integer("jpeg_quality", 95, "Quality of JPEG outputs (1-100).")
flags.DEFINE_string("input_dir", None, "Batch mode: folder with A/, B/ (C/, ...) subfolders.")
flags.DEFINE_string("output_dir", None, "Batch mode: folder for the fused images.")
flags.DEFINE_enum("output_format", None, ["png", "jpg", "tif"], "Batch mode: output format "
                  "(default: that of the files in A/).")
flags.DEFINE_integer("threads", 0, "CPU threads of the engine (0: all).")
flags.DEFINE_enum("engine", "auto", ["auto", "litert", "tensorflow"],
                  "What runs the networks. auto (default): the packaged LiteRT graph when it "
                  "computes what was asked (the packaged model in refined mode, float32, the "
                  "paper's SRR N, images up to 1 megapixel; no TensorFlow start-up) and the "
                  "job is no stack deep enough to repay TensorFlow's start-up (about 6 "
                  "frames of 1 MP), else TensorFlow; litert: refuse what the graph cannot "
                  "run; tensorflow: always TensorFlow. See docs/fusion.md, 'Engines'.")

PROG = "mfif-fuse"
EXIT_INPUT = 2


def _fail(message: str) -> NoReturn:
    fail(message, PROG)


def main(argv: list[str]) -> None:
    sources = argv[1:]
    if FLAGS.threads < 0:
        _fail(f"--threads must be >= 0, got {FLAGS.threads}")
    # TensorFlow is imported only if the job needs it (`fuse_lib.choose_engine`), so that
    # `--help`, flag errors and LiteRT jobs never wait for it.
    from mfif_tf import fuse_lib
    from mfif_tf.common import ModelNotFoundError
    from mfif_tf.image_io import InputError

    options = fuse_lib.FuseOptions(
        srr=not FLAGS.no_srr, min_size=FLAGS.min_size, min_size_fraction=FLAGS.min_size_fraction,
        edge_pixels=FLAGS.edge_pixels, align=FLAGS.align, align_model=FLAGS.align_model,
        stack_order=FLAGS.stack_order, tile_size=FLAGS.tile_size, flips=FLAGS.flips, scales=FLAGS.scales, mode=FLAGS.mode,
        working_side=FLAGS.working_side, g_side=FLAGS.g_side,
        measure_ratio=FLAGS.measure_ratio, refiner=FLAGS.refiner,
        precision=FLAGS.precision, overwrite=FLAGS.overwrite,
        skip_existing=FLAGS.skip_existing, jpeg_quality=FLAGS.jpeg_quality,
        engine=FLAGS.engine, threads=FLAGS.threads)
    try:
        if FLAGS.input_dir is not None:
            if sources or FLAGS.output:
                raise InputError("batch mode (--input_dir) takes no source files and no -o; "
                                 "use --output_dir")
            if not FLAGS.output_dir:
                raise InputError("--input_dir needs --output_dir")
            report = fuse_lib.fuse_batch(
                FLAGS.input_dir, FLAGS.output_dir, FLAGS.model, options, FLAGS.output_format,
                FLAGS.focus_map, FLAGS.index_map, log=lambda m: print(f"{PROG}: error: {m}",
                                                                      file=sys.stderr))
            kept = (f", {len(report.skipped)} skipped (outputs exist)"
                    if FLAGS.skip_existing else "")
            print(f"{len(report.done)} fused into {FLAGS.output_dir}{kept}, "
                  f"{len(report.failed)} failed")
            if report.failed:
                sys.exit(EXIT_INPUT)
            return
        if FLAGS.output_dir or FLAGS.output_format or FLAGS.skip_existing:
            raise InputError("--output_dir, --output_format and --skip_existing are for batch "
                             "mode (--input_dir)")
        if not FLAGS.output:
            raise InputError("no output file: pass -o fused.png")
        result = fuse_lib.fuse_files(sources, FLAGS.output, FLAGS.model, options,
                                     FLAGS.focus_map, FLAGS.index_map)
    except (InputError, ModelNotFoundError) as err:
        _fail(str(err))
    except MemoryError:
        _fail("out of memory; try a smaller --tile_size")
    t = result.timings
    height, width = result.fused.shape[:2]
    if result.engine == "litert":
        parts = f"LiteRT graph {t['network']:.2f} s, fusion {t['fusion']:.2f} s"
    else:
        parts = (f"network {t['network']:.2f} s in {result.precision}, SRR {t['srr']:.2f} s, "
                 f"fusion {t['fusion']:.2f} s")
    print(f"{FLAGS.output}: {len(sources)} frames of {width}x{height} fused in {t['total']:.2f} s "
          f"({parts})")


def run() -> None:
    """Console script entry point."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    app.run(main, flags_parser=lambda argv: parse_flags(argv, PROG))


if __name__ == "__main__":
    run()
