"""tf.data training pipeline: shapes, ranges, order of operations, determinism, sources."""

import os

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from data_pipeline import PipelineConfig, pipeline, readers, synthesis

KEYS = ("image_a", "image_b", "focus", "image")


def _image(h, w, seed):
    rng = np.random.default_rng(seed)
    # Smooth-ish content so bilinear resizing does not dominate, plus noise for blur to act on.
    y, x = np.mgrid[0:h, 0:w]
    base = np.stack([np.sin(x / 3.0 + seed), np.cos(y / 4.0), np.sin((x + y) / 5.0)], -1)
    return np.clip(127 + 60 * base + rng.normal(0, 30, (h, w, 3)), 0, 255).astype(np.uint8)


def _mask(h, w, seed):
    y, x = np.mgrid[0:h, 0:w]
    cy, cx = h / 2 + seed % 3, w / 2 - seed % 4
    return ((((y - cy) / (h / 3)) ** 2 + ((x - cx) / (w / 4)) ** 2) < 1).astype(np.uint8) * 255


def _folder(root, n=6, h=40, w=48, gray=(), split=None):
    os.makedirs(os.path.join(root, "images"), exist_ok=True)
    os.makedirs(os.path.join(root, "masks"), exist_ok=True)
    ids = [f"{i:03d}" for i in range(n)]
    for i, k in enumerate(ids):
        img = Image.fromarray(_image(h, w, i))
        if k in gray:
            img = img.convert("L")
        img.save(os.path.join(root, "images", f"{k}.png"))
        Image.fromarray(_mask(h, w, i)).save(os.path.join(root, "masks", f"{k}.png"))
    if split:
        for name, members in split.items():
            with open(os.path.join(root, f"{name}.txt"), "w") as f:
                f.write("\n".join(members) + "\n")
    return ids


def _batches(ds, n):
    return [{k: v.numpy() for k, v in b.items()} for b in ds.take(n)]


def _check_batch(b, batch, size):
    assert set(b) == set(KEYS)
    for k in ("image_a", "image_b", "image"):
        assert b[k].shape == (batch, size, size, 3) and b[k].dtype == np.float32
        assert b[k].min() >= -1.0 and b[k].max() <= 1.0
    assert b["focus"].shape == (batch, size, size, 1) and b["focus"].dtype == np.float32
    assert set(np.unique(b["focus"])) <= {0.0, 1.0}


def test_folder_source_shapes_and_fixed_batch(tmp_path):
    _folder(str(tmp_path))
    ds = pipeline.make_training_dataset(
        source="folder", data_dir=str(tmp_path), batch_size=4, image_size=32,
        center_crop_size=24)
    assert ds.element_spec["image_a"].shape == (4, 32, 32, 3)
    for b in _batches(ds, 3):  # 6 examples, repeated: more batches than one epoch holds
        _check_batch(b, 4, 32)
        assert 0 < b["focus"].mean() < 1


@pytest.mark.parametrize("method", ["alpha_matte", "conventional"])
def test_synthesis_at_native_resolution_before_crop(tmp_path, method):
    # With image_size == crop size, resizing is the identity, so the output must equal the
    # crop of the pair synthesised on the whole image (not the pair of the cropped image).
    _folder(str(tmp_path), n=2, h=40, w=48)
    ds = pipeline.make_eval_dataset(
        source="folder", data_dir=str(tmp_path), split="train", batch_size=1, image_size=24,
        center_crop_size=24, synthesis=method, sigma=2.0)
    got = _batches(ds, 2)
    for i, b in enumerate(got):
        img = _image(40, 48, i).astype(np.float32) / 255
        f = (_mask(40, 48, i)[..., None] > 127).astype(np.float32)
        a, bb = synthesis.synthesize_pair(img, f, 2.0, method)
        crop = (slice(8, 32), slice(12, 36))
        np.testing.assert_allclose(b["image"][0], img[crop] * 2 - 1, atol=1e-5)
        np.testing.assert_allclose(b["focus"][0], f[crop])
        np.testing.assert_allclose(b["image_a"][0], a.numpy()[crop] * 2 - 1, atol=1e-5)
        np.testing.assert_allclose(b["image_b"][0], bb.numpy()[crop] * 2 - 1, atol=1e-5)
        # Synthesising the crop alone differs next to the crop's border (replicate padding).
        a_crop, _ = synthesis.synthesize_pair(img[crop], f[crop], 2.0, method)
        assert np.abs(a_crop.numpy() * 2 - 1 - b["image_a"][0]).max() > 1e-3


def test_same_seed_same_batches_other_seed_differs(tmp_path):
    _folder(str(tmp_path))
    kw = dict(source="folder", data_dir=str(tmp_path), batch_size=2, image_size=16,
              crop="random", resize_shorter=24, sigma_range=(0.5, 3.0))
    first = _batches(pipeline.make_training_dataset(seed=3, **kw), 4)
    again = _batches(pipeline.make_training_dataset(seed=3, **kw), 4)
    other = _batches(pipeline.make_training_dataset(seed=4, **kw), 4)
    for x, y in zip(first, again):
        for k in KEYS:
            np.testing.assert_array_equal(x[k], y[k])
    assert any(not np.array_equal(x["image_a"], y["image_a"]) for x, y in zip(first, other))
    for b in first:
        _check_batch(b, 2, 16)


@pytest.mark.parametrize("synthesis_name", ["conventional", "mixed"])
def test_without_synthesis_the_same_crops_masks_and_swaps(tmp_path, synthesis_name):
    # synthesise=False (train_refiner --texture makes the sources itself): I and F are those
    # of the full pipeline, sample for sample, and both sources are I.
    _folder(str(tmp_path))
    kw = dict(source="folder", data_dir=str(tmp_path), batch_size=3, image_size=16,
              crop="random", resize_shorter=24, sigma_range=(0.5, 3.0), seed=5,
              synthesis=synthesis_name)
    full = _batches(pipeline.make_training_dataset(**kw), 4)
    bare = _batches(pipeline.make_training_dataset(synthesise=False, **kw), 4)
    for x, y in zip(full, bare):
        _check_batch(y, 3, 16)
        np.testing.assert_array_equal(x["image"], y["image"])
        np.testing.assert_array_equal(x["focus"], y["focus"])
        np.testing.assert_array_equal(y["image_a"], y["image"])
        np.testing.assert_array_equal(y["image_b"], y["image"])
    assert any(not np.array_equal(x["image_a"], x["image"]) for x in full)


def test_flip_moves_pixels_consistently(tmp_path):
    _folder(str(tmp_path), n=4)
    ds = pipeline.make_training_dataset(
        source="folder", data_dir=str(tmp_path), batch_size=4, image_size=24,
        center_crop_size=24, flip=True, seed=1)
    b = _batches(ds, 2)
    plain = _batches(pipeline.make_eval_dataset(
        source="folder", data_dir=str(tmp_path), split="train", batch_size=4, image_size=24,
        center_crop_size=24), 1)[0]
    # Every training example is one of the 4 unflipped eval images, flipped in some way, with its
    # focus map flipped the same way.
    for batch in b:
        for j in range(4):
            matched = False
            for i in range(4):
                for axes in ((), (0,), (1,), (0, 1)):
                    cand = np.flip(plain["image"][i], axes) if axes else plain["image"][i]
                    if np.allclose(cand, batch["image"][j], atol=1e-5):
                        f = np.flip(plain["focus"][i], axes) if axes else plain["focus"][i]
                        np.testing.assert_array_equal(f, batch["focus"][j])
                        matched = True
            assert matched


def test_eval_dataset_is_finite_repeatable_and_keeps_remainder(tmp_path):
    _folder(str(tmp_path), n=5, split={"train": ["000", "001"], "val": ["002", "003", "004"]})
    kw = dict(source="folder", data_dir=str(tmp_path), batch_size=2, image_size=16)
    ds = pipeline.make_eval_dataset(drop_remainder=False, **kw)
    sizes = [b["image"].shape[0] for b in _batches(ds, 10)]
    assert sizes == [2, 1]
    a = _batches(pipeline.make_eval_dataset(**kw), 5)
    b = _batches(pipeline.make_eval_dataset(**kw), 5)
    assert len(a) == 1  # drop_remainder: one full batch from 3 examples
    np.testing.assert_array_equal(a[0]["image_b"], b[0]["image_b"])


def test_bad_masks_are_skipped_grayscale_becomes_rgb_and_extra_dirs_join(tmp_path):
    main, extra = str(tmp_path / "main"), str(tmp_path / "extra")
    _folder(main, n=3, gray=("001",))
    Image.fromarray(np.zeros((40, 48), np.uint8)).save(os.path.join(main, "masks", "002.png"))
    _folder(extra, n=2, h=30, w=30)
    Image.fromarray(np.zeros((20, 20), np.uint8) + 255).save(
        os.path.join(extra, "masks", "001.png"))  # wrong size: skipped
    ds = pipeline.make_eval_dataset(source="folder", data_dir=main, split="train",
                                    extra_dirs=(extra,), batch_size=1, image_size=16,
                                    drop_remainder=False)
    got = _batches(ds, 10)
    assert len(got) == 3  # main/000, main/001 (grayscale), extra/000
    gray = got[1]["image"][0]
    np.testing.assert_allclose(gray[..., 0], gray[..., 1])
    np.testing.assert_allclose(gray[..., 0], gray[..., 2])


def test_all_masks_bad_raises(tmp_path):
    _folder(str(tmp_path), n=1)
    Image.fromarray(np.zeros((40, 48), np.uint8)).save(str(tmp_path / "masks" / "000.png"))
    with pytest.raises(readers.DataError, match="no usable examples.*mask is empty"):
        pipeline.make_training_dataset(source="folder", data_dir=str(tmp_path))


def test_plain_source_draws_smooth_random_masks(tmp_path):
    os.makedirs(tmp_path / "p")
    for i in range(3):
        Image.fromarray(_image(40, 48, i)).save(str(tmp_path / "p" / f"{i}.jpg"))
    ds = pipeline.make_training_dataset(source="plain", data_dir=str(tmp_path / "p"),
                                        batch_size=3, image_size=32, center_crop_size=40)
    b = _batches(ds, 2)
    for batch in b:
        _check_batch(batch, 3, 32)
    fracs = np.concatenate([x["focus"].mean(axis=(1, 2, 3)) for x in b])
    assert (fracs > 0.05).all() and (fracs < 0.95).all()


def test_voc_source(tmp_path):
    voc = tmp_path / "VOC2012"
    for sub in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        os.makedirs(voc / sub)
    ids = ["2008_000001", "2008_000002"]
    for i, k in enumerate(ids):
        Image.fromarray(_image(40, 48, i)).save(str(voc / "JPEGImages" / f"{k}.jpg"))
        labels = np.zeros((40, 48), np.uint8)
        labels[10:30, :] = 5 + i
        labels[8:10, :] = 255
        im = Image.fromarray(labels, mode="P")
        im.putpalette([0, 0, 0, 128, 0, 0] * 128)
        im.save(str(voc / "SegmentationClass" / f"{k}.png"))
    (voc / "ImageSets/Segmentation/train.txt").write_text("\n".join(ids) + "\n")
    ds = pipeline.make_eval_dataset(source="voc", data_dir=str(voc), split="train",
                                    batch_size=2, image_size=40, center_crop_size=40)
    (b,) = _batches(ds, 1)
    _check_batch(b, 2, 40)
    # The centre crop keeps all rows: object rows 9..29 (void row 9 joins it,
    # row 8 goes to the background).
    want = np.zeros((40, 40), np.float32)
    want[9:30] = 1
    np.testing.assert_array_equal(b["focus"][0, ..., 0], want)


def test_embedded_source_needs_no_files():
    # A 32 x 32 centre crop at native resolution, so the blur is not resized away.
    ds = pipeline.make_training_dataset(batch_size=2, image_size=32, center_crop_size=32,
                                        sigma=2.0)
    b = _batches(ds, 2)
    for batch in b:
        _check_batch(batch, 2, 32)
        assert np.abs(batch["image_a"] - batch["image_b"]).max() > 0.05
    val = _batches(pipeline.make_eval_dataset(batch_size=1, image_size=16,
                                              drop_remainder=False), 10)
    assert len(val) == 8  # 2 held-out photos x 4 masks
    masks = np.stack([v["focus"][0] for v in val])
    assert not np.array_equal(masks[0], masks[2])  # same photo, another mask


@pytest.mark.parametrize("kwargs, match", [
    (dict(source="nope"), "source must be one of"),
    (dict(source="folder"), "needs data_dir"),
    (dict(crop="middle"), "crop must be"),
    (dict(synthesis="other"), "synthesis must be"),
    (dict(sigma=0.0), "sigma must be > 0"),
    (dict(sigma_range=(3.0, 1.0)), "sigma_range"),
    (dict(sigma_range=(1.0, 2.0, 3.0)), "sigma_range"),
    (dict(pair_focus=(0.6, 0.3)), "pair_focus must be"),
    (dict(pair_focus=(0.5, 1.5)), "pair_focus must be"),
    (dict(pair_focus=(0.5, 0.5), synthesis="alpha_matte_filled"), "alpha_matte_filled"),
    (dict(pair_focus=(0.5, 0.5), source="tfds"), "synthesised already"),
    (dict(pair_focus_share=1.5), "pair_focus_share"),
    (dict(batch_size=0), "batch_size"),
    (dict(shuffle_buffer=0), "shuffle_buffer"),
    (dict(crop="random", image_size=300, resize_shorter=288), "resize_shorter"),
])
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        pipeline.make_training_dataset(**kwargs)


def test_missing_folder_is_named(tmp_path):
    with pytest.raises(readers.DataError, match="images folder not found"):
        pipeline.make_training_dataset(source="folder", data_dir=str(tmp_path / "none"))


def test_swap_sources_swaps_a_random_half_of_the_samples():
    kw = dict(batch_size=4, image_size=16, center_crop_size=32, seed=2)
    plain = _batches(pipeline.make_training_dataset(**kw), 3)
    swapped = _batches(pipeline.make_training_dataset(swap_sources=True, **kw), 3)
    kinds = []
    for p, s in zip(plain, swapped):
        np.testing.assert_array_equal(p["image"], s["image"])
        for j in range(4):
            same = np.array_equal(p["image_a"][j], s["image_a"][j])
            if same:
                np.testing.assert_array_equal(p["image_b"][j], s["image_b"][j])
                np.testing.assert_array_equal(p["focus"][j], s["focus"][j])
            else:
                np.testing.assert_array_equal(p["image_a"][j], s["image_b"][j])
                np.testing.assert_array_equal(p["image_b"][j], s["image_a"][j])
                np.testing.assert_array_equal(1.0 - p["focus"][j], s["focus"][j])
            kinds.append(same)
    assert 0 < sum(kinds) < len(kinds)


def test_config_and_keyword_forms_agree():
    cfg = PipelineConfig(image_size=16, crop="random", resize_shorter=24, sigma_range=(1, 3),
                         swap_sources=True)
    a = _batches(pipeline.training_dataset(cfg, batch_size=2, seed=7), 2)
    # The keyword form of earlier versions: None for no folder, lists for tuples.
    b = _batches(pipeline.make_training_dataset(
        source="embedded", data_dir=None, tfds_data_dir=None, split="train", batch_size=2,
        image_size=16, crop="random", resize_shorter=24, sigma_range=[1, 3], seed=7,
        repeat=True, extra_dirs=[], swap_sources=True), 2)
    for x, y in zip(a, b):
        for k in KEYS:
            np.testing.assert_array_equal(x[k], y[k])
    assert cfg.sigma_range == (1.0, 3.0) and cfg.data_dir == ""
    with pytest.raises(TypeError, match="fixes"):
        pipeline.make_eval_dataset(crop="random")


def test_mixed_synthesis_draws_one_model_per_sample(tmp_path):
    """Each sample of synthesis 'mixed' is the alpha-matte (eqs. 10-11) or the conventional
    (eqs. 12-13) sample of the same seed and index, and both occur."""
    _folder(str(tmp_path), n=6)
    kw = dict(source="folder", data_dir=str(tmp_path), batch_size=1, image_size=16,
              crop="random", resize_shorter=24, sigma_range=(1.0, 3.0), seed=5)
    mixed, alpha, conventional = (
        _batches(pipeline.make_training_dataset(synthesis=name, **kw), 12)
        for name in ("mixed", "alpha_matte", "conventional"))
    drawn = []
    for m, a, c in zip(mixed, alpha, conventional):
        np.testing.assert_array_equal(m["focus"], a["focus"])
        if np.array_equal(m["image_a"], a["image_a"]) and np.array_equal(m["image_b"],
                                                                          a["image_b"]):
            drawn.append("alpha_matte")
        else:
            np.testing.assert_array_equal(m["image_a"], c["image_a"])
            np.testing.assert_array_equal(m["image_b"], c["image_b"])
            drawn.append("conventional")
    assert set(drawn) == {"alpha_matte", "conventional"}


@pytest.mark.parametrize("method", ["alpha_matte", "conventional"])
def test_pair_focus_focuses_b_between_the_layers(tmp_path, method):
    """With pair_focus, I_B of a share of the samples is focused between the layers: at t = 1
    it is eq. 11 / 13's I_B, at t = 0.5 the foreground is sharper and the background blurrier
    than there; I_A, I and F never change, and a share of 0 changes nothing. `pair_focused`
    says which samples are focused between (absent without pair_focus)."""
    _folder(str(tmp_path), n=6)
    kw = dict(source="folder", data_dir=str(tmp_path), batch_size=1, image_size=16,
              crop="random", resize_shorter=24, sigma_range=(2.0, 3.0), seed=5,
              synthesis=method)
    plain = _batches(pipeline.make_training_dataset(**kw), 12)
    none = _batches(pipeline.make_training_dataset(pair_focus=(0.5, 0.5), pair_focus_share=0.0,
                                                   **kw), 12)
    full = _batches(pipeline.make_training_dataset(pair_focus=(1.0, 1.0), pair_focus_share=1.0,
                                                   **kw), 12)
    half = _batches(pipeline.make_training_dataset(pair_focus=(0.5, 0.5), pair_focus_share=1.0,
                                                   **kw), 12)
    some = _batches(pipeline.make_training_dataset(pair_focus=(0.5, 0.5), **kw), 12)
    err = {"fg": [[], []], "bg": [[], []]}
    drawn = []
    for p, n, f, h, s in zip(plain, none, full, half, some):
        for other in (n, f, h, s):
            for k in ("image_a", "image", "focus"):
                np.testing.assert_array_equal(p[k], other[k])
        np.testing.assert_array_equal(p["image_b"], n["image_b"])
        np.testing.assert_allclose(p["image_b"], f["image_b"], atol=1e-5)
        fg = p["focus"][..., 0] > 0.5
        for j, b in enumerate((p["image_b"], h["image_b"])):
            diff = np.abs(b - p["image"]).mean(-1)
            err["fg"][j].append(diff[fg].mean())
            err["bg"][j].append(diff[~fg].mean())
        assert "pair_focused" not in p
        assert n["pair_focused"].tolist() == [0.0] and h["pair_focused"].tolist() == [1.0]
        if np.array_equal(s["image_b"], p["image_b"]):
            drawn.append(False)
        else:
            np.testing.assert_allclose(s["image_b"], h["image_b"], atol=1e-6)
            drawn.append(True)
        assert s["pair_focused"].tolist() == [float(drawn[-1])]
    assert np.mean(err["fg"][1]) < 0.8 * np.mean(err["fg"][0])
    assert np.mean(err["bg"][1]) > 1.5 * np.mean(err["bg"][0])
    assert 0 < sum(drawn) < len(drawn)
