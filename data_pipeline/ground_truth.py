"""Validation sets with a known answer: synthetic pairs at real photo sizes, with I and F.

  python -m data_pipeline.ground_truth --data_dir=DIR --split=val --output_dir=OUT \
      [--sizes=0.3,2,12] [--models=alpha_matte,conventional] [--pairs=40,12,4] [--seed=0] \
      [--sigma_ranges=1:5,2:12,5:25] [--mask_smoothing=0] [--sensor_noise=0] [--frames=2] \
      [--overwrite]

Real test pairs (Lytro, MFFW) have no ground truth, so a fusion can only be scored by the
no-reference metrics of Table 1. This module makes pairs whose all-in-focus image I and true
focus map are known, at the sizes fusion is used at (0.3, 2 and 12 megapixels by default), so
`python -m mfif_tf.evaluate` can also report PSNR/SSIM against I and the boundary F-scores and
accuracy of the predicted focus map against the true one.

`DIR` is a mask folder (`images/<id>.jpg`, `masks/<id>.png`, `train.txt`/`val.txt`, as
`readers.list_mask_folder` reads it); by default only its `val` split is used, whose photos are
never trained on. For every synthesis model and target size there is one folder
`OUT/<model>_<size>mp/` in the layout `evaluate` reads:

- `GT/<stem>.png`   I, the all-in-focus image;
- `A/<stem>.png`, `B/<stem>.png`   the sources, 8-bit;
- `MAP/<stem>.png`  the true focus map: 255 where A is the in-focus source, else 0;

With `--frames=N` (N > 2) every item is a focus stack of N frames instead of a pair, in the
folders `A/`, `B/`, `C/`, ... in focus order: the frames sweep the focus from the plane of the
first (A/) to that of the last, linearly in the defocus (see `synthesize_stack`), so the frames
between them are sharp nowhere and their blur is spread over both layers, as in a focus
bracket that steps through empty depth. `MAP/` is then 255 where the first frame is the
in-focus one (else the last is). `evaluate` fuses such a folder's stacks whole.

plus `OUT/manifest.json` (settings, and per pair: source image id, size, sigma, model, whether
A and B were swapped, the film grain and its seed) and `OUT/README.md`.

Per pair, with the randomness drawn from (seed, size, pair index):

1. the photo is resized with Lanczos to about the target size, keeping its aspect ratio (the
   ECSSD photos, about 400 x 267, are upscaled), so the blur below acts on real pixels of the
   final size; the mask is resized bilinearly and thresholded at 0.5 (no blocks of
   nearest-neighbour upscaling; the mask's own one-pixel steps stay, as steps of the scale
   factor: about 10 px at 12 MP; `--mask_smoothing=1` blurs the mask by 1 source pixel first,
   which rounds them off, and corners, and drops parts thinner than about 2 source pixels);
2. a fine film grain, Gaussian noise of std 2/255 per channel, is added, the result clipped to
   [0, 1] and quantised to 8 bits: this is I. An upscaled photo has no pixel-level detail; the
   grain gives the in-focus regions pixel-scale texture, as a camera sensor does, which the
   blur then removes from the defocused regions;
3. I_A, I_B by eqs. 10-11 (`alpha_matte`) or eqs. 12-13 (`conventional`) with sigma ~ U[lo, hi]
   of the size's range (`DEFAULT_SIGMA_RANGES`: the defocus blur in pixels grows with the image);
4. in half of the pairs of each set (a seeded choice) A and B are swapped and the map inverted,
   so that A is not always the foreground-focused source;
5. with `--sensor_noise=s`, Gaussian noise of std s/255 per channel, drawn independently for A
   and for B, is added to both sources (not to I): the noise a camera adds to every exposure
   after the lens, in focus or not. Without it the only pixel-scale texture of an upscaled
   photo is the grain of step 2, present in the in-focus regions alone, which makes focus
   easy to read from single pixels; with it the sources look like two real exposures. A and B
   are rounded to 8 bits.

The pair of index i uses the same photo, sigma, grain and swap in every model's set of a size
(the sets differ only in the model), and the first photos of the seeded order in every size.

A long build can be interrupted and resumed: files are written under a temporary name in their
folder and renamed, a pair whose four files exist is skipped, and running the same command
again finishes the set. Existing outputs of other settings are refused unless `--overwrite`.
"""

from __future__ import annotations

import dataclasses
import io
import json
import math
import os
import pathlib
import shutil
import sys
import time
from typing import Any, Sequence

import numpy as np
from PIL import Image
from scipy import ndimage

from data_pipeline import SYNTHESIS_METHODS, readers
from data_pipeline.cli import fail, parse_flags

__all__ = [
    "DEFAULT_SIGMA_RANGES",
    "GRAIN_STD_8BIT",
    "GroundTruthConfig",
    "GroundTruthError",
    "build",
    "make_ground_truth",
    "set_name",
    "synthesize",
    "sharpest_frame",
    "synthesize_stack",
    "target_size",
]

# Defocus sigma (pixels) drawn uniformly per pair, by target size in megapixels.
DEFAULT_SIGMA_RANGES: dict[float, tuple[float, float]] = {
    0.3: (1.0, 5.0),
    2.0: (2.0, 12.0),
    12.0: (5.0, 25.0),
}
DEFAULT_SIZES = (0.3, 2.0, 12.0)
DEFAULT_MODELS = ("alpha_matte", "conventional")
DEFAULT_PAIRS = (40, 12, 4)
STACK_MODELS = ("alpha_matte", "conventional")  # the models with a focus-stack form
STACK_SCENES = ("sweep", "tilted")  # `synthesize_stack`
TILT_NEAR = 0.3  # the tilted background's nearest depth (bottom row), in units of the sweep
GRAIN_STD_8BIT = 2.0  # film grain: std 2/255 per channel
MIN_MEGAPIXELS, MAX_MEGAPIXELS = 0.001, 100.0
SUBFOLDERS = ("A", "B", "GT", "MAP")  # of a pair set; a stack of N frames has N letters
FRAME_FOLDERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
MAX_FRAMES = len(FRAME_FOLDERS)
MANIFEST, README = "manifest.json", "README.md"
_FORMAT_VERSION = 1
_GRAIN_STREAM = 1  # the grain's seed is (seed, size key, pair index, 1); sigma's (seed, key, i)
_SWAP_STREAM = 2  # the swapped pairs of a set: (seed, size key, 2)
# Sensor noise of the written A and B: (seed, size key, pair index, 3) and (..., 4); the
# frames between them in a stack take 5, 6, ...
_NOISE_STREAMS = (3, 4)
_TMP_SUFFIX = ".tmp"


class GroundTruthError(ValueError):
    """Bad arguments or outputs that would be overwritten; the message is one line."""


@dataclasses.dataclass(frozen=True)
class GroundTruthConfig:
    """What to build.

    Attributes:
      data_dir: mask folder (images/, masks/, split files).
      split: split file to take the photos from ("val": never used in training).
      output_dir: OUT; one folder per (model, size) is made inside.
      sizes: target sizes in megapixels.
      models: synthesis models, "alpha_matte" (eqs. 10-11) and/or "conventional" (eqs. 12-13).
      pairs: number of pairs per set, one per size.
      seed: seed of the photo order, sigmas, swaps and grain.
      sigma_ranges: (lo, hi) of sigma per size; None takes `DEFAULT_SIGMA_RANGES`.
      grain_std: film grain std on the 0..255 scale.
      sensor_noise: std (0..255 scale) of the noise added to each source after the synthesis,
        independently for A and B (0: none).
      mask_smoothing: sigma (source pixels) of a Gaussian on the mask before its resize; 0 =
        none (the mask's pixel steps are upscaled with it).
      frames: 2 for pairs; N > 2 for focus stacks of N frames (`synthesize_stack`).
      stack_scene: stacks: "sweep" (the background one plane) or "tilted" (a receding
        background plane; `synthesize_stack`).
      pair_focus: pairs: where B is focused, in units of the sweep from the foreground (0)
        to the background (1): 1 is the paper's I_B (eqs. 11, 13); below 1, B blurs the
        foreground with pair_focus * sigma and the background with (1 - pair_focus) * sigma
        (`synthesize_focused`), as a photo focused between the two does.
      overwrite: replace existing outputs (all of them are rebuilt).
      progress: tqdm progress bar on stderr.
    """

    data_dir: str
    output_dir: str
    split: str = "val"
    sizes: tuple[float, ...] = DEFAULT_SIZES
    models: tuple[str, ...] = DEFAULT_MODELS
    pairs: tuple[int, ...] = DEFAULT_PAIRS
    seed: int = 0
    sigma_ranges: tuple[tuple[float, float], ...] | None = None
    grain_std: float = GRAIN_STD_8BIT
    sensor_noise: float = 0.0
    mask_smoothing: float = 0.0
    frames: int = 2
    stack_scene: str = "sweep"
    pair_focus: float = 1.0
    overwrite: bool = False
    progress: bool = True

    def ranges(self) -> tuple[tuple[float, float], ...]:
        """The sigma range of each size (given, or from `DEFAULT_SIGMA_RANGES`)."""
        if self.sigma_ranges is not None:
            return tuple(self.sigma_ranges)
        return tuple(DEFAULT_SIGMA_RANGES[s] for s in self.sizes)

    def validate(self) -> None:
        """Raises GroundTruthError with a one-line message for bad settings."""
        if not self.sizes:
            raise GroundTruthError("--sizes is empty")
        for s in self.sizes:
            if not (math.isfinite(s) and MIN_MEGAPIXELS <= s <= MAX_MEGAPIXELS):
                raise GroundTruthError(
                    f"--sizes: {s:g} megapixels is outside [{MIN_MEGAPIXELS:g}, "
                    f"{MAX_MEGAPIXELS:g}]")
        names = [f"{s:g}" for s in self.sizes]
        if len(set(names)) != len(names):
            raise GroundTruthError(f"--sizes: repeated size in {','.join(names)}")
        if len(self.pairs) != len(self.sizes):
            raise GroundTruthError(
                f"--pairs gives {len(self.pairs)} count(s) for {len(self.sizes)} size(s); "
                f"give one per size")
        if any(n < 1 for n in self.pairs):
            raise GroundTruthError(f"--pairs: every count must be at least 1, got {self.pairs}")
        if not self.models:
            raise GroundTruthError("--models is empty")
        unknown = [m for m in self.models if m not in SYNTHESIS_METHODS]
        if unknown:
            raise GroundTruthError(
                f"--models: unknown model {unknown[0]!r}; use {', '.join(SYNTHESIS_METHODS)}")
        if len(set(self.models)) != len(self.models):
            raise GroundTruthError(f"--models: repeated model in {','.join(self.models)}")
        if self.sigma_ranges is None:
            missing = [s for s in self.sizes if s not in DEFAULT_SIGMA_RANGES]
            if missing:
                known = ", ".join(f"{k:g}" for k in DEFAULT_SIGMA_RANGES)
                raise GroundTruthError(
                    f"no default sigma range for {missing[0]:g} megapixels (defaults for "
                    f"{known}); give --sigma_ranges=lo:hi,... one per size")
        elif len(self.sigma_ranges) != len(self.sizes):
            raise GroundTruthError(
                f"--sigma_ranges gives {len(self.sigma_ranges)} range(s) for "
                f"{len(self.sizes)} size(s); give one per size")
        for lo, hi in self.ranges():
            if not (math.isfinite(lo) and math.isfinite(hi) and 0 < lo <= hi):
                raise GroundTruthError(f"--sigma_ranges: need 0 < lo <= hi, got {lo:g}:{hi:g}")
        if not (math.isfinite(self.grain_std) and self.grain_std >= 0):
            raise GroundTruthError(f"--grain must be >= 0, got {self.grain_std:g}")
        if not (math.isfinite(self.sensor_noise) and self.sensor_noise >= 0):
            raise GroundTruthError(f"--sensor_noise must be >= 0, got {self.sensor_noise:g}")
        if not (math.isfinite(self.mask_smoothing) and self.mask_smoothing >= 0):
            raise GroundTruthError(f"--mask_smoothing must be >= 0, got {self.mask_smoothing:g}")
        if not 2 <= self.frames <= MAX_FRAMES:
            raise GroundTruthError(f"--frames must be in [2, {MAX_FRAMES}], got {self.frames}")
        if self.frames > 2 and set(self.models) - set(STACK_MODELS):
            bad = sorted(set(self.models) - set(STACK_MODELS))[0]
            raise GroundTruthError(f"--frames above 2: model {bad!r} has no stack form; use "
                                   f"{', '.join(STACK_MODELS)}")
        if self.stack_scene not in STACK_SCENES:
            raise GroundTruthError(f"--stack_scene must be one of {', '.join(STACK_SCENES)}, "
                                   f"got {self.stack_scene!r}")
        if not (math.isfinite(self.pair_focus) and 0.0 < self.pair_focus <= 1.0):
            raise GroundTruthError(f"--pair_focus must be in (0, 1], got {self.pair_focus:g}")
        if self.pair_focus != 1.0:
            if self.frames > 2:
                raise GroundTruthError("--pair_focus applies to pairs; a stack's frames sweep "
                                       "the focus already (--frames)")
            if set(self.models) - set(STACK_MODELS):
                bad = sorted(set(self.models) - set(STACK_MODELS))[0]
                raise GroundTruthError(f"--pair_focus below 1: model {bad!r} has no form "
                                       f"focused between the layers; use "
                                       f"{', '.join(STACK_MODELS)}")
        if self.stack_scene != "sweep" and self.frames < 3:
            raise GroundTruthError(f"--stack_scene={self.stack_scene} makes stacks: give "
                                   f"--frames of 3 or more")

    def folders(self) -> tuple[str, ...]:
        """The sub-folders of every set: the frames' letters, GT and MAP."""
        return frame_folders(self.frames) + SUBFOLDERS[2:]


def frame_folders(frames: int) -> tuple[str, ...]:
    """("A", "B") for pairs, ("A", "B", "C", ...) for a stack of `frames` frames."""
    return tuple(FRAME_FOLDERS[:frames])


def set_name(model: str, megapixels: float) -> str:
    """Folder of one set, e.g. `alpha_matte_2mp`, `conventional_0.3mp`."""
    return f"{model}_{megapixels:g}mp"


def _size_key(megapixels: float) -> int:
    """The size's part of the random seeds (kilopixels), independent of the other sizes."""
    return int(round(megapixels * 1000))


def target_size(width: int, height: int, megapixels: float) -> tuple[int, int]:
    """(W, H) of about `megapixels` * 1e6 pixels with the aspect ratio of width x height."""
    scale = math.sqrt(megapixels * 1e6 / (width * height))
    return max(1, round(width * scale)), max(1, round(height * scale))


# ----------------------------------------------------------------------------- synthesis


def make_ground_truth(
    photo: np.ndarray, mask: np.ndarray, size: tuple[int, int], grain: np.ndarray | None,
    mask_smoothing: float = 0.0,
) -> tuple[np.ndarray, np.ndarray]:
    """I and F at `size` (W, H) from a photo and its binary mask.

    Args:
      photo: uint8 (h, w, 3).
      mask: (h, w) in {0, 1}, F at the photo's size (1 = foreground).
      size: target (W, H).
      grain: float32 (H, W, 3) noise on the [0, 1] scale added after the resize, or None.
      mask_smoothing: sigma in source pixels of a Gaussian applied to the mask before the
        resize (0: none).

    Returns:
      I, uint8 (H, W, 3): the Lanczos-resized photo plus grain, clipped and rounded; and
      F, uint8 (H, W) in {0, 1}: the mask resized bilinearly and thresholded at 0.5.
    """
    resized = Image.fromarray(photo).resize(size, Image.Resampling.LANCZOS)
    image = np.asarray(resized, np.float32) / np.float32(255.0)
    if grain is not None:
        image += grain
    image = np.rint(np.clip(image, 0.0, 1.0) * np.float32(255.0)).astype(np.uint8)
    soft = np.asarray(mask, np.float32)
    if mask_smoothing > 0:
        soft = ndimage.gaussian_filter(soft, mask_smoothing, mode="nearest")
    soft = Image.fromarray(soft, mode="F").resize(
        size, Image.Resampling.BILINEAR)
    focus = (np.asarray(soft) > 0.5).astype(np.uint8)
    return image, focus


def _to_uint8(frames: Sequence[Any], noise: Sequence[np.ndarray | None]) -> list[np.ndarray]:
    """Frames in [0, 1] plus their sensor noise (or None), clipped and rounded to uint8."""
    out = []
    for t, n in zip(frames, noise):
        arr = np.asarray(t)
        if n is not None:
            arr = arr + n
        out.append(np.rint(np.clip(arr, 0.0, 1.0) * np.float32(255.0)).astype(np.uint8))
        del arr
    return out


def synthesize(image: np.ndarray, focus: np.ndarray, sigma: float, model: str,
               noise: Sequence[np.ndarray | None] = (None, None)) -> tuple[np.ndarray, np.ndarray]:
    """I_A (foreground in focus) and I_B (background in focus), uint8 (H, W, 3), rounded.

    `noise` (for I_A, I_B): float32 (H, W, 3) on the [0, 1] scale added before the rounding
    (sensor noise), or None.

    `model` "alpha_matte": eqs. 10-11; "conventional": eqs. 12-13 (I_A = F*I + (1-F)*G(x)I);
    "alpha_matte_filled": eqs. 10-11 with the hidden background filled. The Gaussian is the
    separable `imgaussfilt` copy of `synthesis.gaussian_filter`.
    """
    from data_pipeline import synthesis  # pylint: disable=import-outside-toplevel

    x = image.astype(np.float32) / np.float32(255.0)  # I in [0, 1]
    f = focus.astype(np.float32)[:, :, None]  # F, 1 = foreground
    # eqs. 10-11 (alpha_matte), eqs. 12-13 (conventional): I_A = F*I + (1-F)*(G (x) I),
    # I_B = F*(G (x) I) + (1-F)*I.
    image_a, image_b = synthesis.synthesize_pair(x, f, float(sigma), model)
    out = _to_uint8((image_a, image_b), noise)
    return out[0], out[1]


def background_bands(height: int, frames: int) -> tuple[np.ndarray, np.ndarray]:
    """The tilted scene's background: the row band of every row (int array (H,)) and each
    band's depth (float array (2 * frames,)), in units of the sweep, foreground at 0 and
    the last frame's plane at 1: 1 at the top row down to `TILT_NEAR` at the bottom."""
    count = 2 * frames
    band = np.minimum(np.arange(height) * count // height, count - 1)
    depth = 1.0 - (1.0 - TILT_NEAR) * (np.arange(count) + 0.5) / count
    return band, depth


def sharpest_frame(focus: np.ndarray, frames: int, scene: str = "sweep") -> np.ndarray:
    """(H, W) uint8: the frame whose focus is nearest each pixel's depth (the first on a
    tie), for a stack of `synthesize_stack` before any swap."""
    if scene == "sweep":
        return np.where(focus > 0, 0, frames - 1).astype(np.uint8)
    band, depth = background_bands(focus.shape[0], frames)
    t = np.linspace(0.0, 1.0, frames)
    nearest = np.argmin(np.abs(depth[:, None] - t[None, :]), axis=1).astype(np.uint8)
    return np.where(focus > 0, np.uint8(0), nearest[band][:, None])


def synthesize_stack(image: np.ndarray, focus: np.ndarray, sigma: float, model: str,
                     frames: int, noise: Sequence[np.ndarray | None] | None = None,
                     scene: str = "sweep",
                     positions: Sequence[float] | None = None) -> list[np.ndarray]:
    """A focus sweep of `frames` frames from the foreground's focus onwards, uint8 (H, W, 3),
    rounded.

    Frame j of N sits at t = j / (N - 1) of the sweep and blurs a layer at depth z (in
    units of the sweep: the foreground at 0) with sigma_j(z) = sigma * |z - t|, linear in the
    focus setting as the defocus of a thin lens is (in dioptres). `scene` "sweep": the
    background is a plane at depth 1, so the first and last frames are `synthesize`'s I_A
    and I_B and the frames between are sharp nowhere. "tilted": the background is a plane
    tilted away from the camera, from depth `TILT_NEAR` at the bottom row to 1 at the top,
    in 2N horizontal bands each blurred at its mean depth (`background_bands`), so every
    frame is the sharpest on some band, as in a focus stack of a receding scene. For
    "conventional" a frame is eqs. 12-13 with one Gaussian per layer,

        I_t = F * (G_F (x) I) + (1 - F) * (G_B (x) I),

    and for "alpha_matte" eqs. 10-11's layers, the blurred foreground over the blurred
    background (eqs. 7-9):

        I_t = G_F (x) (F * I) + (1 - G_F (x) F) * [G_B (x) ((1 - F) * I)],

    which is eq. 10 at t = 0 and eq. 11 at t = 1 in the sweep. G_B is the band's Gaussian
    in the tilted scene. `noise`: one float32 (H, W, 3) array or None per frame, added
    before the rounding (sensor noise). `positions`: the t of each frame to make (as many
    as `frames`, one or more) instead of j / (N - 1).
    """
    from data_pipeline import synthesis  # pylint: disable=import-outside-toplevel

    if model not in STACK_MODELS:
        raise GroundTruthError(f"model {model!r} has no stack form; use {', '.join(STACK_MODELS)}")
    if scene not in STACK_SCENES:
        raise GroundTruthError(f"stack scene {scene!r} is not one of {', '.join(STACK_SCENES)}")
    if positions is None and frames < 2:
        raise GroundTruthError(f"a stack needs at least 2 frames, got {frames}")
    if positions is not None and len(positions) != frames:
        raise GroundTruthError(f"{len(positions)} focus positions for {frames} frames")
    noise = list(noise) if noise is not None else [None] * frames
    ts = [j / (frames - 1) for j in range(frames)] if positions is None else list(positions)
    x = image.astype(np.float32) / np.float32(255.0)
    f = focus.astype(np.float32)[:, :, None]

    def blur(pixels: np.ndarray, s: float) -> np.ndarray:
        return np.asarray(synthesis.gaussian_filter(pixels, s)) if s > 0 else pixels

    height = x.shape[0]
    band, depth = background_bands(height, frames)

    def background(pixels: np.ndarray, t: float) -> np.ndarray:
        """The background layer `pixels` as frame t sees it."""
        if scene == "sweep":
            return blur(pixels, (1.0 - t) * float(sigma))
        out = np.empty_like(pixels)
        for b, z in enumerate(depth):
            rows = np.flatnonzero(band == b)
            s = abs(z - t) * float(sigma)
            # The band's rows need the rows a kernel radius around them (exact: the
            # kernel's support lies inside the slice, or the image border replicates).
            reach = 2 * int(math.ceil(2 * s)) + 1
            lo, hi = max(rows[0] - reach, 0), min(rows[-1] + 1 + reach, height)
            out[rows[0]:rows[-1] + 1] = blur(pixels[lo:hi], s)[rows[0] - lo:rows[-1] + 1 - lo]
        return out

    out = []
    for j in range(frames):
        t = ts[j]
        if scene == "sweep" and positions is None and j in (0, frames - 1):
            if j == 0:
                first, last = synthesize(image, focus, sigma, model, (noise[0], noise[-1]))
            out.append(first if j == 0 else last)
            continue
        s_f = t * float(sigma)
        if model == "conventional":  # eqs. 12-13, each layer with its own blur
            frame = f * blur(x, s_f) + (1.0 - f) * background(x, t)
        else:  # eqs. 7-11: G_F (x) FG^C over (1 - G_F (x) F) * G_B (x) BG^C
            layers = blur(np.concatenate([f * x, f], axis=-1), s_f)
            frame = layers[..., :3] + (1.0 - layers[..., 3:]) * background((1.0 - f) * x, t)
            del layers
        out.extend(_to_uint8([frame], [noise[j]]))
        del frame
    return out


def synthesize_focused(image: np.ndarray, focus: np.ndarray, sigma: float, model: str,
                       b_focus: float, noise: Sequence[np.ndarray | None] = (None, None)
                       ) -> tuple[np.ndarray, np.ndarray]:
    """I_A as `synthesize` makes it and I_B focused at `b_focus` of the way from the
    foreground (depth 0) to the background (depth 1): the foreground blurred with
    b_focus * sigma, the background with (1 - b_focus) * sigma, each layer as
    `synthesize_stack` blurs it (alpha_matte: the blurred foreground over the blurred
    background, eqs. 7-9; conventional: eqs. 12-13 with one Gaussian per layer). At
    b_focus = 1, I_B is eq. 11 / 13's. uint8 (H, W, 3) each."""
    image_a, image_b = synthesize(image, focus, sigma, model, noise)
    if b_focus != 1.0:
        image_b = synthesize_stack(image, focus, sigma, model, 1, (noise[1],),
                                   positions=(float(b_focus),))[0]
    return image_a, image_b


# ----------------------------------------------------------------------------- the plan


def _examples(config: GroundTruthConfig) -> list[readers.Example]:
    if not os.path.isdir(config.data_dir):
        raise GroundTruthError(f"--data_dir not found: {config.data_dir}")
    try:
        examples = readers.list_mask_folder(config.data_dir, config.split)
        good, skipped = readers.validate_examples(examples)
    except readers.DataError as e:
        raise GroundTruthError(str(e)) from None
    if skipped:
        print(f"skipped {len(skipped)} example(s) with unusable masks; first: "
              f"{skipped[0].path}: {skipped[0].reason}", file=sys.stderr)
    need = max(config.pairs)
    if len(good) < need:
        raise GroundTruthError(
            f"--pairs asks for {need} pairs per set but split {config.split!r} of "
            f"{config.data_dir} has {len(good)} usable image(s)")
    return sorted(good, key=lambda e: e.id)


def _plan(config: GroundTruthConfig, examples: Sequence[readers.Example]) -> dict[str, Any]:
    """The manifest: settings and every pair, all decided before any pixel is made."""
    order = np.random.default_rng([config.seed]).permutation(len(examples))
    grain = config.grain_std / 255.0
    sets, pairs = [], []
    for size, n, (lo, hi) in zip(config.sizes, config.pairs, config.ranges()):
        key = _size_key(size)
        swap_rng = np.random.default_rng([config.seed, key, _SWAP_STREAM])
        swapped = set(int(i) for i in swap_rng.permutation(n)[: n // 2])
        for model in config.models:
            sets.append({"folder": set_name(model, size), "model": model, "megapixels": size,
                         "sigma_range": [lo, hi], "pairs": n})
            if config.frames > 2:
                sets[-1]["frames"] = config.frames
                if config.stack_scene != "sweep":
                    sets[-1]["scene"] = config.stack_scene
            if config.pair_focus != 1.0:
                sets[-1]["pair_focus"] = config.pair_focus
        for i in range(n):
            example = examples[int(order[i])]
            with Image.open(example.image_path) as im:
                width, height = im.size
            # sigma ~ U[lo, hi], rounded so that the manifest states it exactly.
            sigma = round(float(np.random.default_rng([config.seed, key, i]).uniform(lo, hi)), 4)
            out_w, out_h = target_size(width, height, size)
            for model in config.models:
                pairs.append({
                    "set": set_name(model, size),
                    "stem": f"{i:03d}_{example.id}",
                    "image_id": example.id,
                    "model": model,
                    "megapixels": size,
                    "source_size": [width, height],
                    "size": [out_w, out_h],
                    "sigma": sigma,
                    "swapped": i in swapped,
                    "grain": {"std": grain, "seed": [config.seed, key, i, _GRAIN_STREAM]},
                })
                if config.frames > 2:  # absent for pairs: manifests of older builds still match
                    pairs[-1]["frames"] = config.frames
                    if config.stack_scene != "sweep":
                        pairs[-1]["scene"] = config.stack_scene
                if config.pair_focus != 1.0:  # absent at 1, likewise
                    pairs[-1]["pair_focus"] = config.pair_focus
                if config.sensor_noise > 0:  # absent at 0, likewise
                    # In the order of the written frames: A 3, the last 4, between them 5, ...
                    streams = (_NOISE_STREAMS[0], *range(5, 3 + config.frames),
                               _NOISE_STREAMS[1])
                    pairs[-1]["sensor_noise"] = {
                        "std": config.sensor_noise / 255.0,
                        "seeds": [[config.seed, key, i, n] for n in streams]}
    settings = {
        "data_dir": os.path.abspath(config.data_dir),
        "split": config.split,
        "sizes_megapixels": list(config.sizes),
        "models": list(config.models),
        "pairs": list(config.pairs),
        "seed": config.seed,
        "sigma_ranges": [list(r) for r in config.ranges()],
        "grain_std_8bit": config.grain_std,
        "mask_smoothing_source_px": config.mask_smoothing,
        "resize": "photo: PIL Lanczos; mask: bilinear, > 0.5",
    }
    if config.sensor_noise > 0:
        settings["sensor_noise_std_8bit"] = config.sensor_noise
    if config.frames > 2:
        settings["frames"] = config.frames
        if config.stack_scene != "sweep":
            settings["stack_scene"] = config.stack_scene
    if config.pair_focus != 1.0:
        settings["pair_focus"] = config.pair_focus
    return {
        "format": _FORMAT_VERSION,
        "description": "multi-focus validation pairs with ground truth (data_pipeline."
                       "ground_truth); MAP is 255 where A is the in-focus source",
        "settings": settings,
        "sets": sets,
        "pairs": pairs,
    }


def _readme(manifest: dict[str, Any]) -> str:
    s = manifest["settings"]
    ranges = ",".join(f"{lo:g}:{hi:g}" for lo, hi in s["sigma_ranges"])
    command = (
        f"python -m data_pipeline.ground_truth --data_dir={s['data_dir']} --split={s['split']} "
        f"--output_dir=OUT --sizes={','.join(f'{x:g}' for x in s['sizes_megapixels'])} "
        f"--models={','.join(s['models'])} --pairs={','.join(str(n) for n in s['pairs'])} "
        f"--seed={s['seed']} --sigma_ranges={ranges} --grain={s['grain_std_8bit']:g} "
        f"--mask_smoothing={s['mask_smoothing_source_px']:g}")
    noise = s.get("sensor_noise_std_8bit", 0.0)
    frames = s.get("frames", 2)
    noise_text = ""
    if noise:
        command += f" --sensor_noise={noise:g}"
        noise_text = (f" Gaussian sensor noise of std {noise:g}/255 per channel, drawn "
                      f"independently for each source, is then added to every source (not "
                      f"to I).")
    extra_text = ""
    pair_focus = s.get("pair_focus", 1.0)
    if pair_focus != 1.0:
        command += f" --pair_focus={pair_focus:g}"
        extra_text = f"""
B is focused {pair_focus:g} of the way from the foreground (depth 0) to the background (depth
1), as a photo focused between the two: it blurs the foreground with {pair_focus:g} * sigma and
the background with {1 - pair_focus:g} * sigma (each layer as a focus stack's frame), so no
source is sharp on the background and the fused image cannot reach GT there. A is as in the
pair sets; MAP is unchanged (A is the sharper source on the foreground, B on the background).
"""
    if frames > 2:
        command += f" --frames={frames}"
        letters = frame_folders(frames)
        scene = s.get("stack_scene", "sweep")
        if scene == "sweep":
            background = ("the background, a plane at depth 1, with (1 - t) * sigma; the first "
                          "and the last frame are the pair's two sources, the frames between "
                          "them are sharp nowhere")
        else:
            command += f" --stack_scene={scene}"
            background = (f"the background, a plane tilted from depth {TILT_NEAR:g} at the "
                          f"bottom row to 1 at the top, in {2 * frames} row bands each blurred "
                          f"with |z - t| * sigma at its mean depth z, so that every frame is "
                          f"the sharpest on some band")
        extra_text = f"""
Each item is a focus stack of {frames} frames, `{'/`, `'.join(letters)}/` in focus order: the
focus sweeps from the foreground's plane (depth 0) to depth 1; frame t = j / {frames - 1}
(j = 0, ..., {frames - 1}) blurs the foreground with t * sigma and {background}. In half of
the stacks the order is reversed. MAP is 255 where the first frame is the sharpest.
`evaluate` fuses each stack whole and scores it against GT.
"""
    rows = "\n".join(
        f"| `{x['folder']}/` | {x['model']} | {x['megapixels']:g} | "
        f"{x['sigma_range'][0]:g}-{x['sigma_range'][1]:g} | {x['pairs']} |"
        for x in manifest["sets"])
    return f"""# Multi-focus validation pairs with ground truth

Made by `data_pipeline.ground_truth` of mfif-tf from the `{s['split']}` split of
`{s['data_dir']}` (photos and their foreground masks):

    {command}

| folder | model | megapixels | sigma (px) | pairs |
|---|---|---|---|---|
{rows}

Each folder holds `A/`, `B/` (the sources), `GT/` (the all-in-focus image I) and `MAP/` (the
true focus map: 255 where A is the in-focus source, else 0), PNG files with the same stem
`<index>_<photo id>`. Per pair: the photo is resized (Lanczos) to the target size keeping its
aspect ratio, the mask bilinearly (thresholded at 0.5; Gaussian smoothing of
{s['mask_smoothing_source_px']:g} source pixels before); Gaussian film grain of std
{s['grain_std_8bit']:g}/255 per channel is added and the result rounded to 8 bits (I); the sources
are synthesised from I with the paper's eqs. 10-11 (`alpha_matte`, the alpha-matte model with
the defocus spread effect) or eqs. 12-13 (`conventional`), sigma drawn uniformly from the range
above (imgaussfilt's kernel); in half of the pairs A and B are swapped (and MAP inverted).{noise_text} Pair
i uses the same photo, sigma, grain and swap in every model's folder of a size.
`manifest.json` lists every pair (photo id, size, sigma, model, swapped, grain and its seed).
{extra_text}
Evaluate a method on one folder:

    python -m mfif_tf.evaluate --dataset_dir=OUT/{manifest['sets'][0]['folder']} \\
        --model=default --classical --output_dir=RESULTS
"""


# ----------------------------------------------------------------------------- files


def _encode_png(pixels: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue()


def _write_atomic(path: pathlib.Path, data: bytes) -> None:
    """Writes under a temporary name in the same folder, then renames: a kill never leaves a
    truncated file under the final name."""
    tmp = path.with_name(f".{path.name}{_TMP_SUFFIX}")
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def _paths(root: pathlib.Path, entry: dict[str, Any]) -> dict[str, pathlib.Path]:
    folder = root / entry["set"]
    subs = frame_folders(entry.get("frames", 2)) + SUBFOLDERS[2:]
    return {sub: folder / sub / f"{entry['stem']}.png" for sub in subs}


def _prepare_output(config: GroundTruthConfig, manifest: dict[str, Any]) -> pathlib.Path:
    """Checks existing outputs against the manifest; clears them with overwrite."""
    root = pathlib.Path(config.output_dir)
    if root.exists() and not root.is_dir():
        raise GroundTruthError(f"--output_dir exists and is not a folder: {root}")
    old_path = root / MANIFEST
    new_sets = [x["folder"] for x in manifest["sets"]]
    old_sets: list[str] = []
    if old_path.exists():
        try:
            old = json.loads(old_path.read_text())
            old_sets = [x["folder"] for x in old.get("sets", []) if isinstance(x["folder"], str)]
        except (OSError, ValueError, TypeError, KeyError, AttributeError) as e:
            old = None
            if not config.overwrite:
                raise GroundTruthError(
                    f"{old_path} is unreadable ({e}); pass --overwrite to rebuild") from None
        same = old == json.loads(json.dumps(manifest))
        if not same and not config.overwrite:
            raise GroundTruthError(
                f"{root} holds a set made with other settings ({MANIFEST} differs); pass "
                f"--overwrite to replace it, or choose another --output_dir")
    else:
        present = [s for s in new_sets if (root / s).exists()]
        if present and not config.overwrite:
            raise GroundTruthError(
                f"{root / present[0]} exists but {root} has no {MANIFEST}; pass --overwrite to "
                f"replace it")
    if config.overwrite:
        for name in dict.fromkeys(old_sets + new_sets):
            folder = root / name
            if name in ("", ".", "..") or pathlib.Path(name).name != name or not folder.is_dir():
                continue  # only set folders directly inside OUT
            for sub in (*FRAME_FOLDERS, *SUBFOLDERS[2:]):
                if (folder / sub).is_dir():
                    shutil.rmtree(folder / sub)
            if not any(folder.iterdir()):
                folder.rmdir()
    for name in new_sets:
        for sub in config.folders():
            folder = root / name / sub
            folder.mkdir(parents=True, exist_ok=True)
            for stale in folder.glob(f".*{_TMP_SUFFIX}"):  # left by an interrupted run
                stale.unlink()
    _write_atomic(root / MANIFEST, (json.dumps(manifest, indent=1) + "\n").encode())
    _write_atomic(root / README, _readme(manifest).encode())
    return root


# ----------------------------------------------------------------------------- the build


def build(config: GroundTruthConfig) -> dict[str, Any]:
    """Builds (or finishes) every set of `config`; returns counts and the time taken.

    Raises:
      GroundTruthError: bad settings, data or existing outputs (one-line message).
    """
    start = time.perf_counter()
    config.validate()
    examples = _examples(config)
    by_id = {e.id: e for e in examples}
    manifest = _plan(config, examples)
    root = _prepare_output(config, manifest)
    # Entries of one (size, pair index) across the models share I, F and the swap.
    groups: dict[tuple[float, str], list[dict[str, Any]]] = {}
    for entry in manifest["pairs"]:
        groups.setdefault((entry["megapixels"], entry["stem"]), []).append(entry)
    bar = _progress_bar(len(manifest["pairs"]), config.progress)
    written = skipped = 0
    try:
        for entries in groups.values():
            todo = [e for e in entries if not all(p.exists() for p in _paths(root, e).values())]
            skipped += len(entries) - len(todo)
            bar.update(len(entries) - len(todo))
            if not todo:
                continue
            first = todo[0]
            example = by_id[first["image_id"]]
            photo = readers.read_rgb(example.image_path)
            mask = readers.read_focus_map(example.mask_path, example.mask_kind)
            width, height = first["size"]
            grain = None
            if first["grain"]["std"] > 0:
                rng = np.random.default_rng(first["grain"]["seed"])
                grain = rng.standard_normal((height, width, 3), dtype=np.float32)
                grain *= np.float32(first["grain"]["std"])
            image, focus = make_ground_truth(photo, mask, (width, height), grain,
                                             config.mask_smoothing)
            del grain, photo
            swapped = first["swapped"]
            # MAP: 255 where A is the in-focus source (F itself, or 1 - F when swapped).
            frames = first.get("frames", 2)
            scene = first.get("scene", "sweep")
            if frames > 2:  # MAP: where the first frame (the last before a swap) is sharpest
                sharpest = sharpest_frame(focus, frames, scene)
                true_map = (sharpest == (frames - 1 if swapped else 0)).astype(np.uint8)
                true_map *= np.uint8(255)
                del sharpest
            else:
                true_map = ((1 - focus) if swapped else focus).astype(np.uint8) * np.uint8(255)
            gt_png, map_png = _encode_png(image), _encode_png(true_map)
            del true_map
            noise = [None] * frames  # of the written frames, in their order
            if "sensor_noise" in first:
                std = np.float32(first["sensor_noise"]["std"])
                noise = [np.random.default_rng(seed).standard_normal((height, width, 3),
                                                                     dtype=np.float32) * std
                         for seed in first["sensor_noise"]["seeds"]]
            for entry in todo:
                # I_A (foreground in focus), I_B (background in focus): eqs. 10-11 for
                # alpha_matte, eqs. 12-13 for conventional, G with this pair's sigma; a
                # stack sweeps from the one to the other (`synthesize_stack`).
                if frames > 2:
                    sources = synthesize_stack(image, focus, entry["sigma"], entry["model"],
                                               frames, noise[::-1] if swapped else noise,
                                               scene)
                else:
                    sources = list(synthesize_focused(
                        image, focus, entry["sigma"], entry["model"],
                        entry.get("pair_focus", 1.0), noise[::-1] if swapped else noise))
                if swapped:
                    sources.reverse()
                paths = _paths(root, entry)
                for letter, pixels in zip(frame_folders(frames), sources):
                    _write_atomic(paths[letter], _encode_png(pixels))
                _write_atomic(paths["GT"], gt_png)
                _write_atomic(paths["MAP"], map_png)
                del sources
                written += 1
                bar.update(1)
    except readers.DataError as e:
        raise GroundTruthError(str(e)) from None
    finally:
        bar.close()
    return {"written": written, "skipped": skipped, "seconds": time.perf_counter() - start,
            "output_dir": str(root)}


class _NoBar:
    def update(self, n: int = 1) -> None:
        del n

    def close(self) -> None:
        pass


def _progress_bar(total: int, enabled: bool):
    if not enabled:
        return _NoBar()
    from tqdm import tqdm  # pylint: disable=import-outside-toplevel

    return tqdm(total=total, desc="ground truth", unit="pair", file=sys.stderr)


# ----------------------------------------------------------------------------- entry point


def _define_flags() -> None:
    """Flags are defined only when run as a program, so importing the module adds none."""
    from absl import flags  # pylint: disable=import-outside-toplevel

    if "sizes" in flags.FLAGS and "sigma_ranges" in flags.FLAGS:
        return
    flags.DEFINE_string("data_dir", None, "Mask folder: images/, masks/, train.txt/val.txt.")
    flags.DEFINE_string("split", "val", "Split file of --data_dir to take the photos from.")
    flags.DEFINE_string("output_dir", None, "Where the sets, manifest.json and README.md go.")
    flags.DEFINE_list("sizes", [f"{s:g}" for s in DEFAULT_SIZES],
                      "Target sizes in megapixels, one set per size and model.")
    flags.DEFINE_list("models", list(DEFAULT_MODELS),
                      "alpha_matte (eqs. 10-11), conventional (eqs. 12-13), alpha_matte_filled.")
    flags.DEFINE_list("pairs", [str(n) for n in DEFAULT_PAIRS], "Pairs (stacks with --frames above 2) per set, one per size.")
    flags.DEFINE_list("sigma_ranges", [],
                      "lo:hi of sigma in pixels, one per size (default: "
                      + ", ".join(f"{k:g} MP {lo:g}:{hi:g}"
                                  for k, (lo, hi) in DEFAULT_SIGMA_RANGES.items()) + ").")
    flags.DEFINE_float("grain", GRAIN_STD_8BIT, "Film grain std on the 0..255 scale.")
    flags.DEFINE_float("sensor_noise", 0.0, "Std (0..255 scale) of Gaussian sensor noise "
                       "added to each source after the synthesis, independently (0: none).")
    flags.DEFINE_float("mask_smoothing", 0.0, "Gaussian sigma (source pixels) on the mask "
                       "before its resize: 1 rounds off its pixel steps (0: none).")
    flags.DEFINE_integer("seed", 0, "Seed of the photo order, sigmas, swaps and grain.")
    flags.DEFINE_integer("frames", 2, "2 for pairs (A/, B/); N > 2 for focus stacks of N "
                         "frames (A/, B/, C/, ...) sweeping from one layer's focus to the "
                         "other's (alpha_matte and conventional).")
    flags.DEFINE_enum("stack_scene", "sweep", list(STACK_SCENES),
                      "Stacks: sweep (the background one plane: the first and last frames "
                      "are the pair's sources, those between are sharp nowhere) or tilted (a "
                      "background plane receding from the bottom row to the top, so that "
                      "every frame is the sharpest somewhere).")
    flags.DEFINE_float("pair_focus", 1.0, "Pairs: where B is focused, from the foreground (0) "
                       "to the background (1, the paper's I_B); below 1 B is focused between "
                       "them and blurs both layers.")
    flags.DEFINE_bool("overwrite", False, "Replace existing outputs of other settings.")
    flags.DEFINE_bool("progress", True, "Progress bar on stderr.")


def _numbers(values: Sequence[str], kind: type, what: str) -> tuple:
    try:
        return tuple(kind(v) for v in values)
    except ValueError:
        fail(f"{what}: expected a comma-separated list of numbers, got {','.join(values)}")


def config_from_flags() -> GroundTruthConfig:
    from absl import flags  # pylint: disable=import-outside-toplevel

    f = flags.FLAGS
    if not f.data_dir:
        fail("--data_dir is required")
    if not f.output_dir:
        fail("--output_dir is required")
    ranges = None
    if f.sigma_ranges:
        ranges = []
        for text in f.sigma_ranges:
            parts = text.split(":")
            lo_hi = _numbers(parts, float, "--sigma_ranges") if len(parts) == 2 else ()
            if len(lo_hi) != 2:
                fail(f"--sigma_ranges: expected lo:hi, got {text!r}")
            ranges.append(lo_hi)
        ranges = tuple(ranges)
    return GroundTruthConfig(
        data_dir=f.data_dir, output_dir=f.output_dir, split=f.split,
        sizes=_numbers(f.sizes, float, "--sizes"), models=tuple(f.models),
        pairs=_numbers(f.pairs, int, "--pairs"), seed=f.seed, sigma_ranges=ranges,
        grain_std=f.grain, sensor_noise=f.sensor_noise, mask_smoothing=f.mask_smoothing,
        frames=f.frames, stack_scene=f.stack_scene, pair_focus=f.pair_focus,
        overwrite=f.overwrite,
        progress=f.progress)


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        fail(f"unexpected arguments: {' '.join(argv[1:])}")
    config = config_from_flags()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before synthesis imports TF
    try:
        summary = build(config)
    except GroundTruthError as e:
        fail(str(e))
    minutes = summary["seconds"] / 60
    print(f"{summary['output_dir']}: wrote {summary['written']} pair(s), "
          f"{summary['skipped']} already complete, in {minutes:.1f} min")


def run() -> None:
    from absl import app  # pylint: disable=import-outside-toplevel

    _define_flags()
    app.run(main, flags_parser=parse_flags)


if __name__ == "__main__":
    run()
