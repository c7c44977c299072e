"""File listing and mask reading for the training and test layouts.

Training layouts (each example: an all-in-focus photo I and a binary focus map F, section 4.1.1):

- mask folder: `images/<id>.<ext>` + `masks/<id>.png` (0/255 or 0/1, foreground = the larger
  value), optional `train.txt` / `val.txt` listing ids, one per line.
- PASCAL VOC 2012: `JPEGImages/<id>.jpg`, `SegmentationClass/<id>.png` (palette PNG of class
  indices), `ImageSets/Segmentation/{train,val,trainval}.txt`. Every labelled object is
  foreground. The border label 255 ("void": a band about 5 px wide drawn along every object
  outline, also covering whole objects too ambiguous to label) becomes whatever the nearest
  labelled pixel is (see `voc_focus_map`).
- plain folder: images only; the pipeline draws random smooth masks.

Test layout: `A/`, `B/` (optionally `C/`, `D/`, ... more sources) and an optional `GT/`, files
paired by stem (`A/01.jpg` with `B/01.jpg`, any image extension).
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import os
import string

import numpy as np
from absl import logging
from PIL import Image
from scipy import ndimage

__all__ = [
    "IMAGE_EXTENSIONS",
    "DataError",
    "Example",
    "Skipped",
    "binary_focus_map",
    "list_mask_folder",
    "list_plain_folder",
    "list_test_pairs",
    "list_voc",
    "read_focus_map",
    "read_rgb",
    "validate_examples",
    "voc_focus_map",
]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".gif")

VOC_VOID = 255


class DataError(ValueError):
    """Bad or missing input data; the message names the file or folder."""


@dataclasses.dataclass(frozen=True)
class Example:
    """One training example on disk.

    Attributes:
      id: file stem, unique within its folder.
      image_path: the all-in-focus image I.
      mask_path: the focus map F, or None for plain images (random masks).
      mask_kind: "binary" (0/255 or 0/1 PNG) or "voc" (palette class indices, 255 = void).
    """

    id: str
    image_path: str
    mask_path: str | None = None
    mask_kind: str = "binary"


@dataclasses.dataclass(frozen=True)
class Skipped:
    """An example left out by `validate_examples`, with the reason."""

    path: str
    reason: str


def _is_image(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS) and not name.startswith(".")


def _stem_index(folder: str) -> dict[str, str]:
    """Maps file stem -> path for the image files directly inside `folder`."""
    out: dict[str, str] = {}
    for name in sorted(os.listdir(folder)):
        if not _is_image(name):
            continue
        stem = os.path.splitext(name)[0]
        if stem in out:
            raise DataError(
                f"{folder}: two images share the id {stem!r} "
                f"({os.path.basename(out[stem])}, {name})")
        out[stem] = os.path.join(folder, name)
    return out


def _require_dir(path: str, what: str) -> None:
    if not os.path.isdir(path):
        raise DataError(f"{what} not found: {path}")


def _read_ids(path: str) -> list[str]:
    if not os.path.isfile(path):
        raise DataError(f"split file not found: {path}")
    with open(path, encoding="utf-8") as f:
        ids = [line.strip().split()[0] for line in f if line.strip()]
    if not ids:
        raise DataError(f"split file lists no ids: {path}")
    return ids


def list_mask_folder(root: str, split: str = "train") -> list[Example]:
    """Lists `images/` + `masks/` pairs of one split.

    `split` names a file `<root>/<split>.txt` of ids. If the folder has no `*.txt` split file at
    all, split "train" (or "all") takes every image; any other split then raises. "all" always
    takes every image.

    Raises:
      DataError: missing folder or split file, an id without image or mask, no examples.
    """
    images_dir, masks_dir = os.path.join(root, "images"), os.path.join(root, "masks")
    _require_dir(images_dir, "images folder")
    _require_dir(masks_dir, "masks folder")
    images, masks = _stem_index(images_dir), _stem_index(masks_dir)
    split_file = os.path.join(root, f"{split}.txt")
    has_split_files = any(
        os.path.isfile(os.path.join(root, f"{s}.txt")) for s in ("train", "val", "test"))
    if split == "all" or (split == "train" and not has_split_files):
        ids = sorted(images)
        missing_masks = [i for i in ids if i not in masks]
        if missing_masks:
            raise DataError(
                f"{len(missing_masks)} image(s) in {images_dir} have no mask in {masks_dir}, "
                f"first: {missing_masks[0]!r}")
    else:
        ids = _read_ids(split_file)
        for i in ids:
            if i not in images:
                raise DataError(f"{split_file} lists {i!r} but {images_dir} has no image {i}.*")
            if i not in masks:
                raise DataError(f"{split_file} lists {i!r} but {masks_dir} has no mask {i}.*")
    if not ids:
        raise DataError(f"no images in {images_dir}")
    return [Example(i, images[i], masks[i], "binary") for i in ids]


def list_voc(root: str, split: str = "train") -> list[Example]:
    """Lists a PASCAL VOC 2012 split (`ImageSets/Segmentation/<split>.txt`).

    `root` is the `VOC2012` folder (the one holding `JPEGImages`); its parents
    `VOCdevkit/VOC2012` are also accepted.
    """
    for candidate in (root, os.path.join(root, "VOC2012"),
                      os.path.join(root, "VOCdevkit", "VOC2012")):
        if os.path.isdir(os.path.join(candidate, "JPEGImages")):
            root = candidate
            break
    else:
        raise DataError(f"no PASCAL VOC 2012 folder (with JPEGImages/) at {root}")
    jpeg_dir = os.path.join(root, "JPEGImages")
    seg_dir = os.path.join(root, "SegmentationClass")
    _require_dir(seg_dir, "VOC SegmentationClass folder")
    split_file = os.path.join(root, "ImageSets", "Segmentation", f"{split}.txt")
    out = []
    for i in _read_ids(split_file):
        image, mask = os.path.join(jpeg_dir, f"{i}.jpg"), os.path.join(seg_dir, f"{i}.png")
        for path in (image, mask):
            if not os.path.isfile(path):
                raise DataError(f"{split_file} lists {i!r} but {path} does not exist")
        out.append(Example(i, image, mask, "voc"))
    return out


def list_plain_folder(root: str) -> list[Example]:
    """Lists the images of a folder (or of its `images/` subfolder) for random-mask synthesis."""
    _require_dir(root, "image folder")
    sub = os.path.join(root, "images")
    folder = sub if os.path.isdir(sub) else root
    images = _stem_index(folder)
    if not images:
        raise DataError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) in {folder}")
    return [Example(i, p, None, "binary") for i, p in sorted(images.items())]


def list_test_pairs(root: str) -> list[dict]:
    """Lists the test sources of `root` paired by file stem.

    Layout: `root/A`, `root/B` (and `C`, `D`, ... for more sources, taken while consecutive
    letters exist) and an optional `root/GT` (or `gt`) all-in-focus reference.

    Returns:
      Sorted by id, one dict per id present in every source folder:
      `{"id": str, "sources": [path_A, path_B, ...], "A": path_A, "B": path_B, ...,
      "gt": path or None}`. Ids missing from some source folder are skipped with a warning.

    Raises:
      DataError: `root` or `A/`/`B/` missing, or no id present in every source folder.
    """
    _require_dir(root, "test set folder")
    letters = []
    for letter in string.ascii_uppercase:
        if not os.path.isdir(os.path.join(root, letter)):
            break
        letters.append(letter)
    if len(letters) < 2:
        raise DataError(f"test set folder {root} needs source folders A/ and B/")
    indexes = {k: _stem_index(os.path.join(root, k)) for k in letters}
    gt_index: dict[str, str] = {}
    for gt_name in ("GT", "gt"):
        if os.path.isdir(os.path.join(root, gt_name)):
            gt_index = _stem_index(os.path.join(root, gt_name))
            break
    all_ids = set().union(*indexes.values())
    common = sorted(set.intersection(*(set(ix) for ix in indexes.values())))
    unpaired = sorted(all_ids - set(common))
    if unpaired:
        logging.warning("%s: %d id(s) not in every source folder %s, skipped (first: %r)",
                        root, len(unpaired), "/".join(letters), unpaired[0])
    if not common:
        raise DataError(
            f"no pairs in {root}: no file stem is present in every one of "
            f"{', '.join(k + '/' for k in letters)}")
    out = []
    for i in common:
        entry: dict = {"id": i, "sources": [indexes[k][i] for k in letters]}
        entry.update({k: indexes[k][i] for k in letters})
        entry["gt"] = gt_index.get(i)
        out.append(entry)
    return out


def read_rgb(path: str) -> np.ndarray:
    """Reads an image as uint8 (H, W, 3); grayscale is repeated, alpha dropped."""
    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"))
    except (OSError, ValueError, SyntaxError) as e:
        raise DataError(f"cannot read image {path}: {e}") from None


def binary_focus_map(values: np.ndarray) -> np.ndarray:
    """F from a stored mask: foreground where the value exceeds half the format's range.

    Masks whose values are all in {0, 1} threshold at 0.5, 8-bit masks (0/255) at 127.5, 16-bit
    masks at 32767.5.
    """
    values = np.asarray(values)
    if values.ndim == 3:
        values = values[..., 0]
    peak = values.max(initial=0)
    threshold = 0.5 if peak <= 1 else (127.5 if peak <= 255 else 32767.5)
    return (values > threshold).astype(np.uint8)


def voc_focus_map(labels: np.ndarray) -> np.ndarray:
    """F from VOC class indices: every object (1..20) is foreground, 0 background.

    Void pixels (255) take the value of the nearest non-void pixel. The void band straddles each
    object's true outline, so splitting it down the middle puts the focus boundary where the
    outline most likely is; calling it all foreground would fatten every object by ~2-3 px and
    all background would erase thin parts (legs, wires). A whole object marked void next to
    background becomes background, so no unlabelled object is half-sharp.
    """
    labels = np.asarray(labels)
    void = labels == VOC_VOID
    fg = (labels > 0) & ~void
    if void.any() and not void.all():
        _, (iy, ix) = ndimage.distance_transform_edt(void, return_indices=True)
        fg = fg[iy, ix]
    return fg.astype(np.uint8)


def read_focus_map(path: str, kind: str = "binary") -> np.ndarray:
    """Reads F (uint8 (H, W) in {0, 1}) from a mask file of kind "binary" or "voc"."""
    if kind not in ("binary", "voc"):
        raise ValueError(f"unknown mask kind {kind!r}; use 'binary' or 'voc'")
    try:
        with Image.open(path) as im:
            if kind == "voc":
                if im.mode not in ("P", "L"):
                    raise DataError(
                        f"VOC mask {path} has mode {im.mode}; expected a palette (P) PNG of "
                        f"class indices")
                return voc_focus_map(np.asarray(im))
            if im.mode in ("RGB", "RGBA", "LA", "CMYK", "YCbCr", "HSV", "LAB"):
                im = im.convert("L")
            return binary_focus_map(np.asarray(im))
    except (OSError, SyntaxError) as e:
        raise DataError(f"cannot read mask {path}: {e}") from None


def _image_size(path: str) -> tuple[int, int]:
    try:
        with Image.open(path) as im:
            im.verify()
            return im.size
    except (OSError, ValueError, SyntaxError) as e:
        raise DataError(f"cannot read image {path}: {e}") from None


def _check(example: Example) -> Skipped | None:
    size = _image_size(example.image_path)
    if example.mask_path is None:
        return None
    focus = read_focus_map(example.mask_path, example.mask_kind)
    if focus.shape[::-1] != size:
        return Skipped(example.mask_path,
                       f"mask size {focus.shape[1]}x{focus.shape[0]} differs from image "
                       f"{size[0]}x{size[1]} ({os.path.basename(example.image_path)})")
    if not focus.any():
        return Skipped(example.mask_path, "mask is empty (no foreground)")
    if focus.all():
        return Skipped(example.mask_path, "mask is all foreground")
    return None


def validate_examples(
    examples: list[Example], num_threads: int = 4
) -> tuple[list[Example], list[Skipped]]:
    """Splits `examples` into usable ones and skipped ones.

    Skipped (counted and logged, never trained on): a mask whose size differs from its image, an
    empty mask, an all-foreground mask (no boundary, so nothing to learn about focus). An image or
    mask that cannot be read at all raises `DataError` naming the file: that is a broken dataset,
    not a single odd sample.
    """
    with concurrent.futures.ThreadPoolExecutor(num_threads) as pool:
        results = list(pool.map(_check, examples))
    good = [e for e, r in zip(examples, results) if r is None]
    skipped = [r for r in results if r is not None]
    if skipped:
        logging.warning("skipped %d of %d examples; first: %s: %s", len(skipped), len(examples),
                        skipped[0].path, skipped[0].reason)
        for s in skipped[1:20]:
            logging.info("skipped %s: %s", s.path, s.reason)
    return good, skipped
