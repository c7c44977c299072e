"""Photos shipped inside scikit-image (`skimage.data`), a training source that needs no download.

They carry no masks: the pipeline draws a random smooth focus map per sample. Two photos are
held out as the "val" split.
"""

from __future__ import annotations

import functools

import numpy as np

__all__ = ["EMBEDDED_SPLITS", "load_embedded"]

# Natural photos and textures that load without network access (some skimage.data images need
# the optional `pooch` download and are left out). Grayscale ones are repeated to RGB.
EMBEDDED_SPLITS: dict[str, tuple[str, ...]] = {
    "train": (
        "astronaut", "chelsea", "rocket", "immunohistochemistry", "hubble_deep_field",
        "stereo_motorcycle", "camera", "coins", "moon", "brick", "grass", "gravel", "cell",
    ),
    "val": ("coffee", "clock"),
}


@functools.lru_cache(maxsize=None)
def _load_one(name: str) -> np.ndarray:
    from skimage import data  # imported lazily: only this source needs it

    image = getattr(data, name)()
    if isinstance(image, tuple):  # stereo_motorcycle returns (left, right, disparity)
        image = image[0]
    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise TypeError(f"skimage.data.{name} has dtype {image.dtype}, expected uint8")
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=-1)
    return np.ascontiguousarray(image[..., :3])


def load_embedded(split: str = "train") -> list[tuple[str, np.ndarray]]:
    """Returns [(name, uint8 (H, W, 3) image), ...] of the split ("train", "val" or "all")."""
    if split == "all":
        names = EMBEDDED_SPLITS["train"] + EMBEDDED_SPLITS["val"]
    elif split in EMBEDDED_SPLITS:
        names = EMBEDDED_SPLITS[split]
    else:
        raise ValueError(f"embedded source has splits 'train', 'val', 'all'; got {split!r}")
    return [(n, _load_one(n)) for n in names]
