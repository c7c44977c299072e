"""Saves a PNG grid of training samples: columns I, F, I_A, I_B, one row per sample.

  python -m data_pipeline.preview --out=docs/images/training_samples.png \
      --source=folder --data_dir=DIR --split=val --num=4

Rows come from `make_eval_dataset` (centre crop, no flips), so the picture is repeatable.
"""

from __future__ import annotations

import numpy as np
from absl import app, flags

from data_pipeline import SOURCES, SYNTHESIS_METHODS
from data_pipeline.cli import fail, parse_flags, quiet_native_stderr

_OUT = flags.DEFINE_string("out", None, "Output PNG path (must not exist unless --overwrite).")
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Replace an existing --out file.")
_SOURCE = flags.DEFINE_enum("source", "embedded", list(SOURCES), "Data source.")
_DATA_DIR = flags.DEFINE_string("data_dir", None, "Folder of a folder/voc/plain source.")
_SPLIT = flags.DEFINE_string("split", "val", "Split.")
_NUM = flags.DEFINE_integer("num", 4, "Number of samples (rows).")
_SIZE = flags.DEFINE_integer("image_size", 256, "Image size S.")
_SYNTHESIS = flags.DEFINE_enum("synthesis", "alpha_matte", list(SYNTHESIS_METHODS),
                               "Eqs. 10-11, 10-11 with the hidden background filled, or 12-13.")
_SIGMAS = flags.DEFINE_list("sigmas", ["1"], "Sigma per row, cycled (e.g. 1,3).")
_SEED = flags.DEFINE_integer("seed", 0, "Seed (masks of random-mask sources).")


def sample_rows(num: int, sigmas: list[float], **dataset_kwargs) -> list[dict]:
    """Returns `num` samples as dicts of numpy arrays in [0, 1] plus their sigma."""
    with quiet_native_stderr():  # TensorFlow's start-up notes
        from data_pipeline import pipeline

    rows = []
    for i in range(num):
        s = sigmas[i % len(sigmas)]
        ds = pipeline.make_eval_dataset(batch_size=1, sigma=s, drop_remainder=False,
                                        **dataset_kwargs)
        batch = next(iter(ds.skip(i)))
        row = {k: (v[0].numpy() + 1.0) / 2.0 if k != "focus" else v[0].numpy()
               for k, v in batch.items()}
        row["sigma"] = s
        rows.append(row)
    return rows


def render_grid(rows: list[dict], path: str, synthesis: str = "alpha_matte") -> None:
    """Draws rows (dicts with image, focus, image_a, image_b, sigma) into a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = [("image", "I (all in focus)"), ("focus", "F (focus map)"),
            ("image_a", "I_A (eq. 12)" if synthesis == "conventional" else "I_A (eq. 10)"),
            ("image_b", "I_B (eq. 13)" if synthesis == "conventional" else "I_B (eq. 11)")]
    fig, axes = plt.subplots(len(rows), 4, figsize=(4 * 2.2, len(rows) * 2.3), squeeze=False)
    for r, row in enumerate(rows):
        for c, (key, title) in enumerate(cols):
            ax = axes[r, c]
            img = row[key]
            if img.shape[-1] == 1:
                ax.imshow(img[..., 0], cmap="gray", vmin=0, vmax=1)
            else:
                ax.imshow(np.clip(img, 0, 1))
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(title, fontsize=9)
            if c == 0:
                ax.set_ylabel(f"sigma = {row['sigma']:g}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def main(argv):
    if len(argv) > 1:
        fail(f"unexpected arguments: {' '.join(argv[1:])}")
    import os

    if not _OUT.value:
        fail("--out is required")
    if os.path.exists(_OUT.value) and not _OVERWRITE.value:
        fail(f"{_OUT.value} exists; pass --overwrite to replace it")
    try:
        rows = sample_rows(
            _NUM.value, [float(s) for s in _SIGMAS.value], source=_SOURCE.value,
            data_dir=_DATA_DIR.value, split=_SPLIT.value, image_size=_SIZE.value,
            synthesis=_SYNTHESIS.value, seed=_SEED.value)
    except ValueError as err:  # readers.DataError too: a missing or empty data folder
        fail(str(err))
    render_grid(rows, _OUT.value, _SYNTHESIS.value)
    print(f"wrote {_OUT.value}")


if __name__ == "__main__":
    app.run(main, flags_parser=parse_flags)
