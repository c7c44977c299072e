"""The fusion methods that the fusion, whole-process, stack and quality sections compare,
and where their weights come from (no TensorFlow here: the suite process stays light).

  refined           the default `fuse_arrays` call (`mode="refined"`) and the reference of
                    the tables: G's full-resolution pass (tiled where the image is large),
                    then the refinement head R redraws the map's outline in the band where
                    G's map is uncertain (`mfif_tf.inference`); packaged G and R unless
                    --model / --refiner; in the machine's default precision (bfloat16 on
                    CPUs with bfloat16 units, else float32).
  refined_float32   refined in float32 whatever the CPU (the default before bfloat16 became
                    the default on CPUs with bfloat16 units).
  refined_unchecked refined without the focus-measure check of G's outline
                    (`measure_ratio=0`, the default before the check).
  refined_sequential  refined with the frames of a stack fused in input order
                    (`stack_order="sequential"`, the default before bisect order); stack
                    section only (a pair is the same in either order).
  coarse_to_fine    `mode="coarse_to_fine"`: G on the sources area-downscaled to a shorter
                    side of `working_side` pixels, then R redraws the map's outline octave by
                    octave up to full resolution; the default before refined.
  paper             `mode="paper"`: the paper's single full-resolution pass of G (tiled
                    where the image is large), without R.
  paper_two_scales  `mode="paper", scales=(1, 0.5)`: the mean of a full- and a
                    half-resolution pass, the default before coarse-to-fine.
  refined_six_branch  refined with the six-branch G (`mfif_tf/pretrained/six_branch`, the
                    default G before the two-branch one distilled from it) and the packaged
                    R: the previous default, run beside the present one.
  refined_small     refined with the small G (`mfif_tf/pretrained/small`, `--model=small`:
                    a quarter of the packaged G's channels, distilled from it) and the
                    packaged R.
  classical         `mfif_tf.classical.fuse_classical` (sum-modified-Laplacian + SRR + eq. 14).
  enfuse            Hugin's enfuse with focus-stacking options (`benchmarks.enfuse`).
"""

from __future__ import annotations

import hashlib
import os
from typing import Any

from mfif_tf.common import (COARSE_REFINER_KEY, DEFAULT_G_SIDE, GENERATOR_WEIGHTS_FILE,
                            PACKAGED_MODEL_DIR, PACKAGED_MODELS, REFINER_WEIGHTS_FILE,
                            cpu_default_precision, find_coarse_generator_dir, find_refiner_dir)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGED_DIR = PACKAGED_MODEL_DIR
REFINER_WEIGHTS = REFINER_WEIGHTS_FILE

METHODS = ("refined", "refined_g1024", "refined_float32", "refined_unchecked",
           "refined_sequential", "coarse_to_fine", "paper", "paper_two_scales",
           "refined_six_branch", "refined_small",
           "classical", "enfuse")
# Methods that differ from another only on stacks: the stack section runs them, the pair
# sections leave them out.
STACK_ONLY_METHODS = ("refined_sequential",)
PAIR_METHODS = tuple(m for m in METHODS if m not in STACK_ONLY_METHODS)
REFERENCE = "refined"  # ratios are given to this row and to enfuse's
# Modes in which the refinement head R runs (mfif_tf.inference.REFINED_MODES).
REFINED_MODES = ("refined", "coarse_to_fine")
# The keyword arguments of `fuse_arrays` beyond the sources and the models. None: not passed
# (the function's default); a precision of None is the machine's default
# (`common.cpu_default_precision`, resolved when the suite plans a row). refined and
# coarse_to_fine add the refiner; coarse_to_fine also working_side (when set).
MODEL_METHODS: dict[str, dict[str, Any]] = {
    "refined": {"mode": "refined", "scales": None, "precision": None},
    "refined_g1024": {"mode": "refined", "scales": None, "precision": None, "g_side": 1024},
    "refined_float32": {"mode": "refined", "scales": None, "precision": "float32"},
    "refined_unchecked": {"mode": "refined", "scales": None, "precision": None,
                          "measure_ratio": 0.0},
    "refined_sequential": {"mode": "refined", "scales": None, "precision": None,
                           "stack_order": "sequential"},
    "coarse_to_fine": {"mode": "coarse_to_fine", "scales": None, "precision": None},
    "paper": {"mode": "paper", "scales": None, "precision": None},
    "paper_two_scales": {"mode": "paper", "scales": [1.0, 0.5], "precision": None},
    "refined_six_branch": {"mode": "refined", "scales": None, "precision": None},
    "refined_small": {"mode": "refined", "scales": None, "precision": None},
}
# Methods that run a packaged G of their own whatever --model says.
OWN_GENERATORS = {"refined_six_branch": PACKAGED_MODELS["six_branch"],
                  "refined_small": PACKAGED_MODELS["small"]}
LABELS = {
    "refined": "refined (default: G at full size up to a shorter side of 480, on box means "
               "above; R redraws the outline)",
    "coarse_to_fine": "coarse_to_fine (G at the working side, R to full size)",
    "paper": "paper (mode paper, one full-resolution pass)",
    "paper_two_scales": "paper_two_scales (mode paper, scales 1 + 1/2: the default before "
                        "coarse_to_fine)",
    "refined_six_branch": "refined_six_branch (the previous default: six-branch G, same R)",
    "refined_small": "refined_small (--model=small: the small G, same R)",
    "refined_g1024": "refined_g1024 (refined with --g_side=1024: G at full size up to a "
                     "shorter side of 768; up to 1024, the default before 640)",
    "refined_float32": "refined_float32 (refined in float32 whatever the CPU)",
    "refined_unchecked": "refined_unchecked (refined without the focus-measure check of "
                         "G's outline)",
    "refined_sequential": "refined_sequential (refined, stack frames fused in input order: "
                          "the default before bisect order)",
    "classical": "classical (sum-modified-Laplacian + SRR + eq. 14)",
    "enfuse": "enfuse (focus-stacking options)",
}
# Whole-process section: the command-line tools as a user runs them (`python -m
# mfif_tf.fuse` in its default mode, refined, with its default engine, which is LiteRT for
# the packaged model, with --engine=tensorflow, and with --model=small, LiteRT too).
PROCESS_METHODS = ("refined", "refined_tensorflow", "refined_small", "enfuse")
# Process-only methods: (the model method they run, the --engine they pass).
PROCESS_VARIANTS = {"refined_tensorflow": ("refined", "tensorflow")}
LABELS["refined_tensorflow"] = "refined, --engine=tensorflow (TensorFlow start-up included)"


def method_precision(method: str) -> str | None:
    """What G and R of a model method compute in on this machine (None: not a model)."""
    if method not in MODEL_METHODS:
        return None
    return MODEL_METHODS[method]["precision"] or cpu_default_precision()


def method_model(method: str, model: str) -> str:
    """The G directory a method runs: its own packaged one, else --model ("" = packaged)."""
    return OWN_GENERATORS.get(method, model)


def uses_model(method: str) -> bool:
    return method in MODEL_METHODS


def is_paper_mode(method: str) -> bool:
    return MODEL_METHODS.get(method, {}).get("mode") == "paper"


def full_resolution_g(method: str) -> bool:
    """G runs at the sources' full resolution at every size (mode paper; refined runs it
    on sources box-averaged to a shorter side of at most `DEFAULT_G_SIDE`, by at most 4):
    minutes, tiled, on the largest sizes."""
    return MODEL_METHODS.get(method, {}).get("mode") == "paper"


def uses_refiner(method: str) -> bool:
    """The method runs the refinement head R (modes refined and coarse_to_fine)."""
    return MODEL_METHODS.get(method, {}).get("mode") in REFINED_MODES


def file_hash(path: str) -> str | None:
    """The first 12 hex digits of a file's sha256 (None when it does not exist)."""
    if not os.path.isfile(path):
        return None
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()[:12]


def generator_dir(model: str) -> str | None:
    """The directory G is loaded from: --model, else the packaged model (None if absent)."""
    if model:
        return model
    return PACKAGED_DIR if os.path.isfile(os.path.join(PACKAGED_DIR, GENERATOR_WEIGHTS_FILE)) \
        else None


def refiner_dir(model: str, refiner: str, mode: str | None = None) -> str | None:
    """The directory R of `mode` is loaded from (`mfif_tf.common.find_refiner_dir`, as
    `mfif_tf.fusion.resolve_refiner` searches): --refiner, else beside --model, else the
    packaged one. None when there is none."""
    return find_refiner_dir(refiner or None, model or None, mode)


def weights_signature(method: str, model: str, refiner: str) -> dict[str, Any]:
    """What identifies the weights a row was measured with: hashes of G's (and for refined
    and coarse_to_fine R's) weights files; a training work dir by its path. A results row
    whose signature differs is measured again."""
    if not uses_model(method):
        return {}
    g_dir = generator_dir(model)
    signature: dict[str, Any] = {"generator": None}
    if g_dir:
        signature["generator"] = (file_hash(os.path.join(g_dir, GENERATOR_WEIGHTS_FILE))
                                  or os.path.realpath(g_dir))
    if uses_refiner(method):
        r_dir = refiner_dir(model, refiner, MODEL_METHODS[method]["mode"])
        signature["refiner"] = r_dir and file_hash(os.path.join(r_dir, REFINER_WEIGHTS))
    if MODEL_METHODS[method]["mode"] == "refined":
        # G's size and the R that follows G below full size (`fusion.fuse_stack`'s choice).
        signature["g_side"] = MODEL_METHODS[method].get("g_side") or DEFAULT_G_SIDE
        if not refiner:
            c_dir = refiner_dir(model, None, COARSE_REFINER_KEY)
            signature["coarse_refiner"] = c_dir and file_hash(
                os.path.join(c_dir, REFINER_WEIGHTS))
        cg_dir = find_coarse_generator_dir(model or None)
        if cg_dir:  # a G of its own below full size (absent: G's hash above serves)
            signature["coarse_generator"] = file_hash(os.path.join(cg_dir, GENERATOR_WEIGHTS_FILE))
    return signature
