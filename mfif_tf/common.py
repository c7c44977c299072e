"""What the TensorFlow and the LiteRT engines share, with no TensorFlow import: the constants
of the inference graph (`mfif_tf.inference`), the scaling of source values, eq. 14 on the
original pixels, and the error raised for a missing model. `mfif_tf.litert_engine` and the
checks of `mfif-fuse` run on this alone, so a fusion through LiteRT never loads TensorFlow.
"""

from __future__ import annotations

import fractions
import functools
import os
from typing import Any

import numpy as np

# The model shipped with the package: G and R weights, and their LiteRT graph.
PACKAGED_MODEL_DIR = os.path.join(os.path.dirname(__file__), "pretrained")
# The other Gs in the package, by the name `--model` (and `fuse_arrays(generator=)`) takes in
# place of a path: `model_directory`.
PACKAGED_MODELS = {"small": os.path.join(PACKAGED_MODEL_DIR, "small"),
                   "six_branch": os.path.join(PACKAGED_MODEL_DIR, "six_branch")}
# The G that runs below full size (`find_coarse_generator_dir`) for a packaged G that has no
# g_side/ of its own: the small G is as sure as the default one at full size, but on sources
# box-averaged 2-4x it leaves up to 9x as many pixels unsure, whose band R then redraws (a
# synthetic 24 MP pair: 3x the default's time; MODEL_CARD.md, "The small G"), so there the
# default G runs.
PACKAGED_COARSE_GENERATORS = {"small": PACKAGED_MODEL_DIR}
# What G and R may compute in (`model_io.with_precision`, `model_io.refiner_with_precision`).
PRECISIONS = ("float32", "bfloat16")
# CPU flags (Linux /proc/cpuinfo, x86) of instructions that compute in bfloat16: AVX512_BF16
# (Cooper Lake, Sapphire Rapids and later, Zen 4 and later) and AMX-BF16 (Sapphire Rapids).
BF16_CPU_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})
# Whether `cpu_default_precision` picks bfloat16 on such CPUs. On: there G and R in bfloat16
# are 1.6-2.4x faster than in float32, with the same scores on Lytro (to the fourth decimal)
# and on the ground-truth sets (to 0.01 dB); F_final differs from float32's on a few pixels
# along outlines (docs/fusion.md, "Precision"). `--precision=float32` asks for float32.
BF16_DEFAULT_ON_BF16_CPUS = True

# N = 0.001 W H (section 3.3).
PAPER_MIN_SIZE_FRACTION = 0.001
# G pads its input to a multiple of 4 by mirroring, which needs at least 2 pixels a side.
MIN_IMAGE_SIDE = 2
# ITU-R BT.601 luma weights (MATLAB's rgb2gray), for grey views of RGB sources.
BT601 = (0.298936021293775, 0.587043074451121, 0.114020904255103)

MODES = ("refined", "paper", "coarse_to_fine")
DEFAULT_MODE = "refined"
# Modes in which the refinement head R runs.
REFINED_MODES = ("refined", "coarse_to_fine")
# Shorter side of G's working resolution in coarse-to-fine mode (see MODEL_CARD.md for the
# measurement behind it).
DEFAULT_WORKING_SIDE = 448
MIN_WORKING_SIDE = 16
# Refined mode: the largest shorter side G runs at. Larger sources are box-averaged by the
# smallest power of two that brings their shorter side to at most this (at most
# `MAX_G_FACTOR`) before G, and the R of `COARSE_REFINER_KEY` (trained on G's maps of sources
# downscaled 2-4x) redraws the outline on the full-resolution pixels. On pairs with sensor
# noise in both sources, as every photo has, G on the full-size sources of 2 and 12 MP pairs
# misreads whole regions; at this size it does not, and from 0.6 to 1 MP (shorter sides
# 640-1024) G on 2 x 2 box means gives I_fused 0.4-1.3 dB closer to the all-in-focus image
# than G at full size (MODEL_CARD.md, "Photo size"). 0: G at full size whatever the size.
DEFAULT_G_SIDE = 640
# The largest box factor of G's pass: the R that follows it was trained on factors 2-4; at
# 8 (a 12 MP photo with a side of 640) its outline is 0.3-2.0 dB worse than at 4.
MAX_G_FACTOR = 4
# G runs at full size only up to this fraction of `g_side` (480 for 640); above it on box
# means of 2 x 2 at least. On Lytro and on the 0.3-0.6 MP ground-truth pairs with a shorter
# side of 481-640, G on 2 x 2 box means is level or better and takes half the time, while
# box means of 4 x 4 from a shorter side of 961 on (a side of 480 alone) lose 0.9 dB at 2 MP
# (MODEL_CARD.md, "G at full size up to 480").
FULL_SIZE_FRACTION = fractions.Fraction(3, 4)


def usable_cpus() -> int:
    """The CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


# The packaged R of each refined mode: refined (G at full resolution) in the package folder,
# coarse_to_fine (one octave per step, `train_refiner --min_factor=2 --max_factor=2`) in
# its subfolder, and the R that follows G in the refined mode when G runs below full size
# (`DEFAULT_G_SIDE`; G's map of sources downscaled 2-4x, configs/refiner_g_side.flags) in
# g_side/; a mode without its own R uses the package folder's.
PACKAGED_REFINER_DIRS = {"coarse_to_fine": os.path.join(PACKAGED_MODEL_DIR, "coarse_to_fine"),
                         "g_side": os.path.join(PACKAGED_MODEL_DIR, "g_side")}
# The key of PACKAGED_REFINER_DIRS whose R follows G below full size in the refined mode.
COARSE_REFINER_KEY = "g_side"
REFINER_WEIGHTS_FILE = "refiner.weights.h5"
REFINER_CONFIG_FILE = "refiner.json"


def find_refiner_dir(refiner: str | os.PathLike | None, model: str | os.PathLike | None,
                     mode: str | None = None) -> str | None:
    """The directory R is loaded from: `refiner` when given; else beside a model directory
    `model` (the folder itself, then its refiner/: a training work dir of `train_refiner`);
    else the packaged R of `mode` (`PACKAGED_REFINER_DIRS`), then the packaged one. For the
    `COARSE_REFINER_KEY` of a packaged G that another packaged G stands in for below full size
    (`PACKAGED_COARSE_GENERATORS`), that G's. None when none of these holds R's weights
    (`refiner` is returned as given)."""
    if refiner:
        return os.fspath(refiner)
    model = model_directory(model)
    coarse_model = PACKAGED_COARSE_GENERATORS.get(packaged_name(model))
    if mode == COARSE_REFINER_KEY and coarse_model is not None:
        # Below full size another packaged G runs (`find_coarse_generator_dir`): its R
        # follows it, not the one beside this model's G.
        model = None if coarse_model == PACKAGED_MODEL_DIR else coarse_model
    candidates = []
    if model and os.fspath(model) != "default":
        candidates += [os.fspath(model), os.path.join(os.fspath(model), "refiner")]
    if mode in PACKAGED_REFINER_DIRS:
        candidates.append(PACKAGED_REFINER_DIRS[mode])
    candidates.append(PACKAGED_MODEL_DIR)
    return next((p for p in candidates
                 if os.path.isfile(os.path.join(p, REFINER_WEIGHTS_FILE))), None)


# G's weights file in a model directory (`model_io.WEIGHTS_FILE`).
GENERATOR_WEIGHTS_FILE = "generator.weights.h5"


def find_coarse_generator_dir(model: str | os.PathLike | None) -> str | None:
    """The directory of the G that runs below full size in the refined mode (sources
    box-averaged by `g_factor` > 1), when it is not the model's own G: the `COARSE_REFINER_KEY`
    subfolder of the model directory `model` (the packaged one for None or "default") when it
    holds a G, else `PACKAGED_COARSE_GENERATORS`' for a packaged G. None: the model's G serves
    every size."""
    model = model_directory(model)
    base = PACKAGED_MODEL_DIR if model in (None, "", "default") else os.fspath(model)
    path = os.path.join(base, COARSE_REFINER_KEY)
    if os.path.isfile(os.path.join(path, GENERATOR_WEIGHTS_FILE)):
        return path
    return PACKAGED_COARSE_GENERATORS.get(packaged_name(base))


def model_directory(model: Any) -> Any:
    """`model` with the name of a packaged G (`PACKAGED_MODELS`) replaced by its folder, unless
    a file or folder of that name exists in the working directory (then it is that path, as
    before the name existed); anything else (None, "default", a path, a model object) as
    given."""
    if isinstance(model, (str, os.PathLike)):
        name = os.fspath(model)
        if name in PACKAGED_MODELS and not os.path.exists(name):
            return PACKAGED_MODELS[name]
    return model


def packaged_name(model: Any) -> str | None:
    """The name in `PACKAGED_MODELS` of the packaged G that `model` (a name or a path) is,
    or None."""
    folder = model_directory(model)
    if not isinstance(folder, (str, os.PathLike)):
        return None
    folder = os.path.realpath(folder)
    return next((name for name, path in PACKAGED_MODELS.items()
                 if os.path.realpath(path) == folder), None)


class ModelNotFoundError(FileNotFoundError):
    """No model (or refinement head) where one was asked for."""


def check_precision(precision: Any) -> str:
    """`precision` when it is "float32" or "bfloat16", else ValueError (one line)."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be 'float32' or 'bfloat16', got {precision!r}")
    return precision


def check_mode(mode: str) -> str:
    """`mode` if it is one of `MODES`; ValueError naming the choices otherwise."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    return mode


def check_working_side(side: Any) -> int:
    """The working resolution's shorter side as an int >= `MIN_WORKING_SIDE`."""
    if isinstance(side, bool) or not isinstance(side, (int, np.integer)) \
            or side < MIN_WORKING_SIDE:
        raise ValueError(f"working_side must be an integer of at least {MIN_WORKING_SIDE} "
                         f"pixels, got {side!r}")
    return int(side)


# The focus-measure check of G's outline where G ran below full size
# (`inference.measure_check`): the sum-modified-Laplacian (Nayar and Nakagawa 1994) of each
# source's luminance over w x w pixels, for each w of MEASURE_WINDOWS (the first has the
# last word), overrides F_hat where one source's is more than MEASURE_RATIO times the
# other's plus MEASURE_FLOOR w^2 (a modified Laplacian per pixel, luminance in [0, 1]),
# within MEASURE_REACH of G's pixels of G's outline. Then, within MEASURE_BAND pixels of the
# outline so drawn (and inside that zone), the modified Laplacian of the single pixel
# decides where one source's is more than MEASURE_PIXEL_RATIO times the other's plus
# MEASURE_FLOOR, which places the outline to the pixel. Last, a pixel on the outline that
# neither its own measure nor R decides (F_hat within MEASURE_UNSURE of 0.5) takes the side
# most of its decided 3 x 3 neighbours take.
MEASURE_RATIO = 3.0
MEASURE_REACH = 16
MEASURE_WINDOWS = (15, 5)
MEASURE_FLOOR = 1e-3 / 225
MEASURE_BAND = 4
MEASURE_PIXEL_RATIO = 5.0
MEASURE_UNSURE = 0.35


def check_measure_ratio(ratio: Any) -> float:
    """The focus-measure check's ratio: 0 (off) or a number of at least 1."""
    if isinstance(ratio, bool) or not isinstance(ratio, (int, float, np.integer, np.floating)) \
            or not (ratio == 0 or 1 <= ratio < float("inf")):
        raise ValueError(f"measure_ratio must be 0 (no check) or a number of at least 1, "
                         f"got {ratio!r}")
    return float(ratio)


def check_g_side(side: Any) -> int:
    """G's largest shorter side in refined mode: 0 (always full size) or an int >=
    `MIN_WORKING_SIDE`."""
    if isinstance(side, bool) or not isinstance(side, (int, np.integer)) \
            or (side != 0 and side < MIN_WORKING_SIDE):
        raise ValueError(f"g_side must be 0 (G at full size) or an integer of at least "
                         f"{MIN_WORKING_SIDE} pixels, got {side!r}")
    return int(side)


def g_factor(height: int, width: int, g_side: int) -> int:
    """The box factor of G's pass in refined mode: 1 (G at full size) up to a shorter side of
    `FULL_SIZE_FRACTION` * `g_side`, else the smallest power of two k >= 2 with
    min(height, width) / k <= `g_side`; at most `MAX_G_FACTOR` (1 when `g_side` is 0)."""
    shorter = min(height, width)
    if not g_side or shorter * FULL_SIZE_FRACTION.denominator <= (
            g_side * FULL_SIZE_FRACTION.numerator):
        return 1
    k = 2
    while shorter > g_side * k and k < MAX_G_FACTOR:
        k *= 2
    return k


# ---------------------------------------------------------------- values and eq. 14


def unit_scale(dtype: np.dtype) -> float:
    """The factor that maps a source's values to [0, 1]: 1/255 (uint8), 1/65535 (uint16),
    1 (float, already in [0, 1])."""
    if dtype == np.uint8:
        return 1.0 / 255.0
    if dtype == np.uint16:
        return 1.0 / 65535.0
    return 1.0


def to_unit_rgb(pixels: np.ndarray) -> np.ndarray:
    """A source (H, W) or (H, W, 3), any supported dtype, as float32 RGB in [0, 1]."""
    x = pixels.astype(np.float32) * np.float32(unit_scale(pixels.dtype))
    return np.repeat(x[:, :, None], 3, axis=2) if x.ndim == 2 else x


_ROWS_PER_CHUNK = 512


def fuse_with_map(image_a: np.ndarray, image_b: np.ndarray, f_final: np.ndarray,
                  binary: bool = True) -> np.ndarray:
    """Eq. 14 on the original pixels, in row chunks to bound memory.

    A binary F_final selects pixels exactly; a soft one blends in float32 and rounds back
    to integer dtypes.
    """
    out = np.empty_like(image_a)
    for r0 in range(0, image_a.shape[0], _ROWS_PER_CHUNK):
        rows = slice(r0, r0 + _ROWS_PER_CHUNK)
        weight = f_final[rows]
        if image_a.ndim == 3:
            weight = weight[:, :, None]
        if binary:
            out[rows] = np.where(weight > 0.5, image_a[rows], image_b[rows])
            continue
        a = image_a[rows].astype(np.float32)
        b = image_b[rows].astype(np.float32)
        blend = b + weight * (a - b)
        if image_a.dtype.kind == "u":
            blend = np.clip(np.rint(blend), 0, np.iinfo(image_a.dtype).max)
        out[rows] = blend.astype(image_a.dtype)
    return out


# ------------------------------------------------------------------------------ precision

def cpu_flags(cpuinfo: str) -> frozenset[str]:
    """The instruction-set flags of the first processor of a Linux /proc/cpuinfo text (the
    x86 "flags : ..." line; none for other layouts)."""
    for line in cpuinfo.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() == "flags":
            return frozenset(value.lower().split())
    return frozenset()


def cpu_has_bf16(cpuinfo: str) -> bool:
    """Whether a /proc/cpuinfo text reports bfloat16 units (`BF16_CPU_FLAGS`)."""
    return bool(cpu_flags(cpuinfo) & BF16_CPU_FLAGS)


@functools.cache
def this_cpuinfo() -> str:
    """This machine's /proc/cpuinfo ("" where there is none: not Linux)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            return f.read()
    except OSError:
        return ""


def cpu_default_precision(cpuinfo: str | None = None) -> str:
    """The precision G and R run in on a CPU when none is asked for: "bfloat16" when
    `BF16_DEFAULT_ON_BF16_CPUS` is on and the CPU flags report bfloat16 units
    (`BF16_CPU_FLAGS`; `cpuinfo` is a /proc/cpuinfo text, default this machine's), else
    "float32". Other systems than Linux, and CPUs on which oneDNN only emulates bfloat16
    (slower than float32), get float32."""
    text = this_cpuinfo() if cpuinfo is None else cpuinfo
    return "bfloat16" if BF16_DEFAULT_ON_BF16_CPUS and cpu_has_bf16(text) else "float32"
