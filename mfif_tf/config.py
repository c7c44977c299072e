"""Typed configuration with the paper's defaults (sections 3.1, 3.2 and 4.1.2).

Variants are flagfiles in `configs/`; every hyperparameter lives here and nowhere else.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from data_pipeline import SYNTHESIS_METHODS


@dataclasses.dataclass
class ModelConfig:
    """Sizes of the generator G and the critic D (Fig. 3).

    Attributes:
      preset: "paper" or "compact"; `model_config(preset)` fills the sizes.
      stem_channels: channels of the 7x7 stem conv of one branch (64 in the paper).
      down_channels: channels of the stride-2 3x3 convs, one encoder stage each (two in the
        paper: 128, 256); the decoder's transposed convs mirror them, and G works on
        multiples of 2 ** len(down_channels) pixels (`Generator.size_multiple`).
      num_blocks: SE-ResNet blocks per branch (9).
      se_reduction: SE bottleneck ratio (16).
      use_se: False gives plain residual blocks (ablation "no SE").
      branches: "six" (one branch per colour channel of I_A and I_B) or "two" (grey input,
        ablation "two branches").
      critic_channels: channels of the first critic conv; doubles per layer up to
        `critic_max_channels`.
      critic_layers: number of conv layers of D (eight in the paper).
    """

    preset: str = "paper"
    stem_channels: int = 64
    down_channels: tuple[int, int] = (128, 256)
    num_blocks: int = 9
    se_reduction: int = 16
    use_se: bool = True
    branches: str = "six"
    critic_channels: int = 64
    critic_max_channels: int = 512
    critic_layers: int = 8

    def validate(self) -> None:
        if self.branches not in ("six", "two"):
            raise ValueError(f"branches must be 'six' or 'two', got {self.branches!r}")
        if self.num_blocks < 0 or self.stem_channels < 1 or min(self.down_channels) < 1:
            raise ValueError("model sizes must be positive")
        if self.down_channels[1] // self.se_reduction < 1:
            raise ValueError("se_reduction is larger than the block width")
        if self.critic_layers < 2:
            raise ValueError("critic_layers must be at least 2")


PRESETS: dict[str, dict[str, Any]] = {
    # Fig. 3 of the paper: 13,700,928 trainable parameters in G.
    "paper": dict(stem_channels=64, down_channels=(128, 256), num_blocks=9, se_reduction=16),
    # A quarter of the widths and six blocks: 405 against 8,979 GFLOP per megapixel for
    # "paper" (docs/benchmarks.md, "Arithmetic"; measured speed-ups in MODEL_CARD.md).
    "compact": dict(stem_channels=16, down_channels=(32, 64), num_blocks=6, se_reduction=8,
                    critic_channels=32, critic_max_channels=256),
}


def model_config(preset: str = "paper", **overrides: Any) -> ModelConfig:
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {sorted(PRESETS)}")
    values = dict(PRESETS[preset])
    values.update(overrides)
    cfg = ModelConfig(preset=preset, **values)
    cfg.validate()
    return cfg


@dataclasses.dataclass
class LossConfig:
    """Eqs. 1-6. `gan` is "wgan_gp" (the paper) or "lsgan" (ablation "LS");
    `reconstruction` is "l1" (eq. 4) or "bce" (ablation "BCE"); lambda_gp = 0 is "no gp"."""

    gan: str = "wgan_gp"
    reconstruction: str = "l1"
    lambda_gp: float = 10.0
    lambda_rec: float = 10.0
    lambda_adv: float = 1.0

    def validate(self) -> None:
        if self.gan not in ("wgan_gp", "lsgan"):
            raise ValueError(f"gan must be 'wgan_gp' or 'lsgan', got {self.gan!r}")
        if self.reconstruction not in ("l1", "bce"):
            raise ValueError(f"reconstruction must be 'l1' or 'bce', got {self.reconstruction!r}")
        if self.lambda_gp < 0 or self.lambda_rec < 0 or self.lambda_adv < 0:
            raise ValueError("loss weights must be non-negative")


@dataclasses.dataclass
class OptimConfig:
    """Section 4.1.2: Adam(1e-4, 0.5, 0.999) for both nets, linear decay, 5 critic steps per
    generator step. The learning rates stay constant for the first `1 - decay_fraction` of
    the steps and fall linearly to zero over the rest."""

    learning_rate: float = 1e-4
    beta_1: float = 0.5
    beta_2: float = 0.999
    decay_fraction: float = 0.5
    warmup_decay_fraction: float = 0.0  # the same decay over the supervised warm-up
    critic_steps: int = 5

    def validate(self) -> None:
        if self.learning_rate <= 0:
            raise ValueError("learning_rate must be positive")
        if not 0.0 <= self.decay_fraction <= 1.0:
            raise ValueError("decay_fraction must be in [0, 1]")
        if not 0.0 <= self.warmup_decay_fraction <= 1.0:
            raise ValueError("warmup_decay_fraction must be in [0, 1]")
        if self.critic_steps < 1:
            raise ValueError("critic_steps must be at least 1")


@dataclasses.dataclass
class DataConfig:
    """Training data (section 4.1.1); passed to `data_pipeline.make_training_dataset`."""

    source: str = "embedded"
    data_dir: str = ""
    extra_dirs: tuple[str, ...] = ()
    tfds_data_dir: str = ""
    image_size: int = 256
    crop: str = "center"
    center_crop_size: int = 178
    resize_shorter: int = 288
    synthesis: str = "alpha_matte"
    sigma: float = 1.0
    sigma_range: tuple[float, float] | None = None
    flip: bool = True
    swap_sources: bool = False  # swap I_A and I_B (and F -> 1 - F) for half the samples
    shuffle_buffer: int = 256

    def validate(self) -> None:
        if self.source not in ("embedded", "folder", "voc", "plain", "tfds"):
            raise ValueError(f"unknown data source {self.source!r}")
        if self.source in ("folder", "voc", "plain") and not self.data_dir:
            raise ValueError(f"data source {self.source!r} needs --data_dir")
        if self.image_size <= 0 or self.image_size % 4:
            raise ValueError(f"image_size must be a positive multiple of 4, got {self.image_size}")
        if self.synthesis not in SYNTHESIS_METHODS:
            raise ValueError(f"unknown synthesis {self.synthesis!r}")


@dataclasses.dataclass
class TrainConfig:
    """Everything one training run needs; written to `<workdir>/config.json` at start."""

    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    loss: LossConfig = dataclasses.field(default_factory=LossConfig)
    optim: OptimConfig = dataclasses.field(default_factory=OptimConfig)
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    batch_size: int = 1
    num_steps: int = 200_000
    warmup_steps: int = 0  # supervised L1-only generator steps before the adversarial phase
    seed: int = 0
    mixed_precision: str = "none"  # "none" | "float16" | "bfloat16"
    jit_compile: bool = False
    distribution: str = "auto"  # "auto" | "default" | "mirrored"
    log_every: int = 50
    image_every: int = 1000
    checkpoint_every: int = 500
    keep_checkpoints: int = 3
    init_checkpoint: str = ""

    def validate(self) -> None:
        self.model.validate()
        self.loss.validate()
        self.optim.validate()
        self.data.validate()
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {self.batch_size}")
        if self.num_steps < 0:
            raise ValueError(f"num_steps must be non-negative, got {self.num_steps}")
        if self.warmup_steps < 0:
            raise ValueError(f"warmup_steps must be non-negative, got {self.warmup_steps}")
        if self.mixed_precision not in ("none", "float16", "bfloat16"):
            raise ValueError(f"mixed_precision must be none, float16 or bfloat16, got {self.mixed_precision!r}")
        if self.distribution not in ("auto", "default", "mirrored"):
            raise ValueError(f"unknown distribution {self.distribution!r}")
        for name in ("log_every", "image_every", "checkpoint_every", "keep_checkpoints"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)


def model_config_from_dict(values: dict[str, Any]) -> ModelConfig:
    values = dict(values)
    values["down_channels"] = tuple(values["down_channels"])
    cfg = ModelConfig(**values)
    cfg.validate()
    return cfg
