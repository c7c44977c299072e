"""enfuse (Debian package `enfuse`, from Hugin) as a focus-stacking baseline.

Options: `--exposure-weight=0 --saturation-weight=0 --contrast-weight=1 --hard-mask`, the
usual focus-stacking setting (local contrast picks the pixel, hard masks, no averaging at the
finest level). `--depth=8` keeps 8-bit output. enfuse works on files, so its time is the
whole process: start-up, reading the (uncompressed TIFF) sources, Laplacian-pyramid blending
and writing the LZW-compressed TIFF result. Its CPU time and peak memory are the child's
(`os.wait4` resource usage).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
from PIL import Image

from benchmarks.timing import ProcessError, run_timed

FOCUS_STACKING_OPTIONS = ("--exposure-weight=0", "--saturation-weight=0", "--contrast-weight=1",
                          "--hard-mask")


class EnfuseError(RuntimeError):
    pass


def enfuse_command(binary: str, inputs: Sequence[str], output: str) -> list[str]:
    """The focus-stacking command line (8-bit output to `output`, TIFF or PNG by its
    extension)."""
    return [binary, *FOCUS_STACKING_OPTIONS, "--depth=8", f"--output={output}", *inputs]


def enfuse_env(threads: int | None = None) -> dict[str, str]:
    env = dict(os.environ)
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    return env


def run_enfuse(binary: str, inputs: Sequence[str], output: str,
               threads: int | None = None) -> tuple[float, float, float]:
    """Runs enfuse on files; returns (wall seconds, CPU seconds (all threads), peak RSS of
    the process in MB)."""
    try:
        seconds, cpu_seconds, peak, _ = run_timed(enfuse_command(binary, inputs, output),
                                                  env=enfuse_env(threads), name="enfuse")
    except ProcessError as err:
        raise EnfuseError(str(err)) from None
    return seconds, cpu_seconds, peak


def read_result(path: str) -> np.ndarray:
    """enfuse's output as uint8 RGB (its alpha channel dropped)."""
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def write_sources(sources: Sequence[np.ndarray], directory: str) -> list[str]:
    """Uncompressed TIFF copies of uint8 RGB arrays, for enfuse to read."""
    import tifffile

    paths = []
    for k, pixels in enumerate(sources):
        path = os.path.join(directory, f"source_{k:03d}.tif")
        tifffile.imwrite(path, pixels, photometric="rgb" if pixels.ndim == 3 else None)
        paths.append(path)
    return paths
