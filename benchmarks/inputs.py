"""Synthetic multi-focus pairs and stacks of any size, and the sizes the suite measures.

A pair is the conventional synthesis of eqs. 12-13 on a photo-like texture: I_A is sharp
inside a centred disc and blurred outside, I_B the other way round. Large images repeat a
texture tile (mirrored, so there are no seams) instead of filtering megapixels of noise, so
making a 24-megapixel pair takes seconds and holds only the uint8 images in memory.

A stack of N frames splits the image into N regions (cells around N random points); frame k
is sharp in region k and blurred elsewhere, more the further the region is from k in depth
order, like a focus sweep.
"""

from __future__ import annotations

import cv2
import numpy as np

from export.compare import textured_image

# The sizes of issue #8: Lytro's 0.27 MP, then 2, 12 and 24 megapixels (3:2 like a camera).
SIZES = {
    "0.27MP": (520, 520),
    "2MP": (1152, 1728),
    "12MP": (2832, 4240),
    "24MP": (4000, 6000),
}
_TILE = 1024
_SIGMA = 2.5


def parse_size(text: str) -> tuple[int, int]:
    """(height, width) from a name of `SIZES` or "WIDTHxHEIGHT"."""
    if text in SIZES:
        return SIZES[text]
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise ValueError(f"size {text!r} is neither one of {sorted(SIZES)} nor WIDTHxHEIGHT") \
            from None
    if width < 16 or height < 16:
        raise ValueError(f"size {text!r} is too small (at least 16x16)")
    return height, width


def size_label(height: int, width: int) -> str:
    return f"{width}x{height}"


def sharp_image(height: int, width: int, seed: int = 0) -> np.ndarray:
    """uint8 RGB (H, W, 3): a textured tile of at most 1024 x 1024, mirrored to fill."""
    tile = textured_image(min(height, _TILE), min(width, _TILE), seed)
    tile = np.clip(np.round(tile * 255.0), 0, 255).astype(np.uint8)
    reps_y = -(-height // tile.shape[0])
    reps_x = -(-width // tile.shape[1])
    row = np.concatenate([tile if i % 2 == 0 else tile[:, ::-1] for i in range(reps_x)], axis=1)
    rows = [row if j % 2 == 0 else row[::-1] for j in range(reps_y)]
    return np.ascontiguousarray(np.concatenate(rows, axis=0)[:height, :width])


def _blur(image: np.ndarray, sigma: float) -> np.ndarray:
    return cv2.GaussianBlur(image, (0, 0), sigmaX=sigma, sigmaY=sigma,
                            borderType=cv2.BORDER_REFLECT)


def synthetic_pair(height: int, width: int, seed: int = 0,
                   sigma: float = _SIGMA) -> tuple[np.ndarray, np.ndarray]:
    """(I_A, I_B) uint8 RGB: I_A sharp inside a disc of radius min(H, W) / 3, I_B outside."""
    sharp = sharp_image(height, width, seed)
    blurred = _blur(sharp, sigma)
    y, x = np.ogrid[:height, :width]
    radius = min(height, width) / 3.0
    inside = (((y - height / 2.0) ** 2 + (x - width / 2.0) ** 2) <= radius**2)[..., None]
    image_a = np.where(inside, sharp, blurred)
    image_b = np.where(inside, blurred, sharp)
    return image_a, image_b


def synthetic_stack(height: int, width: int, depth: int, seed: int = 0,
                    sigma: float = 1.5) -> list[np.ndarray]:
    """`depth` uint8 RGB frames; frame k is sharp in region k, blurred by
    sigma * |k - region| elsewhere."""
    if depth < 2:
        raise ValueError(f"a stack needs at least 2 frames, got {depth}")
    sharp = sharp_image(height, width, seed)
    rng = np.random.default_rng(seed + 1)
    points = rng.random((depth, 2)) * np.array([height, width])
    y, x = np.mgrid[:height, :width]
    distance = (y[..., None] - points[:, 0]) ** 2 + (x[..., None] - points[:, 1]) ** 2
    region = np.argmin(distance, axis=-1)
    levels = [sharp] + [_blur(sharp, sigma * d) for d in range(1, depth)]
    frames = []
    for k in range(depth):
        gap = np.abs(region - k)
        frame = np.empty_like(sharp)
        for d in range(depth):
            mask = gap == d
            frame[mask] = levels[d][mask]
        frames.append(frame)
    return frames
