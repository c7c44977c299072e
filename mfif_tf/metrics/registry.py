"""The one table of metrics: name, the inputs it reads, how its best value is picked.

Every list of names (``METRIC_NAMES``, ``REFERENCE_METRIC_NAMES``,
``FOCUS_MAP_METRIC_NAMES``, ``ALL_METRIC_NAMES``), the best rules (``BEST_RULE``,
``HIGHER_IS_BETTER``), the name checks and the computation in :func:`compute_all`,
:func:`compute` and :func:`focus_map_metrics` are read from :data:`METRICS`. Adding a metric
is one :class:`Metric` entry there (plus its core function in a family module).

Views (what a metric's function receives through :class:`Inputs`):
  "layout"     ``inputs.layout``: (A, B, F) as the "layout" metrics read them (H x 3W side by
               side under the "paper" convention, the luminance under "luminance");
               ``inputs.pages`` is the number of planes side by side.
  "gray"       ``inputs.gray``: (A, B, F) rgb2gray luminance, not rounded.
  "fused"      ``inputs.fused``: F alone in the layout view (A and B not needed).
  "reference"  ``inputs.reference``: (ground truth, F), validated, as given (H x W [x 3]).
  "focus_map"  ``inputs.maps``: (F_final, true map), both binarised.

Best rules: "max" (higher is better), "min" (lower is better), "zero" (closest to 0 is
best: SF, a signed relative error that is negative in practice, where "closest to 0" and
the paper's "larger is better" agree).

This module does not import TensorFlow.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Sequence

import numpy as np

from mfif_tf.metrics import _common, boundary, enhancement, features, information, perceptual
from mfif_tf.metrics import reference as reference_lib
from mfif_tf.metrics._common import MetricInputError

VIEWS = ("layout", "gray", "fused", "reference", "focus_map")
BEST_RULES = ("max", "min", "zero")
# Which group a view belongs to: Table 1 metrics need the sources and the fused image;
# reference metrics a ground truth; focus-map metrics a focus map and a true map.
_GROUP_OF_VIEW = {"layout": "fusion", "gray": "fusion", "fused": "fusion",
                  "reference": "reference", "focus_map": "focus_map"}


class Inputs:
    """The images a metric can read, validated and converted once, on first use.

    Args:
      image_a, image_b, fused: the sources I_A, I_B and the fused image.
      convention: "paper" or "luminance" (see the package docstring).
      ground_truth: an all-in-focus reference, for the "reference" view.
      focus_map, true_map: F_final and the true focus map, for the "focus_map" view.
    """

    def __init__(self, image_a: np.ndarray | None = None, image_b: np.ndarray | None = None,
                 fused: np.ndarray | None = None, convention: str = "paper",
                 ground_truth: np.ndarray | None = None, focus_map: np.ndarray | None = None,
                 true_map: np.ndarray | None = None):
        _common.check_convention(convention)
        self.convention = convention
        self._image_a, self._image_b, self._fused = image_a, image_b, fused
        self._ground_truth = ground_truth
        self._focus_map, self._true_map = focus_map, true_map

    def _need(self, view: str, **given: np.ndarray | None) -> None:
        missing = [name for name, value in given.items() if value is None]
        if missing:
            raise MetricInputError(f"the {view!r} view needs {', '.join(missing)}")

    @functools.cached_property
    def prepared(self) -> _common.Prepared:
        self._need("layout", image_a=self._image_a, image_b=self._image_b, fused=self._fused)
        return _common.prepare(self._image_a, self._image_b, self._fused, self.convention)

    @property
    def layout(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return self.prepared.layout

    @property
    def pages(self) -> int:
        return self.prepared.pages

    @property
    def gray(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return self.prepared.gray

    @functools.cached_property
    def fused(self) -> np.ndarray:
        if self._image_a is not None or self._image_b is not None:
            return self.prepared.layout[2]
        self._need("fused", fused=self._fused)
        return _common.prepare_one(self._fused, "fused", self.convention)[0]

    @functools.cached_property
    def joint_tables(self) -> information.JointTables:
        """Histograms shared by MI, TE and NCIE (computed once)."""
        return information.joint_tables(*self.layout)

    @functools.cached_property
    def reference(self) -> tuple[np.ndarray, np.ndarray]:
        self._need("reference", ground_truth=self._ground_truth, fused=self._fused)
        return reference_lib.check_pair(self._ground_truth, self._fused)

    @functools.cached_property
    def maps(self) -> tuple[np.ndarray, np.ndarray]:
        self._need("focus_map", focus_map=self._focus_map, true_map=self._true_map)
        return boundary.check_maps(self._focus_map, self._true_map)


@dataclasses.dataclass(frozen=True)
class Metric:
    """One metric.

    Attributes:
      name: its name in tables, flags and result files.
      view: which inputs it reads (one of `VIEWS`).
      best: how the best of several values is picked (one of `BEST_RULES`).
      fn: `fn(inputs: Inputs) -> float`.
      summary: a few words for help texts.
    """

    name: str
    view: str
    best: str
    fn: Callable[[Inputs], float]
    summary: str = ""

    def __post_init__(self):
        if self.view not in VIEWS:
            raise ValueError(f"metric {self.name}: unknown view {self.view!r}; use one of {VIEWS}")
        if self.best not in BEST_RULES:
            raise ValueError(f"metric {self.name}: unknown best rule {self.best!r}; "
                             f"use one of {BEST_RULES}")

    @property
    def group(self) -> str:
        """"fusion" (Table 1), "reference" (needs a ground truth) or "focus_map"."""
        return _GROUP_OF_VIEW[self.view]

    @property
    def higher_is_better(self) -> bool:
        return self.best != "min"


def _ag(x: Inputs) -> float:
    return enhancement.ag_core(x.fused, uint8_arithmetic=x.convention == "paper")


# Table 1 order, then the reference metrics, then the focus-map metrics.
METRICS: tuple[Metric, ...] = (
    Metric("MI", "layout", "max", lambda x: information.mi_from_tables(x.joint_tables),
           "normalised mutual information"),
    Metric("TE", "layout", "max", lambda x: information.te_from_tables(x.joint_tables),
           "Tsallis entropy"),
    Metric("NCIE", "layout", "max", lambda x: information.ncie_from_tables(x.joint_tables),
           "nonlinear correlation information entropy"),
    Metric("Q_G", "gray", "max", lambda x: features.q_g_core(*x.gray),
           "gradient-based edge preservation"),
    Metric("Q_M", "layout", "max", lambda x: features.q_m_core(*x.layout),
           "multiscale Haar edge preservation"),
    Metric("SF", "layout", "zero", lambda x: features.sf_core(*x.layout, pages=x.pages),
           "ratio of spatial-frequency error"),
    Metric("Q_Y", "gray", "max", lambda x: perceptual.q_y_core(*x.gray),
           "Yang's SSIM-based metric"),
    Metric("Q_CB", "gray", "max", lambda x: perceptual.q_cb_core(*x.gray),
           "Chen-Blum perceptual metric"),
    Metric("LIF", "fused", "min", lambda x: enhancement.lif_core(x.fused),
           "linear index of fuzziness"),
    Metric("AG", "fused", "max", _ag, "average gradient"),
    Metric("MSD", "fused", "max", lambda x: enhancement.msd_core(x.fused),
           "mean square deviation"),
    Metric("GLD", "fused", "max", lambda x: enhancement.gld_core(x.fused),
           "gray level difference"),
    Metric("PSNR", "reference", "max",
           lambda x: reference_lib.psnr_core(*x.reference, x.convention),
           "peak signal-to-noise ratio against the ground truth (dB)"),
    Metric("SSIM", "reference", "max",
           lambda x: reference_lib.ssim_core(*x.reference, x.convention),
           "structural similarity against the ground truth"),
    Metric("BF1", "focus_map", "max",
           lambda x: boundary.boundary_f_score(*x.maps, boundary.TOLERANCES["BF1"]),
           "boundary F-score at 1 pixel"),
    Metric("BF3", "focus_map", "max",
           lambda x: boundary.boundary_f_score(*x.maps, boundary.TOLERANCES["BF3"]),
           "boundary F-score at 3 pixels"),
    Metric("MAP_ACC", "focus_map", "max", lambda x: boundary.map_accuracy(*x.maps),
           "pixel accuracy of F_final"),
)


def _index(metrics: Sequence[Metric]) -> dict[str, Metric]:
    table: dict[str, Metric] = {}
    for metric in metrics:
        if metric.name in table:
            raise ValueError(f"metric {metric.name} is registered twice")
        table[metric.name] = metric
    return table


REGISTRY: dict[str, Metric] = _index(METRICS)


def names(group: str | None = None) -> tuple[str, ...]:
    """Registered names in table order, all or of one group ("fusion", "reference",
    "focus_map")."""
    return tuple(m.name for m in METRICS if group is None or m.group == group)


METRIC_NAMES = names("fusion")
REFERENCE_METRIC_NAMES = names("reference")
FOCUS_MAP_METRIC_NAMES = names("focus_map")
ALL_METRIC_NAMES = names()
BEST_RULE = {m.name: m.best for m in METRICS}
HIGHER_IS_BETTER = {m.name: m.higher_is_better for m in METRICS}


def get(name: str) -> Metric:
    """The registered metric `name`; raises MetricInputError naming the known ones."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise MetricInputError(
            f"unknown metric {name!r}; known: {', '.join(ALL_METRIC_NAMES)}") from None


def check_names(wanted: Sequence[str], groups: Sequence[str], what: str = "metric") -> None:
    """Raises MetricInputError unless every name is registered in one of `groups`."""
    known = tuple(m.name for m in METRICS if m.group in groups)
    unknown = [name for name in wanted if name not in known]
    if unknown:
        raise MetricInputError(f"unknown {what}(s) {unknown}; known: {known}")


def compute_all(
    image_a: np.ndarray,
    image_b: np.ndarray,
    fused: np.ndarray,
    convention: str = "paper",
    ground_truth: np.ndarray | None = None,
    metrics: Sequence[str] | None = None,
) -> dict[str, float]:
    """All metrics of Table 1 (and PSNR/SSIM when ``ground_truth`` is given).

    Args:
      image_a, image_b: the sources I_A and I_B.
      fused: the fused image I_fused, same shape as the sources.
      convention: "paper" (default, comparable with Table 1) or "luminance".
      ground_truth: optional all-in-focus reference of the same shape.
      metrics: optional subset of names (default: all that apply); reference metrics are
        skipped without a ground truth.

    Returns:
      {name: value} in Table 1 order, then PSNR and SSIM.
    """
    inputs = Inputs(image_a, image_b, fused, convention, ground_truth=ground_truth)
    _ = inputs.prepared  # validates the three images before any metric runs
    groups = ("fusion", "reference") if ground_truth is not None else ("fusion",)
    if metrics is not None:
        check_names(metrics, ("fusion", "reference"))
    wanted = [m for m in METRICS if m.group in groups
              and (metrics is None or m.name in metrics)]
    if ground_truth is not None:
        _ = inputs.reference  # validates the ground truth
    return {m.name: m.fn(inputs) for m in wanted}


def focus_map_metrics(focus_map: np.ndarray, true_map: np.ndarray,
                      metrics: Sequence[str] | None = None) -> dict[str, float]:
    """BF1, BF3 and MAP_ACC (or the subset `metrics`) of F_final against the true map.

    Args:
      focus_map: F_final (H, W), binary or soft (binarised at 0.5; 127.5 on the 0..255 scale).
      true_map: the true focus map (H, W), 1 or 255 where I_A is in focus.
      metrics: optional subset of `FOCUS_MAP_METRIC_NAMES`.
    """
    if metrics is not None:
        check_names(metrics, ("focus_map",), "focus map metric")
    inputs = Inputs(focus_map=focus_map, true_map=true_map)
    _ = inputs.maps  # validates both maps
    return {m.name: m.fn(inputs) for m in METRICS
            if m.group == "focus_map" and (metrics is None or m.name in metrics)}


def compute(name: str, image_a: np.ndarray | None = None, image_b: np.ndarray | None = None,
            fused: np.ndarray | None = None, *, convention: str = "paper",
            ground_truth: np.ndarray | None = None, focus_map: np.ndarray | None = None,
            true_map: np.ndarray | None = None) -> float:
    """One registered metric by name, given the inputs its view reads.

    ``compute("Q_G", a, b, f)``, ``compute("LIF", fused=f)``,
    ``compute("PSNR", fused=f, ground_truth=gt)``, ``compute("BF1", focus_map=m, true_map=t)``.
    """
    metric = get(name)
    return metric.fn(Inputs(image_a, image_b, fused, convention, ground_truth=ground_truth,
                            focus_map=focus_map, true_map=true_map))
