"""File listing, mask rules and bad-input errors of data_pipeline.readers (on tmp_path data)."""

import os

import numpy as np
import pytest
from PIL import Image

from data_pipeline import readers
from data_pipeline.readers import DataError


def _write_rgb(path, h=12, w=16, seed=0, mode="RGB"):
    rng = np.random.default_rng(seed)
    arr = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    img = Image.fromarray(arr)
    if mode != "RGB":
        img = img.convert(mode)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    img.save(path)


def _write_mask(path, h=12, w=16, box=(2, 3, 8, 10), value=255):
    arr = np.zeros((h, w), np.uint8)
    y0, x0, y1, x1 = box
    arr[y0:y1, x0:x1] = value
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(arr).save(path)


def _mask_folder(root, ids=("a", "b", "c"), split=None):
    for i, k in enumerate(ids):
        _write_rgb(os.path.join(root, "images", f"{k}.jpg"), seed=i)
        _write_mask(os.path.join(root, "masks", f"{k}.png"))
    if split:
        for name, members in split.items():
            with open(os.path.join(root, f"{name}.txt"), "w") as f:
                f.write("\n".join(members) + "\n")


def test_mask_folder_with_split_files(tmp_path):
    _mask_folder(str(tmp_path), split={"train": ["a", "c"], "val": ["b"]})
    train = readers.list_mask_folder(str(tmp_path), "train")
    val = readers.list_mask_folder(str(tmp_path), "val")
    assert [e.id for e in train] == ["a", "c"]
    assert [e.id for e in val] == ["b"]
    assert train[0].image_path.endswith(os.path.join("images", "a.jpg"))
    assert train[0].mask_path.endswith(os.path.join("masks", "a.png"))


def test_mask_folder_without_split_files_uses_all_for_train(tmp_path):
    _mask_folder(str(tmp_path))
    assert [e.id for e in readers.list_mask_folder(str(tmp_path), "train")] == ["a", "b", "c"]
    with pytest.raises(DataError, match=r"split file not found: .*val\.txt"):
        readers.list_mask_folder(str(tmp_path), "val")


def test_missing_split_file_is_named(tmp_path):
    _mask_folder(str(tmp_path), split={"train": ["a"]})
    with pytest.raises(DataError, match=r"val\.txt"):
        readers.list_mask_folder(str(tmp_path), "val")


def test_split_listing_unknown_id_is_named(tmp_path):
    _mask_folder(str(tmp_path), split={"train": ["a", "zz"]})
    with pytest.raises(DataError, match=r"'zz'"):
        readers.list_mask_folder(str(tmp_path), "train")


def test_missing_masks_folder(tmp_path):
    _write_rgb(str(tmp_path / "images" / "a.jpg"))
    with pytest.raises(DataError, match="masks folder not found"):
        readers.list_mask_folder(str(tmp_path), "train")


def test_binary_focus_map_thresholds():
    np.testing.assert_array_equal(readers.binary_focus_map(np.array([[0, 255, 128, 127]])),
                                  [[0, 1, 1, 0]])
    np.testing.assert_array_equal(readers.binary_focus_map(np.array([[0, 1, 1, 0]])),
                                  [[0, 1, 1, 0]])


def test_voc_void_takes_nearest_label():
    labels = np.zeros((5, 9), np.uint8)
    labels[:, 6:] = 15  # a person on the right
    labels[:, 4:6] = 255  # void band between background (cols 0-3) and the person
    f = readers.voc_focus_map(labels)
    np.testing.assert_array_equal(f[0], [0, 0, 0, 0, 0, 1, 1, 1, 1])
    # Every labelled object is foreground, whatever its class.
    assert readers.voc_focus_map(np.array([[0, 1, 20, 7]], np.uint8)).tolist() == [[0, 1, 1, 1]]


def _voc(root, ids=("2007_000001", "2007_000002")):
    voc = os.path.join(root, "VOCdevkit", "VOC2012")
    palette = [0, 0, 0, 128, 0, 0, 0, 128, 0] + [0] * (3 * 252) + [224, 224, 192]
    for i, k in enumerate(ids):
        _write_rgb(os.path.join(voc, "JPEGImages", f"{k}.jpg"), seed=i)
        labels = np.zeros((12, 16), np.uint8)
        labels[3:9, :] = 1 + i
        labels[1:3, :] = 255  # void band: row 1 nearest the background, row 2 the object
        im = Image.fromarray(labels, mode="P")
        im.putpalette(palette)
        os.makedirs(os.path.join(voc, "SegmentationClass"), exist_ok=True)
        im.save(os.path.join(voc, "SegmentationClass", f"{k}.png"))
    os.makedirs(os.path.join(voc, "ImageSets", "Segmentation"), exist_ok=True)
    with open(os.path.join(voc, "ImageSets", "Segmentation", "train.txt"), "w") as f:
        f.write("\n".join(ids) + "\n")
    return voc


def test_voc_listing_and_palette_masks(tmp_path):
    voc = _voc(str(tmp_path))
    for root in (str(tmp_path), voc):  # the VOCdevkit parent is accepted too
        examples = readers.list_voc(root, "train")
        assert [e.id for e in examples] == ["2007_000001", "2007_000002"]
        assert all(e.mask_kind == "voc" for e in examples)
    f = readers.read_focus_map(examples[1].mask_path, "voc")
    assert f.dtype == np.uint8 and f.shape == (12, 16)
    assert f[2:9].all() and f.sum() == 7 * 16  # the object plus its half of the void band
    with pytest.raises(DataError, match=r"val\.txt"):
        readers.list_voc(voc, "val")
    with pytest.raises(DataError, match="no PASCAL VOC"):
        readers.list_voc(str(tmp_path / "nothing"), "train")


def test_plain_folder(tmp_path):
    _write_rgb(str(tmp_path / "x.png"))
    _write_rgb(str(tmp_path / "y.jpg"), mode="L")
    (tmp_path / "notes.txt").write_text("not an image")
    examples = readers.list_plain_folder(str(tmp_path))
    assert [e.id for e in examples] == ["x", "y"]
    assert all(e.mask_path is None for e in examples)
    assert readers.read_rgb(examples[1].image_path).shape == (12, 16, 3)  # grayscale -> RGB
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match="no images"):
        readers.list_plain_folder(str(empty))


def test_validate_skips_and_counts_bad_masks(tmp_path):
    root = str(tmp_path)
    _mask_folder(root, ids=("good", "empty", "full", "small"))
    _write_mask(os.path.join(root, "masks", "empty.png"), value=0)
    _write_mask(os.path.join(root, "masks", "full.png"), box=(0, 0, 12, 16))
    _write_mask(os.path.join(root, "masks", "small.png"), h=6, w=8)
    good, skipped = readers.validate_examples(readers.list_mask_folder(root, "train"))
    assert [e.id for e in good] == ["good"]
    reasons = {os.path.basename(s.path): s.reason for s in skipped}
    assert set(reasons) == {"empty.png", "full.png", "small.png"}
    assert "empty" in reasons["empty.png"]
    assert "all foreground" in reasons["full.png"]
    assert "8x6 differs from image 16x12" in reasons["small.png"]


def test_unreadable_image_raises_naming_file(tmp_path):
    root = str(tmp_path)
    _mask_folder(root, ids=("a", "b"))
    with open(os.path.join(root, "images", "b.jpg"), "wb") as f:
        f.write(b"this is not a jpeg")
    with pytest.raises(DataError, match=r"cannot read image .*b\.jpg"):
        readers.validate_examples(readers.list_mask_folder(root, "train"))
    with pytest.raises(DataError, match=r"cannot read image .*b\.jpg"):
        readers.read_rgb(os.path.join(root, "images", "b.jpg"))


def test_test_pairs_by_stem(tmp_path):
    root = str(tmp_path)
    for k in ("01", "02"):
        _write_rgb(os.path.join(root, "A", f"{k}.jpg"))
        _write_rgb(os.path.join(root, "B", f"{k}.png"))  # extensions may differ
        _write_rgb(os.path.join(root, "C", f"{k}.jpg"))
    _write_rgb(os.path.join(root, "A", "03.jpg"))  # no partner: skipped
    _write_rgb(os.path.join(root, "GT", "01.png"))
    pairs = readers.list_test_pairs(root)
    assert [p["id"] for p in pairs] == ["01", "02"]
    assert len(pairs[0]["sources"]) == 3
    assert pairs[0]["B"].endswith(os.path.join("B", "01.png"))
    assert pairs[0]["gt"].endswith(os.path.join("GT", "01.png"))
    assert pairs[1]["gt"] is None


def test_test_pairs_errors(tmp_path):
    root = str(tmp_path)
    with pytest.raises(DataError, match="needs source folders A/ and B/"):
        readers.list_test_pairs(root)
    _write_rgb(os.path.join(root, "A", "01.jpg"))
    _write_rgb(os.path.join(root, "B", "02.jpg"))
    with pytest.raises(DataError, match="no pairs in"):
        readers.list_test_pairs(root)
    with pytest.raises(DataError, match="test set folder not found"):
        readers.list_test_pairs(os.path.join(root, "missing"))
