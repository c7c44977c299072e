"""Objective fusion metrics of the paper's section 4.1.3 (Table 1), in NumPy/SciPy.

Symbols: I_A, I_B are the two sources (``image_a``, ``image_b``), I_fused the fused image
(``fused``), I_GT an optional ground truth (``ground_truth``). Images are H x W or
H x W x 3 arrays on the 0..255 scale (uint8 or float).

Twelve metrics, higher is better except LIF:
  information theory   MI, TE, NCIE          (``information``)
  image features       Q_G, Q_M, SF          (``features``)
  structure/perception Q_Y, Q_CB             (``perceptual``)
  edges and contrast   LIF, AG, MSD, GLD     (``enhancement``)
plus PSNR and SSIM against a ground truth (``reference``), and for a method's binary focus
map F_final against a true focus map: the boundary F-scores BF1, BF3 and the pixel accuracy
MAP_ACC (``boundary``).

Conventions (``convention=``):
  "paper"      as the paper's authors ran the MATLAB toolbox of Liu et al. on colour
               arrays: MI, TE, NCIE, Q_M, SF, LIF, AG, MSD and GLD see the colour image as
               one H x 3W grey matrix (R, G, B side by side); Q_G, Q_Y and Q_CB see the
               rgb2gray luminance (not rounded). Reproduces Table 1(a).
  "luminance"  every metric on the rgb2gray luminance, AG in plain floating point.
For grey inputs both conventions agree except for AG's arithmetic.

This package does not import TensorFlow.
"""

from __future__ import annotations

import numpy as np

from mfif_tf.metrics import (_common, boundary, enhancement, features, information, perceptual,
                             reference)
from mfif_tf.metrics._common import CONVENTIONS, MetricInputError, rgb2gray, side_by_side
from mfif_tf.metrics.boundary import (FOCUS_MAP_METRIC_NAMES, boundary_f1, boundary_f3,
                                      focus_map_metrics, map_acc)
from mfif_tf.metrics.enhancement import average_gradient, gld, lif, msd
from mfif_tf.metrics.features import q_g, q_m, spatial_frequency
from mfif_tf.metrics.information import mutual_information, ncie, tsallis_entropy
from mfif_tf.metrics.perceptual import q_cb, q_y
from mfif_tf.metrics.reference import psnr, ssim

# Table 1 order.
METRIC_NAMES = ("MI", "TE", "NCIE", "Q_G", "Q_M", "SF", "Q_Y", "Q_CB", "LIF", "AG", "MSD", "GLD")
REFERENCE_METRIC_NAMES = ("PSNR", "SSIM")
# FOCUS_MAP_METRIC_NAMES = ("BF1", "BF3", "MAP_ACC"): F_final against a true focus map.
ALL_METRIC_NAMES = METRIC_NAMES + REFERENCE_METRIC_NAMES + FOCUS_MAP_METRIC_NAMES
HIGHER_IS_BETTER = {name: name != "LIF" for name in ALL_METRIC_NAMES}
# How the best of several values is picked: SF is a signed relative error (0 = the fused
# image has the sources' spatial frequency); it is negative in practice, where "closest to 0"
# and the paper's "larger is better" agree.
BEST_RULE = {
    name: "min" if name == "LIF" else "zero" if name == "SF" else "max"
    for name in ALL_METRIC_NAMES
}

__all__ = [
    "ALL_METRIC_NAMES",
    "BEST_RULE",
    "CONVENTIONS",
    "FOCUS_MAP_METRIC_NAMES",
    "HIGHER_IS_BETTER",
    "METRIC_NAMES",
    "MetricInputError",
    "REFERENCE_METRIC_NAMES",
    "average_gradient",
    "boundary_f1",
    "boundary_f3",
    "compute_all",
    "focus_map_metrics",
    "gld",
    "lif",
    "map_acc",
    "msd",
    "mutual_information",
    "ncie",
    "psnr",
    "q_cb",
    "q_g",
    "q_m",
    "q_y",
    "rgb2gray",
    "side_by_side",
    "spatial_frequency",
    "ssim",
    "tsallis_entropy",
]


def compute_all(
    image_a: np.ndarray,
    image_b: np.ndarray,
    fused: np.ndarray,
    convention: str = "paper",
    ground_truth: np.ndarray | None = None,
    metrics: tuple[str, ...] | None = None,
) -> dict[str, float]:
    """All metrics of Table 1 (and PSNR/SSIM when ``ground_truth`` is given).

    Args:
      image_a, image_b: the sources I_A and I_B.
      fused: the fused image I_fused, same shape as the sources.
      convention: "paper" (default, comparable with Table 1) or "luminance".
      ground_truth: optional all-in-focus reference of the same shape.
      metrics: optional subset of names (default: all that apply).

    Returns:
      {name: value} in Table 1 order, then PSNR and SSIM.
    """
    prep = _common.prepare(image_a, image_b, fused, convention)
    wanted = METRIC_NAMES + (REFERENCE_METRIC_NAMES if ground_truth is not None else ())
    if metrics is not None:
        unknown = [m for m in metrics if m not in METRIC_NAMES + REFERENCE_METRIC_NAMES]
        if unknown:
            raise MetricInputError(f"unknown metric(s) {unknown}; known: {METRIC_NAMES}")
        wanted = tuple(m for m in wanted if m in metrics)
    a, b, f = prep.layout
    ga, gb, gf = prep.gray
    tables: list[information.JointTables] = []

    def joint() -> information.JointTables:
        if not tables:
            tables.append(information.joint_tables(a, b, f))
        return tables[0]

    fns = {
        "MI": lambda: information.mi_from_tables(joint()),
        "TE": lambda: information.te_from_tables(joint()),
        "NCIE": lambda: information.ncie_from_tables(joint()),
        "Q_G": lambda: features.q_g_core(ga, gb, gf),
        "Q_M": lambda: features.q_m_core(a, b, f),
        "SF": lambda: features.sf_core(a, b, f, pages=prep.pages),
        "Q_Y": lambda: perceptual.q_y_core(ga, gb, gf),
        "Q_CB": lambda: perceptual.q_cb_core(ga, gb, gf),
        "LIF": lambda: enhancement.lif_core(f),
        "AG": lambda: enhancement.ag_core(f, uint8_arithmetic=convention == "paper"),
        "MSD": lambda: enhancement.msd_core(f),
        "GLD": lambda: enhancement.gld_core(f),
    }
    if ground_truth is not None:
        ref, img = reference.check_pair(ground_truth, fused)
        fns["PSNR"] = lambda: reference.psnr_core(ref, img, convention)
        fns["SSIM"] = lambda: reference.ssim_core(ref, img, convention)
    return {name: fns[name]() for name in wanted}
