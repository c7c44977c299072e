"""The ablation runner trains each variant briefly and tabulates all of them."""

import json
import os

import numpy as np
import pytest
from PIL import Image

from mfif_tf import ablation_lib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

BASE = """--preset=compact
--num_blocks=1
--batch_size=2
--num_steps=2
--warmup_steps=1
--critic_steps=1
--data_source=embedded
--image_size=32
--crop=random
--resize_shorter=48
--log_every=1
--checkpoint_every=2
"""


def _pairs(root):
    rng = np.random.default_rng(0)
    for sub in ("A", "B"):
        os.makedirs(root / sub)
    for i in range(2):
        sharp = rng.integers(0, 256, size=(40, 48, 3), dtype=np.uint8)
        blurred = ((sharp.astype(np.float32) + np.roll(sharp, 1, 0) + np.roll(sharp, 1, 1)) / 3).astype(np.uint8)
        a, b = sharp.copy(), blurred.copy()
        a[:, 24:], b[:, 24:] = blurred[:, 24:], sharp[:, 24:]
        Image.fromarray(a).save(root / "A" / f"{i:02d}.png")
        Image.fromarray(b).save(root / "B" / f"{i:02d}.png")


def test_runs_variants_into_one_table(tmp_path):
    flags_dir = tmp_path / "flags"
    flags_dir.mkdir()
    (flags_dir / "base.flags").write_text(BASE)
    for name, extra in (("full", ""), ("no_se", "--nouse_se\n")):
        (flags_dir / f"{name}.flags").write_text(f"--flagfile={flags_dir / 'base.flags'}\n{extra}")
    _pairs(tmp_path / "data")
    config = ablation_lib.AblationConfig(
        dataset_dir=str(tmp_path / "data"), output_dir=str(tmp_path / "out"),
        flags_dir=str(flags_dir), variants=("full", "no_pp"))
    table = ablation_lib.run_ablations(config, log=lambda m: None)
    results = json.loads((tmp_path / "out" / "ablations.json").read_text())
    assert set(results) == {"full", "no_pp"}
    assert all(np.isfinite(results[v]["MI"]) for v in results)
    assert "no_pp" in table and "Q_CB" in table
    # no_pp evaluates the full model without training it again.
    assert not (tmp_path / "out" / "no_pp").exists()


def test_unknown_variant_and_missing_flagfile(tmp_path):
    with pytest.raises(ValueError, match="unknown ablation"):
        ablation_lib.check(ablation_lib.AblationConfig(str(tmp_path), str(tmp_path), variants=("nope",)))
    with pytest.raises(ValueError, match="missing ablation flagfile"):
        ablation_lib.check(ablation_lib.AblationConfig(
            str(tmp_path), str(tmp_path), flags_dir=str(tmp_path), variants=("full",)))


def test_repository_flagfiles_exist():
    config = ablation_lib.AblationConfig(dataset_dir=ROOT, output_dir="unused",
                                         flags_dir=os.path.join(ROOT, "configs", "ablations"))
    ablation_lib.check(config)
