"""Pictures for the model card: a contact sheet of a test set and the training curves.

  python -m mfif_tf.report_images contact --dataset_dir=DATA/lytro --out=sheet.jpg [--model=DIR]
  python -m mfif_tf.report_images curves --workdir=runs/pretrained --out=curves.png
"""

from __future__ import annotations

import argparse
import glob
import os
import sys
from collections import defaultdict

import numpy as np
from PIL import Image, ImageDraw


def _tile(image: np.ndarray, size: int) -> Image.Image:
    im = Image.fromarray(image)
    if im.mode != "RGB":
        im = im.convert("RGB")
    return im.resize((size, size), Image.BILINEAR)


def contact_sheet(dataset_dir: str, out: str, model: str | None = None, tile: int = 160,
                  columns: int = 2) -> list[str]:
    """Rows of (I_A, I_B, F_final, fused) for every pair of `dataset_dir` (A/, B/)."""
    from data_pipeline.readers import list_test_pairs
    from mfif_tf.fusion import fuse_arrays, resolve_generator

    generator = resolve_generator(model)
    pairs = list_test_pairs(dataset_dir)
    cells = []
    for pair in pairs:
        a = np.asarray(Image.open(pair["A"]).convert("RGB"))
        b = np.asarray(Image.open(pair["B"]).convert("RGB"))
        result = fuse_arrays([a, b], generator=generator)
        focus = (result.f_final * 255).astype(np.uint8)
        cells.append((pair["id"], [_tile(a, tile), _tile(b, tile), _tile(focus, tile),
                                   _tile(result.fused, tile)]))
    rows = (len(cells) + columns - 1) // columns
    pad = 4
    width = columns * (4 * tile + 5 * pad)
    height = rows * (tile + 2 * pad)
    sheet = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(sheet)
    for k, (name, images) in enumerate(cells):
        r, c = divmod(k, columns)
        x0 = c * (4 * tile + 5 * pad) + pad
        y0 = r * (tile + 2 * pad) + pad
        for j, im in enumerate(images):
            sheet.paste(im, (x0 + j * (tile + pad), y0))
        draw.text((x0 + 3, y0 + 3), name, fill=(255, 255, 0))
    sheet.save(out, quality=90)
    return [name for name, _ in cells]


def read_scalars(workdir: str) -> dict[str, list[tuple[int, float]]]:
    """All scalar summaries of a training work dir's TensorBoard logs."""
    import tensorflow as tf
    from tensorboard.backend.event_processing import event_accumulator

    series: dict[str, dict[int, float]] = defaultdict(dict)
    for path in sorted(glob.glob(os.path.join(workdir, "tensorboard", "events.*"))):
        acc = event_accumulator.EventAccumulator(path, size_guidance={"tensors": 0})
        acc.Reload()
        for tag in acc.Tags().get("tensors", []):
            for event in acc.Tensors(tag):
                value = tf.make_ndarray(event.tensor_proto)
                if value.ndim:  # image summaries
                    break
                series[tag][event.step] = float(value)  # a resumed run overwrites repeats
    return {tag: sorted(values.items()) for tag, values in series.items()}


def plot_curves(workdir: str, out: str) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = read_scalars(workdir)
    panels = [("loss/rec", "L_rec (eq. 4)"), ("loss/wasserstein", "critic: D(F) - D(F_hat)"),
              ("loss/gp", "gradient penalty (eq. 3)"), ("train/learning_rate", "learning rate")]
    panels = [(t, title) for t, title in panels if t in series]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.2))
    axes = np.atleast_1d(axes)
    for ax, (tag, title) in zip(axes, panels):
        steps, values = zip(*series[tag])
        ax.plot(steps, values, lw=1)
        ax.set_title(title)
        ax.set_xlabel("generator step")
        ax.grid(alpha=0.3)
        if tag == "loss/rec":
            ax.set_yscale("log")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    return [t for t, _ in panels]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="what", required=True)
    c = sub.add_parser("contact")
    c.add_argument("--dataset_dir", required=True)
    c.add_argument("--out", required=True)
    c.add_argument("--model", default=None)
    c.add_argument("--tile", type=int, default=160)
    k = sub.add_parser("curves")
    k.add_argument("--workdir", required=True)
    k.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    if os.path.exists(args.out):
        print(f"error: {args.out} exists; remove it first", file=sys.stderr)
        sys.exit(2)
    if args.what == "contact":
        contact_sheet(args.dataset_dir, args.out, args.model, args.tile)
    else:
        plot_curves(args.workdir, args.out)


if __name__ == "__main__":
    main()
