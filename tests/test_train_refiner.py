"""The refinement head's trainer (`python -m mfif_tf.train_refiner`): a short run on a small
mask folder writes loadable weights, resumes, and refuses bad flags in one line."""

import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def mask_folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("masks")
    (root / "images").mkdir()
    (root / "masks").mkdir()
    ids = [f"m{i}" for i in range(4)]
    rng = np.random.default_rng(0)
    for i, k in enumerate(ids):
        photo = ndimage.gaussian_filter(rng.uniform(0, 255, (72, 90, 3)), (1, 1, 0))
        Image.fromarray(np.clip(photo + rng.normal(0, 20, photo.shape), 0, 255)
                        .astype(np.uint8)).save(root / "images" / f"{k}.jpg")
        mask = np.zeros((72, 90), np.uint8)
        mask[10 + i:50, 20:60 + i] = 255
        Image.fromarray(mask).save(root / "masks" / f"{k}.png")
    (root / "train.txt").write_text("\n".join(ids) + "\n")
    return root


def _run(*args):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="")
    return subprocess.run([sys.executable, "-m", "mfif_tf.train_refiner", *args], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=600)


def _flags(data, workdir, steps):
    return [f"--data_dir={data}", f"--workdir={workdir}", f"--num_steps={steps}",
            "--batch_size=2", "--image_size=48", "--resize_shorter=64", "--channels=4",
            "--layers=2", "--jpeg_quality=40,90", "--max_factor=1.5", "--checkpoint_every=1",
            "--log_every=1"]


@pytest.fixture(scope="module")
def two_steps(mask_folder, tmp_path_factory):
    """A finished 2-step run: (its work dir, the process). Tests copy it before resuming."""
    workdir = tmp_path_factory.mktemp("two_steps") / "run"
    first = _run(*_flags(mask_folder, workdir, 2))
    assert first.returncode == 0, first.stderr[-2000:]
    return workdir, first


@pytest.fixture(scope="module")
def mixed_run(mask_folder, tmp_path_factory):
    """A finished 2-step run with image-scale regimes, texture on the larger one only, a
    band width and B focused between the layers: (its work dir, the process). The tests of
    those flags share it."""
    workdir = tmp_path_factory.mktemp("mixed") / "run"
    out = _run(*_flags(mask_folder, workdir, 2), "--batch_size=4",
               "--regimes=64:1:2,96:2:6", "--texture=1,3", "--texture_min_shorter=96",
               "--band_grow=7", "--pair_focus=0.3,0.7", "--pair_focus_share=1")
    assert out.returncode == 0, out.stderr[-2000:]
    assert "step 2/2" in out.stdout
    return workdir, out


def test_short_run_writes_weights_and_resumes(mask_folder, two_steps, tmp_path):
    from mfif_tf import refiner as refiner_lib

    workdir = tmp_path / "run"
    shutil.copytree(two_steps[0], workdir)
    assert "step 2/2" in two_steps[1].stdout
    loaded = refiner_lib.load_refiner(str(workdir / "refiner"))
    assert loaded.config == refiner_lib.RefinerConfig(channels=4, layers=2)
    # Trained: the delta head (zero at initialisation) has moved.
    assert np.abs(loaded.out_conv.kernel.numpy()).max() > 0
    again = _run(*_flags(mask_folder, workdir, 3))
    assert again.returncode == 0, again.stderr[-2000:]
    assert "resumed from" in again.stdout and "step 3/3" in again.stdout
    assert "step 1/3" not in again.stdout
    # The resumed run continued Adam's state (its step count and moments), not a fresh one.
    import tensorflow as tf

    latest = tf.train.latest_checkpoint(str(workdir / "checkpoints"))
    assert tf.train.load_variable(latest, "optimizer/_iterations/.ATTRIBUTES/VARIABLE_VALUE") == 3


@pytest.mark.parametrize("flag,message", [("--jpeg_quality=0,50", "--jpeg_quality"),
                                          ("--sigma_range=3,1", "--sigma_range"),
                                          ("--max_factor=0.5", "--max_factor"),
                                          ("--min_factor=3", "--min_factor"),
                                          ("--regimes=64:3", "--regimes"),
                                          ("--texture=3,1", "--texture"),
                                          ("--texture=x", "--texture"),
                                          ("--pair_focus=0,0.5", "--pair_focus"),
                                          ("--band_grow=-1", "--band_grow"),
                                          ("--pair_focus=0.5,1.5", "--pair_focus"),
                                          ("--pair_focus=0.5", "--pair_focus"),
                                          # The sources are made in the step only then.
                                          ("--pair_focus=0.3,0.7", "needs --texture"),
                                          ("--regimes=64:3:1", "--regimes"),
                                          ("--regimes=64:1:2,80:2:4", "--batch_size"),
                                          ("--init_refiner=no/such/dir", "--init_refiner"),
                                          # The packaged R is larger than --channels/--layers.
                                          ("--init_refiner=default", "must match")])
def test_bad_flags_are_one_line(mask_folder, tmp_path, flag, message):
    out = _run(*_flags(mask_folder, tmp_path / "run", 1), flag)
    assert out.returncode == 2
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and message in lines[0], out.stderr
    assert not (tmp_path / "run").exists()


def test_init_refiner_starts_from_saved_weights_unless_resuming(mask_folder, two_steps,
                                                                tmp_path):
    from mfif_tf import refiner as refiner_lib

    source = two_steps[0]
    start = refiner_lib.load_refiner(str(source / "refiner"))
    # With a learning rate of 0 the weights written after one step are the ones it started
    # from: those of the given work dir's R, not a fresh initialisation.
    out = _run(*_flags(mask_folder, tmp_path / "b", 1), f"--init_refiner={source}",
               "--learning_rate=0")
    assert out.returncode == 0, out.stderr[-2000:]
    assert "R starts from" in out.stdout
    after = refiner_lib.load_refiner(str(tmp_path / "b" / "refiner"))
    for x, y in zip(start.weights, after.weights):
        np.testing.assert_array_equal(x.numpy(), y.numpy())
    import json

    info = json.loads((tmp_path / "b" / "refiner" / "refiner.json").read_text())["info"]
    assert info["init_refiner"] == str(source)
    # A work dir with a checkpoint resumes from it; --init_refiner is not applied again.
    again = _run(*_flags(mask_folder, tmp_path / "b", 2), f"--init_refiner={source}")
    assert again.returncode == 0, again.stderr[-2000:]
    assert "resumed from" in again.stdout and "R starts from" not in again.stdout


def test_regimes_mix_image_scales_in_every_step(mixed_run):
    from mfif_tf import train_refiner

    assert train_refiner.parse_regimes([], 288, (1.0, 6.0)) == [(288, (1.0, 6.0))]
    assert train_refiner.parse_regimes(["288:1:6", "640:1:16"], 0, ()) == [
        (288, (1.0, 6.0)), (640, (1.0, 16.0))]
    assert (mixed_run[0] / "refiner" / "refiner.weights.h5").exists()


def test_texture_synthesises_the_sources_again_at_the_training_resolution(mixed_run):
    import json

    workdir = mixed_run[0]
    assert json.loads((workdir / "flags.json").read_text())["texture"] == ["1", "3"]
    # --band_grow is a setting of the fusion, written with the weights.
    from mfif_tf import refiner as refiner_lib

    assert refiner_lib.load_refiner(str(workdir / "refiner")).config.band_grow == 7


def test_texture_min_shorter_picks_the_regimes_that_get_texture(mixed_run):
    import json

    from mfif_tf import train_refiner

    regimes = [(288, (1.0, 6.0)), (640, (1.0, 16.0))]
    # Batch order: regime 288 (alpha-matte, conventional), then regime 640, two pairs each.
    assert train_refiner.textured_samples(8, regimes, 0) == [1.0] * 8
    assert train_refiner.textured_samples(8, regimes, 640) == [0.0] * 4 + [1.0] * 4
    assert train_refiner.textured_samples(8, regimes, 641) == [0.0] * 8
    recorded = json.loads((mixed_run[0] / "flags.json").read_text())
    assert recorded["texture_min_shorter"] == 96


def test_textured_pairs_follow_each_samples_model_and_keep_texture_in_focus_only():
    import tensorflow as tf

    from data_pipeline import synthesis
    from mfif_tf import train_refiner

    rng = np.random.default_rng(1)
    image = ndimage.gaussian_filter(rng.uniform(0.2, 0.8, (2, 64, 64, 3)), (0, 3, 3, 0))
    focus = np.zeros((2, 64, 64, 1), np.float32)
    focus[:, 16:48, 10:40] = 1.0
    sigma = np.array([2.0, 3.0], np.float32)
    alpha = np.array([True, False])
    image, focus = image.astype(np.float32), tf.constant(focus)
    plain_a, plain_b = train_refiner.textured_pairs(image, focus, sigma, alpha,
                                                    np.zeros_like(image))
    for i, method in enumerate(("alpha_matte", "conventional")):
        a, b = synthesis.synthesize_pair(image[i], focus[i], float(sigma[i]), method)
        np.testing.assert_allclose(plain_a[i], a, atol=1e-6)
        np.testing.assert_allclose(plain_b[i], b, atol=1e-6)
    texture = rng.normal(0, 4 / 255, image.shape).astype(np.float32)
    a, b = train_refiner.textured_pairs(image, focus, sigma, alpha, texture)
    inside = focus.numpy()[..., 0] > 0.5
    core = ndimage.binary_erosion(inside, iterations=8, axes=(1, 2))
    far = ~ndimage.binary_dilation(inside, iterations=8, axes=(1, 2))
    # I_A is sharp on the mask: the texture is there as added; blurred elsewhere, it is gone.
    np.testing.assert_allclose(np.std((a - plain_a).numpy()[core]), 4 / 255, rtol=0.1)
    assert np.std((a - plain_a).numpy()[far]) < 1 / 255
    np.testing.assert_allclose(np.std((b - plain_b).numpy()[far]), 4 / 255, rtol=0.1)
    assert np.std((b - plain_b).numpy()[core]) < 1 / 255


def test_pair_focus_makes_b_focused_between_the_layers(mixed_run):
    import tensorflow as tf

    from data_pipeline import synthesis
    from mfif_tf import train_refiner

    rng = np.random.default_rng(2)
    image = ndimage.gaussian_filter(rng.uniform(0.2, 0.8, (3, 48, 48, 3)),
                                    (0, 1, 1, 0)).astype(np.float32)
    focus = np.zeros((3, 48, 48, 1), np.float32)
    focus[:, 12:36, 8:30] = 1.0
    sigma = np.array([2.0, 3.0, 2.5], np.float32)
    alpha = np.array([True, False, True])
    t = np.array([0.5, 0.3, 1.0], np.float32)
    zero = np.zeros_like(image)
    pair_a, pair_b = train_refiner.textured_pairs(image, tf.constant(focus), sigma, alpha, zero)
    a, b = train_refiner.textured_pairs(image, tf.constant(focus), sigma, alpha, zero, t)
    np.testing.assert_array_equal(a, pair_a)  # I_A is the pair's
    np.testing.assert_array_equal(b[2], pair_b[2])  # t = 1: eq. 11's I_B
    for i, method in ((0, "alpha_matte"), (1, "conventional")):
        want = synthesis.focused_frame(image[i], focus[i], t[i] * sigma[i],
                                       (1 - t[i]) * sigma[i], method)
        np.testing.assert_allclose(b[i], want, atol=1e-6)
        assert np.abs(b[i] - pair_b[i]).max() > 0.05
    import json

    recorded = json.loads((mixed_run[0] / "flags.json").read_text())
    assert recorded["pair_focus"] == ["0.3", "0.7"] and recorded["pair_focus_share"] == 1.0


# Parses each refiner flagfile with the trainer's own flag definitions, line by line, without
# running it: every name must be one of its flags and every value must parse.
_CHECK_FLAGFILES = r"""
import glob, sys
from absl import flags
import mfif_tf.train_refiner  # noqa: F401  (defines the flags)
own = {f.name for f in flags.FLAGS.get_key_flags_for_module("mfif_tf.train_refiner")}
for path in sorted(glob.glob("configs/refiner*.flags")):
    for line in open(path):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, _, value = line[2:].partition("=")
        if name not in own:
            sys.exit(f"{path}: unknown flag {name}")
        flags.FLAGS[name].parser.parse(value)
    print(path)
"""


def test_shipped_refiner_flagfiles_parse():
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="")
    proc = subprocess.run([sys.executable, "-c", _CHECK_FLAGFILES], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["configs/refiner.flags", "configs/refiner_coarse_to_fine.flags",
                                   "configs/refiner_g_side.flags",
                                   "configs/refiner_g_side_texture.flags",
                                   "configs/refiner_small.flags"]


def test_packaged_refiners_name_the_flagfiles_that_made_them():
    import glob
    import json

    names = glob.glob(os.path.join(ROOT, "mfif_tf", "pretrained", "**", "refiner.json"),
                      recursive=True)
    assert len(names) == 4  # refined, coarse_to_fine, g_side, and the small G's
    for name in names:
        info = json.load(open(name))["info"]
        for key in ("first_stage", "flagfile"):
            if key in info:
                assert os.path.isfile(os.path.join(ROOT, info[key])), (name, info[key])
        assert "flagfile" in info and int(info["steps"]) > 0, name
