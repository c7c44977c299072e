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

``registry.METRICS`` is the one table of metrics (name, inputs read, best rule, function):
the name lists, ``BEST_RULE``, ``HIGHER_IS_BETTER``, the name checks and ``compute_all``,
``compute`` and ``focus_map_metrics`` all read it.

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

from mfif_tf.metrics import registry
from mfif_tf.metrics._common import CONVENTIONS, MetricInputError, rgb2gray, side_by_side
from mfif_tf.metrics.boundary import boundary_f1, boundary_f3, map_acc
from mfif_tf.metrics.enhancement import average_gradient, gld, lif, msd
from mfif_tf.metrics.features import q_g, q_m, spatial_frequency
from mfif_tf.metrics.information import mutual_information, ncie, tsallis_entropy
from mfif_tf.metrics.perceptual import q_cb, q_y
from mfif_tf.metrics.reference import psnr, ssim
# Everything below is read from the one table `registry.METRICS`.
from mfif_tf.metrics.registry import (ALL_METRIC_NAMES, BEST_RULE, FOCUS_MAP_METRIC_NAMES,
                                      HIGHER_IS_BETTER, METRIC_NAMES, METRICS,
                                      REFERENCE_METRIC_NAMES, REGISTRY, Metric, compute,
                                      compute_all, focus_map_metrics)

__all__ = [
    "ALL_METRIC_NAMES",
    "BEST_RULE",
    "CONVENTIONS",
    "FOCUS_MAP_METRIC_NAMES",
    "HIGHER_IS_BETTER",
    "METRICS",
    "METRIC_NAMES",
    "Metric",
    "MetricInputError",
    "REFERENCE_METRIC_NAMES",
    "REGISTRY",
    "average_gradient",
    "boundary_f1",
    "boundary_f3",
    "compute",
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
    "registry",
    "rgb2gray",
    "side_by_side",
    "spatial_frequency",
    "ssim",
    "tsallis_entropy",
]
