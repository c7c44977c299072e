"""Training data for MFIF-GAN (section 4.1.1): synthesis ops, readers, tf.data pipelines, tfds.

Modules: `synthesis` (eqs. 7-13 as TF ops), `readers` (file layouts, masks, test pairs),
`random_masks`, `embedded` (scikit-image photos), `pipeline` (`make_training_dataset`,
`make_eval_dataset`), `tfds` (the `mfif_alpha_matte` and `mfif_benchmark` builders).
Entry points: `python -m data_pipeline.preview`, `.benchmark`, `.blur_estimate`,
`.ground_truth` (validation sets with I and the true focus map), `data_pipeline.tfds.build`.
This package imports nothing else of the project.

`PipelineConfig`, the one definition of the training data's settings (defaults, help texts,
checks), lives here rather than in `pipeline`, so that flag and config checks need not import
TensorFlow (bad-flag errors stay one line and come before TensorFlow loads).
"""

from __future__ import annotations

import dataclasses
from typing import Any

__all__ = ["CROPS", "MIXED_SYNTHESIS", "SOURCES", "SYNTHESIS_METHODS", "PipelineConfig",
           "check_choices", "option"]

# Names of the synthesis models of `synthesis.synthesize_pair`.
SYNTHESIS_METHODS = ("alpha_matte", "alpha_matte_filled", "conventional")
# The training data's `synthesis` may also draw one of the two models per sample.
MIXED_SYNTHESIS = "mixed"
SOURCES = ("embedded", "folder", "voc", "plain", "tfds")
CROPS = ("center", "random")


def option(default: Any, help: str, **metadata: Any) -> Any:  # pylint: disable=redefined-builtin
    """A dataclass field with a default and a one-line description.

    Command lines define one flag per such field from it (`mfif_tf.config.flag_specs`).
    `metadata` may add `flag` (the flag's name, when it is not the field's), `choices` (the
    allowed values; `check_choices` enforces them) and `preset` (a network size that a preset
    fills; see `mfif_tf.config.PRESETS`).
    """
    return dataclasses.field(default=default, metadata={"help": help, **metadata})


def check_choices(config: Any) -> None:
    """Raises ValueError for a field of the dataclass `config` whose value is not one of the
    `choices` of its `option`."""
    for field in dataclasses.fields(config):
        choices = field.metadata.get("choices")
        value = getattr(config, field.name)
        if choices is not None and value not in choices:
            raise ValueError(f"{field.name} must be one of {', '.join(map(str, choices))}, got "
                             f"{value!r}")


@dataclasses.dataclass(frozen=True)
class PipelineConfig:
    """What training pairs are made of and how (section 4.1.1), checked on creation.

    `data_pipeline.pipeline.training_dataset(config, batch_size=..., seed=...)` reads it;
    `mfif_tf.config.TrainConfig.data` holds one, and the flags of `python -m mfif_tf.train`
    are made from its fields (their names, defaults and help texts). Which split, batch size,
    seed and whether to repeat are arguments of the dataset functions, not settings of the
    data. Lists given for the tuple fields (from JSON) become tuples; `None` for a folder
    becomes "" (none).
    """

    source: str = option(
        "embedded",
        "Training data: 'embedded' (photos inside scikit-image, random masks; nothing on disk), "
        "'folder' (images/ + masks/ + optional split files), 'voc' (PASCAL VOC 2012), 'plain' "
        "(a folder of images, random masks) or 'tfds' (the built tfds_name dataset).",
        flag="data_source", choices=SOURCES)
    data_dir: str = option(
        "", "Folder of a 'folder', 'voc' or 'plain' source (mask folder, VOC root, images).")
    extra_dirs: tuple[str, ...] = option(
        (), "More images/ + masks/ folders whose split joins the same dataset.",
        flag="extra_data_dirs")
    tfds_name: str = option(
        "mfif_alpha_matte",
        "tfds dataset of source 'tfds', optionally with config and version "
        "(mfif_alpha_matte/conventional:1.0.0); without a config, synthesis picks it.")
    tfds_data_dir: str = option(
        "", "tfds data folder of source 'tfds' (default: tfds's own, ~/tensorflow_datasets).")
    image_size: int = option(256, "Side S of the training images.")
    crop: str = option(
        "center",
        "'center': the paper's centre crop of center_crop_size, resized to S; 'random': the "
        "shorter side resized to resize_shorter, then a random S x S crop.", choices=CROPS)
    center_crop_size: int = option(178, "Centre crop before resizing (crop 'center').")
    resize_shorter: int = option(288, "Shorter side before the random crop (crop 'random').")
    synthesis: str = option(
        "alpha_matte",
        "Eqs. 10-11 (alpha-matte), eqs. 10-11 with the hidden background filled (no dark seam "
        "at the boundary), eqs. 12-13 ('no alpha' ablation), or 'mixed': eqs. 10-11 or "
        "12-13, drawn per sample with equal odds.",
        choices=SYNTHESIS_METHODS + (MIXED_SYNTHESIS,))
    sigma: float = option(
        1.0, "Gaussian blur sigma of the synthesis (eq. 9; the paper's data: 1, with MATLAB "
        "imgaussfilt).")
    sigma_range: tuple[float, float] | None = option(
        None, "lo,hi: draw sigma per sample from U[lo, hi] instead of using sigma.")
    pair_focus: tuple[float, float] | None = option(
        None, "lo,hi (0 < lo <= hi <= 1): in a share (pair_focus_share) of the samples I_B is "
        "focused between the layers, at t ~ U[lo, hi] of the way from the foreground (0) to the "
        "background (1): the foreground blurred with t sigma, the background with (1 - t) sigma "
        "(synthesis.focused_frame); F stays the mask. Not with synthesis alpha_matte_filled or "
        "source tfds.")
    pair_focus_share: float = option(
        0.5, "With pair_focus: the share of the samples whose I_B is focused between the layers.")
    flip: bool = option(True, "Random horizontal and vertical flips.")
    swap_sources: bool = option(
        False, "Swap I_A and I_B (and F with 1 - F) in a random half of the samples.")
    shuffle_buffer: int = option(
        256, "Shuffle buffer of source 'tfds' (file sources shuffle their whole list).")

    def __post_init__(self):
        if self.data_dir is None:
            object.__setattr__(self, "data_dir", "")
        if self.tfds_data_dir is None:
            object.__setattr__(self, "tfds_data_dir", "")
        object.__setattr__(self, "extra_dirs", tuple(self.extra_dirs))
        if self.sigma_range is not None:
            object.__setattr__(self, "sigma_range", tuple(float(s) for s in self.sigma_range))
        if self.pair_focus is not None:
            object.__setattr__(self, "pair_focus", tuple(float(t) for t in self.pair_focus))
        self.validate()

    def validate(self) -> None:
        check_choices(self)
        if self.source in ("folder", "voc", "plain") and not self.data_dir:
            raise ValueError(f"source {self.source!r} needs data_dir")
        for name in ("image_size", "center_crop_size", "resize_shorter", "shuffle_buffer"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.crop == "random" and self.image_size > self.resize_shorter:
            raise ValueError(
                f"random crop of image_size {self.image_size} needs resize_shorter >= it, got "
                f"{self.resize_shorter}")
        if not self.sigma > 0:
            raise ValueError(f"sigma must be > 0, got {self.sigma}")
        if self.sigma_range is not None and (
                len(self.sigma_range) != 2 or not 0 < self.sigma_range[0] <= self.sigma_range[1]):
            raise ValueError(f"sigma_range must be (lo, hi) with 0 < lo <= hi, got "
                             f"{self.sigma_range}")
        if self.pair_focus is not None:
            if len(self.pair_focus) != 2 or not 0 < self.pair_focus[0] <= self.pair_focus[1] <= 1:
                raise ValueError(f"pair_focus must be (lo, hi) with 0 < lo <= hi <= 1, got "
                                 f"{self.pair_focus}")
            if self.synthesis == "alpha_matte_filled":
                raise ValueError("pair_focus: synthesis alpha_matte_filled has no form with "
                                 "I_B focused between the layers; use alpha_matte, "
                                 "conventional or mixed")
            if self.source == "tfds":
                raise ValueError("pair_focus: source tfds holds pairs synthesised already; "
                                 "use a folder, voc, plain or embedded source")
        if not 0.0 <= self.pair_focus_share <= 1.0:
            raise ValueError(f"pair_focus_share must be in [0, 1], got {self.pair_focus_share}")
