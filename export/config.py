"""What an export writes, checked before TensorFlow loads: `ExportConfig` (the TF Serving
folder, `export_lib.export_model`) and `TFLiteConfig` (the TFLite models,
`tflite.export_tflite`). `python -m export.export` validates them first, so that a bad flag or
folder stops it with one line at once."""

from __future__ import annotations

import dataclasses
import os
import re

from data_pipeline import readers
from mfif_tf import common
from mfif_tf.scales import parse_scales

MODELS_CONFIG = "models.config"
TFLITE_DIR = "tflite"
_NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")

FULL_INTEGER = "int8_full"
QUANTIZATIONS = ("float32", "float16", "int8", FULL_INTEGER)
# What an export writes unless asked for more: full-integer quantisation needs representative
# data (`TFLiteConfig.representative_dir`), so it is never a default.
DEFAULT_QUANTIZATIONS = ("float32", "float16", "int8")
VARIANTS = ("dynamic", "fixed")
# int8_full: synthetic pairs to calibrate on (`tflite.representative_pairs`).
REPRESENTATIVE_PAIRS = 32


@dataclasses.dataclass
class TFLiteConfig:
    """What `export_tflite` writes.

    Attributes:
      fixed_size: side S of the fixed-size model (1 x S x S x 3).
      variants: subset of ("dynamic", "fixed").
      quantizations: subset of ("float32", "float16", "int8", "int8_full"); by default the
        first three. "int8_full" needs `representative_dir`.
      representative_dir: int8_full: a folder of images/ + masks/ (+ train.txt), as for
        training (`data_pipeline.readers.list_mask_folder`); the pairs to calibrate on are
        synthesised from its train split.
      representative_pairs: int8_full: how many pairs.
      min_size_fraction: N / (W * H) of SRR (0.001, section 3.3).
      scales: modes "refined" and "paper": G's map is the mean of its maps at these scales
        (`mfif_tf.scales`).
      mode: "refined", "paper" or "coarse_to_fine" (`mfif_tf.inference`).
      working_side: coarse-to-fine: shorter side of G's working resolution.
    """

    fixed_size: int = 512
    variants: tuple[str, ...] = VARIANTS
    quantizations: tuple[str, ...] = DEFAULT_QUANTIZATIONS
    representative_dir: str = ""
    representative_pairs: int = REPRESENTATIVE_PAIRS
    min_size_fraction: float = common.PAPER_MIN_SIZE_FRACTION
    scales: tuple[float, ...] | str = (1.0,)
    mode: str = common.DEFAULT_MODE
    working_side: int = common.DEFAULT_WORKING_SIDE

    def validate(self) -> None:
        try:
            self.scales = parse_scales(self.scales)
            common.check_mode(self.mode)
            common.check_working_side(self.working_side)
        except ValueError as err:
            raise ValueError(f"scales: {err}" if "scale" in str(err) else str(err)) from None
        if self.fixed_size < 2:
            raise ValueError(f"fixed_size must be at least 2, got {self.fixed_size}")
        for v in self.variants:
            if v not in VARIANTS:
                raise ValueError(f"unknown TFLite variant {v!r}; choose from {VARIANTS}")
        for q in self.quantizations:
            if q not in QUANTIZATIONS:
                raise ValueError(f"unknown quantization {q!r}; choose from {QUANTIZATIONS}")
        if not 0.0 <= self.min_size_fraction <= 1.0:
            raise ValueError(f"min_size_fraction must lie in [0, 1], got {self.min_size_fraction}")
        if FULL_INTEGER in self.quantizations:
            if self.representative_pairs < 1:
                raise ValueError(f"--tflite_representative_pairs must be at least 1, got "
                                 f"{self.representative_pairs}")
            check_representative_dir(self.representative_dir)


def check_representative_dir(path: str) -> int:
    """Raises ValueError (one line naming the problem) unless `path` is a mask folder with
    usable training examples; returns their number."""
    if not path:
        raise ValueError(
            f"--tflite_quantizations={FULL_INTEGER} needs --tflite_representative_dir: a folder "
            "of images/ + masks/ (+ train.txt), as for training, to synthesise the pairs that "
            "calibrate the int8 ranges")
    if not os.path.isdir(path):
        raise ValueError(f"--tflite_representative_dir: no such folder: {path}")
    try:
        good, skipped = readers.validate_examples(readers.list_mask_folder(path, "train"))
    except readers.DataError as err:
        raise ValueError(f"--tflite_representative_dir: {err}") from None
    if not good:
        raise ValueError(f"--tflite_representative_dir: no usable examples in {path} "
                         f"({len(skipped)} skipped, first: {skipped[0].path}: "
                         f"{skipped[0].reason})")
    return len(good)


@dataclasses.dataclass
class ExportConfig:
    """What `export_model` writes.

    Attributes:
      export_dir: root of the export (created if needed).
      model_name: TF Serving model name, the folder under `export_dir`.
      version: TF Serving version, the integer folder under the model folder.
      overwrite: replace existing version folders instead of refusing.
      min_size_fraction: N / (W * H) of SRR in the signatures without that input (0.001,
        section 3.3).
      scales: modes "refined" and "paper": G's map is the mean of its maps at these scales,
        in every graph (`mfif_tf.scales`; (1,) for the paper's single pass).
      mode: "refined" (G at full resolution, its outline redrawn by the refinement head R),
        "paper" (G alone) or "coarse_to_fine" (G at `working_side`, R to full resolution);
        `mfif_tf.inference`, in every graph.
      working_side: coarse-to-fine: shorter side of G's working resolution.
      precision: what G computes in, in the SavedModel: "float32" or "bfloat16" (Keras'
        mixed_bfloat16 policy: float32 weights, bfloat16 arithmetic; F_hat, R and SRR stay
        float32; `model_io.with_precision`). TFLite models are float32-based, so bfloat16
        does not go with `tflite`.
      tflite: also write the TFLite models.
      tflite_config: which TFLite models.
    """

    export_dir: str = ""
    model_name: str = "mfif"
    version: int = 1
    overwrite: bool = False
    min_size_fraction: float = common.PAPER_MIN_SIZE_FRACTION
    scales: tuple[float, ...] | str = (1.0,)
    mode: str = common.DEFAULT_MODE
    working_side: int = common.DEFAULT_WORKING_SIDE
    precision: str = "float32"
    tflite: bool = False
    tflite_config: TFLiteConfig = dataclasses.field(default_factory=TFLiteConfig)

    def validate(self) -> None:
        if not self.export_dir:
            raise ValueError("export_dir is required")
        if not _NAME_PATTERN.match(self.model_name):
            raise ValueError(f"model_name must be letters, digits, '_', '-' or '.', got "
                             f"{self.model_name!r}")
        if isinstance(self.version, bool) or not isinstance(self.version, int) or self.version < 1:
            raise ValueError(f"version must be a positive integer, got {self.version!r}")
        if not 0.0 <= self.min_size_fraction <= 1.0:
            raise ValueError(f"min_size_fraction must lie in [0, 1], got {self.min_size_fraction}")
        try:
            self.scales = parse_scales(self.scales)
        except ValueError as err:
            raise ValueError(f"scales: {err}") from None
        common.check_mode(self.mode)
        common.check_working_side(self.working_side)
        if self.mode == "coarse_to_fine" and self.scales != (1.0,):
            raise ValueError("scales apply to modes 'refined' and 'paper'")
        common.check_precision(self.precision)
        if self.tflite and self.precision != "float32":
            raise ValueError("--tflite needs --precision=float32 (TFLite has its own reduced "
                             "precisions: --tflite_quantizations float16, int8)")
        if self.tflite:
            self.tflite_config.validate()

    @property
    def saved_model_dir(self) -> str:
        return os.path.join(self.export_dir, self.model_name, str(self.version))

    @property
    def tflite_dir(self) -> str:
        return os.path.join(self.export_dir, TFLITE_DIR, self.model_name, str(self.version))


def check_targets(config: ExportConfig) -> None:
    """Raises FileExistsError when a version folder exists and `overwrite` is off."""
    targets = [config.saved_model_dir] + ([config.tflite_dir] if config.tflite else [])
    for target in targets:
        if os.path.isfile(target):
            raise FileExistsError(f"{target} is a file, not a version folder; remove it")
        if os.path.exists(target) and not config.overwrite:
            raise FileExistsError(
                f"{target} already exists; pass --overwrite to replace it or choose another "
                "--version")
