"""Typed configuration with the paper's defaults (sections 3.1, 3.2 and 4.1).

Variants are flagfiles in `configs/`. Every setting of a training run is a field of one of the
dataclasses below or of `data_pipeline.PipelineConfig` (the training data), declared once with
its default and a one-line help (`data_pipeline.option`); `flag_specs` makes the flags of
`python -m mfif_tf.train` from those fields and `config_from_flags` turns their values back
into a `TrainConfig`. No TensorFlow here: bad settings fail before it loads.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from typing import Any, Mapping

from data_pipeline import PipelineConfig, check_choices, option

PRESETS: dict[str, dict[str, Any]] = {
    # Fig. 3 of the paper: 13,700,928 trainable parameters in G.
    "paper": dict(stem_channels=64, down_channels=(128, 256), num_blocks=9, se_reduction=16),
    # A quarter of the widths and six blocks: 405 against 8,979 GFLOP per megapixel for
    # "paper" (docs/benchmarks.md, "Arithmetic"; measured speed-ups in MODEL_CARD.md).
    "compact": dict(stem_channels=16, down_channels=(32, 64), num_blocks=6, se_reduction=8,
                    critic_channels=32, critic_max_channels=256),
}


@dataclasses.dataclass
class ModelConfig:
    """Sizes of the generator G and the critic D (Fig. 3).

    `model_config(preset, **overrides)` fills the sizes marked `preset=True` from
    `PRESETS[preset]` (the others keep the defaults below, which are the paper's). G works on
    multiples of 2 ** len(down_channels) pixels (`Generator.size_multiple`).
    """

    preset: str = option("paper", "Network size preset; fills the sizes G and D are built with.",
                         choices=tuple(sorted(PRESETS)))
    stem_channels: int = option(64, "Channels of the 7x7 stem conv of one branch (paper: 64).",
                                preset=True)
    down_channels: tuple[int, int] = option(
        (128, 256), "Channels of the two stride-2 3x3 convs, one encoder stage each (paper: "
        "128,256); the decoder's transposed convs mirror them.", preset=True)
    num_blocks: int = option(9, "SE-ResNet blocks per branch (paper: 9).", preset=True)
    se_reduction: int = option(16, "SE bottleneck ratio (paper: 16).", preset=True)
    use_se: bool = option(True, "SE blocks in the residual blocks (false: the 'no SE' ablation).")
    branches: str = option(
        "six", "'six': one encoder branch per colour channel of I_A and I_B; 'two': grey "
        "sources ('two branches' ablation).", choices=("six", "two"))
    critic_channels: int = option(
        64, "Channels of the first conv of D; they double per layer up to critic_max_channels.",
        preset=True)
    critic_max_channels: int = option(512, "Most channels of a conv of D.", preset=True)
    critic_layers: int = option(8, "Conv layers of D (paper: 8, section 3.1).", preset=True)

    def validate(self) -> None:
        check_choices(self)
        if self.num_blocks < 0 or self.stem_channels < 1 or min(self.down_channels) < 1:
            raise ValueError("model sizes must be positive")
        if self.down_channels[1] // self.se_reduction < 1:
            raise ValueError("se_reduction is larger than the block width")
        if self.critic_channels < 1 or self.critic_max_channels < 1:
            raise ValueError("critic sizes must be positive")
        if self.critic_layers < 2:
            raise ValueError("critic_layers must be at least 2")


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

    gan: str = option("wgan_gp", "Adversarial loss: eqs. 1-2 (WGAN-GP) or least squares ('LS').",
                      flag="gan_loss", choices=("wgan_gp", "lsgan"))
    reconstruction: str = option("l1", "Reconstruction loss: eq. 4 (l1) or BCE ('BCE').",
                                 choices=("l1", "bce"))
    lambda_gp: float = option(10.0, "Weight of the gradient penalty, eq. 5 (0: 'no gp').")
    lambda_rec: float = option(10.0, "Weight of the reconstruction loss, eq. 6.")
    lambda_adv: float = option(1.0, "Weight of G's adversarial loss, eq. 6 (1 in the paper).")

    def validate(self) -> None:
        check_choices(self)
        if self.lambda_gp < 0 or self.lambda_rec < 0 or self.lambda_adv < 0:
            raise ValueError("loss weights must be non-negative")


@dataclasses.dataclass
class OptimConfig:
    """Section 4.1.2: Adam(1e-4, 0.5, 0.999) for both nets, linear decay, 5 critic steps per
    generator step. The learning rates stay constant for the first `1 - decay_fraction` of
    the steps and fall linearly to zero over the rest."""

    learning_rate: float = option(1e-4, "Adam learning rate of G and D.")
    beta_1: float = option(0.5, "Adam beta_1.")
    beta_2: float = option(0.999, "Adam beta_2.")
    decay_fraction: float = option(
        0.5, "Fraction of the adversarial steps over which the learning rates fall linearly "
        "to zero.")
    warmup_decay_fraction: float = option(
        0.0, "The same decay over the supervised warm-up steps.")
    critic_steps: int = option(5, "Critic updates per generator update.")

    def validate(self) -> None:
        if self.learning_rate <= 0:
            raise ValueError("learning_rate must be positive")
        if not 0.0 <= self.decay_fraction <= 1.0:
            raise ValueError("decay_fraction must be in [0, 1]")
        if not 0.0 <= self.warmup_decay_fraction <= 1.0:
            raise ValueError("warmup_decay_fraction must be in [0, 1]")
        if self.critic_steps < 1:
            raise ValueError("critic_steps must be at least 1")


# The name of `TrainConfig.data`'s class in earlier versions; its fields are those of
# `PipelineConfig`, which adds tfds_name.
DataConfig = PipelineConfig


@dataclasses.dataclass
class TrainConfig:
    """Everything one training run needs; written to `<workdir>/config.json` at start.

    The batch size and the seed are the run's: the data pipeline reads `data` with them.
    """

    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    loss: LossConfig = dataclasses.field(default_factory=LossConfig)
    optim: OptimConfig = dataclasses.field(default_factory=OptimConfig)
    data: PipelineConfig = dataclasses.field(default_factory=PipelineConfig)
    batch_size: int = option(1, "Global batch size (the paper: 1).")
    num_steps: int = option(200_000, "Generator steps in total (warm-up included).")
    warmup_steps: int = option(
        0, "Supervised generator steps (eq. 4 alone) before the adversarial phase.")
    seed: int = option(0, "Seed of data order, synthesis and initialisation.")
    mixed_precision: str = option("none", "Mixed precision policy.",
                                  choices=("none", "float16", "bfloat16"))
    jit_compile: bool = option(False, "Compile the steps with XLA.")
    distribution: str = option(
        "auto", "auto: MirroredStrategy when several GPUs are visible; multi_worker: "
        "MultiWorkerMirroredStrategy over the cluster in the TF_CONFIG environment variable.",
        choices=("auto", "default", "mirrored", "multi_worker"))
    log_every: int = option(50, "Steps between progress lines and scalar summaries.")
    image_every: int = option(1000, "Steps between image summaries.")
    checkpoint_every: int = option(500, "Steps between checkpoints.")
    keep_checkpoints: int = option(3, "Checkpoints kept.")
    init_checkpoint: str = option(
        "", "What to start from when the work dir has no checkpoint: a training checkpoint "
        "(G, D and the optimisers' state), or a model directory (model.json + "
        "generator.weights.h5; 'default' is the packaged model) whose G is fine-tuned, "
        "with D and the optimisers new. A six-branch model may start a two-branch run (the "
        "branches share one set of weights).")
    teacher: str = option(
        "", "Distillation: a model directory ('default': the packaged model) whose F_hat "
        "replaces the synthetic F as the target of eq. 4 (and of D's real input), with "
        "weight `teacher_weight`; the teacher is frozen and reloaded on resume.")
    teacher_weight: float = option(
        1.0, "Share of the teacher's map in the target: F_target = w F_teacher + (1 - w) F.")

    def validate(self) -> None:
        self.model.validate()
        self.loss.validate()
        self.optim.validate()
        self.data.validate()
        check_choices(self)
        if not 0.0 <= self.teacher_weight <= 1.0:
            raise ValueError(f"teacher_weight must be in [0, 1], got {self.teacher_weight}")
        multiple = 2 ** len(self.model.down_channels)  # `Generator.size_multiple`
        if self.data.image_size % multiple:
            raise ValueError(f"image_size must be a positive multiple of {multiple}, got "
                             f"{self.data.image_size}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {self.batch_size}")
        if self.num_steps < 0:
            raise ValueError(f"num_steps must be non-negative, got {self.num_steps}")
        if self.warmup_steps < 0:
            raise ValueError(f"warmup_steps must be non-negative, got {self.warmup_steps}")
        for name in ("log_every", "image_every", "checkpoint_every", "keep_checkpoints"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> TrainConfig:
        """The validated config of `to_dict()` (or of `config.json`).

        Also reads what earlier versions wrote: a field they lack takes its default (such as
        `optim.warmup_decay_fraction`, `data.swap_sources`, `data.tfds_name`), and their
        `data` (`DataConfig`) has the fields of `PipelineConfig`. Unknown keys are errors.
        """
        values = dict(values)
        kwargs = {name: _from_dict(section, values.pop(name), name)
                  for name, section in _SECTIONS if name in values}
        unknown = sorted(set(values) - {f.name for f in _leaf_fields(cls)})
        if unknown:
            raise ValueError(f"unknown settings: {', '.join(unknown)}")
        cfg = cls(**kwargs, **values)
        cfg.validate()
        return cfg


@dataclasses.dataclass(frozen=True)
class WorkerTask:
    """This process's place in a multi-worker cluster (`multi_worker_task`).

    Attributes:
      task_type: "chief" or "worker".
      task_id: the task's index within its type.
      num_workers: the chief and the workers together; each trains one share of the batch.
      is_chief: whether this task writes the work dir: the chief, or worker 0 when the
        cluster has no chief (as `MultiWorkerMirroredStrategy` decides).
    """

    task_type: str
    task_id: int
    num_workers: int
    is_chief: bool


def multi_worker_task(tf_config: str | None) -> WorkerTask:
    """This task of the cluster that `TF_CONFIG` (its JSON text; None when unset) describes,
    for `distribution="multi_worker"`. Raises ValueError naming what is missing or wrong, so
    that a bad cluster spec fails before TensorFlow starts its servers.

    The format is TensorFlow's: {"cluster": {"worker": ["host:port", ...], "chief": [...]},
    "task": {"type": "worker", "index": 0}}; "chief" is optional, and other task types
    (parameter servers, evaluators) have no part in a `MultiWorkerMirroredStrategy` run.
    """
    if tf_config is None or not tf_config.strip():
        raise ValueError("--distribution=multi_worker needs the TF_CONFIG environment "
                         "variable (the cluster's addresses and this task)")
    try:
        spec = json.loads(tf_config)
    except ValueError as e:
        raise ValueError(f"TF_CONFIG is not valid JSON: {e}") from None
    if not isinstance(spec, dict):
        raise ValueError(f"TF_CONFIG must be a JSON object, got {type(spec).__name__}")
    cluster, task = spec.get("cluster"), spec.get("task")
    if not isinstance(cluster, dict) or not cluster:
        raise ValueError("TF_CONFIG has no 'cluster' object")
    other = sorted(set(cluster) - {"chief", "worker"})
    if other:
        raise ValueError("TF_CONFIG: multi_worker training takes only 'chief' and 'worker' "
                         f"tasks, got {', '.join(map(repr, other))}")
    for job, addresses in cluster.items():
        if (not isinstance(addresses, list) or not addresses
                or not all(isinstance(a, str) and _is_address(a) for a in addresses)):
            raise ValueError(f"TF_CONFIG: cluster '{job}' must be a non-empty list of "
                             f"'host:port' addresses, got {addresses!r}")
    if len(cluster.get("chief", [])) > 1:
        raise ValueError("TF_CONFIG: a cluster has at most one chief")
    if not isinstance(task, dict):
        raise ValueError("TF_CONFIG has no 'task' object (this process's type and index)")
    task_type, index = task.get("type"), task.get("index")
    if task_type not in cluster:
        raise ValueError(f"TF_CONFIG: task type {task_type!r} is not a job of the cluster "
                         f"({', '.join(sorted(cluster))})")
    if (not isinstance(index, int) or isinstance(index, bool)
            or not 0 <= index < len(cluster[task_type])):
        raise ValueError(f"TF_CONFIG: task index {index!r} is not one of the "
                         f"{len(cluster[task_type])} '{task_type}' tasks")
    addresses = [a for job in ("chief", "worker") for a in cluster.get(job, [])]
    if len(set(addresses)) != len(addresses):
        raise ValueError("TF_CONFIG: two tasks share an address")
    is_chief = task_type == "chief" or ("chief" not in cluster and index == 0)
    return WorkerTask(task_type, index, len(addresses), is_chief)


def _is_address(text: str) -> bool:
    host, _, port = text.rpartition(":")
    return bool(host) and port.isdigit() and 0 < int(port) < 65536


# The nested sections of `TrainConfig`, by field name.
_SECTIONS = (("model", ModelConfig), ("loss", LossConfig), ("optim", OptimConfig),
             ("data", PipelineConfig))


def model_config_from_dict(values: dict[str, Any]) -> ModelConfig:
    values = dict(values)
    values["down_channels"] = tuple(values["down_channels"])
    cfg = ModelConfig(**values)
    cfg.validate()
    return cfg


def _leaf_fields(cls: type) -> list[dataclasses.Field]:
    """The fields of `cls` that are settings (all but `TrainConfig`'s sections)."""
    sections = {name for name, _ in _SECTIONS}
    return [f for f in dataclasses.fields(cls) if not (cls is TrainConfig and f.name in sections)]


def _from_dict(cls: type, values: Any, name: str) -> Any:
    if not isinstance(values, Mapping):
        raise ValueError(f"{name} must be an object, got {values!r}")
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"unknown {name} settings: {', '.join(unknown)}")
    hints = typing.get_type_hints(cls)
    return cls(**{k: tuple(v) if isinstance(v, list) and _tuple_type(hints[k]) else v
                  for k, v in values.items()})


def _tuple_type(hint: Any) -> tuple[type, int | None, bool] | None:
    """(item type, length or None for any, optional) of a tuple annotation, else None."""
    optional = False
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        optional, hint = len(args) < len(typing.get_args(hint)), args[0]
    if typing.get_origin(hint) is not tuple:
        return None
    args = typing.get_args(hint)
    if len(args) == 2 and args[1] is Ellipsis:
        return args[0], None, optional
    return args[0], len(args), optional


@dataclasses.dataclass(frozen=True)
class FlagSpec:
    """One flag of `python -m mfif_tf.train`, made from a config field.

    Attributes:
      name: the flag's name (the field's, or its `flag` metadata).
      path: where the value goes in `TrainConfig`: ("data", "source") or ("batch_size",).
      kind: bool, int, float, str or tuple.
      default: the field's default; None for a network size the preset fills.
      help: the field's help, plus where its default comes from when the preset fills it.
      choices: the allowed values of a str flag, else None.
      item_type: the type of a tuple flag's items.
      length: the number of items of a tuple flag; None for any number.
    """

    name: str
    path: tuple[str, ...]
    kind: type
    default: Any
    help: str
    choices: tuple[str, ...] | None = None
    item_type: type | None = None
    length: int | None = None


def flag_specs() -> tuple[FlagSpec, ...]:
    """One flag per setting of `TrainConfig`: the fields of its sections and its own.

    Every field needs a help (`data_pipeline.option`); a flag's default is its field's, so the
    default flags give `TrainConfig()`. The sizes a preset fills default to None ("the
    preset's").
    """
    specs = []
    parts = [((name,), section) for name, section in _SECTIONS] + [((), TrainConfig)]
    for prefix, cls in parts:
        hints = typing.get_type_hints(cls)
        for field in _leaf_fields(cls):
            meta = field.metadata
            if "help" not in meta:
                raise TypeError(f"{cls.__name__}.{field.name} has no help; declare it with "
                                f"data_pipeline.option")
            help_text, default = meta["help"], field.default
            if meta.get("preset"):
                help_text, default = f"{help_text} Default: the preset's.", None
            tuple_type = _tuple_type(hints[field.name])
            kind = tuple if tuple_type else hints[field.name]
            specs.append(FlagSpec(
                name=meta.get("flag", field.name), path=prefix + (field.name,), kind=kind,
                default=default, help=help_text, choices=meta.get("choices"),
                item_type=tuple_type[0] if tuple_type else None,
                length=tuple_type[1] if tuple_type else None))
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise TypeError(f"two settings share a flag name: {sorted(names)}")
    return tuple(specs)


def config_from_flags(values: Mapping[str, Any]) -> TrainConfig:
    """The validated `TrainConfig` of flag values ({flag name: value}; a flag left out has
    its default): `model_config(preset, ...)` with the sizes given (not None), and every
    other setting as given."""
    specs = flag_specs()
    unknown = sorted(set(values) - {s.name for s in specs})
    if unknown:
        raise ValueError(f"unknown settings: {', '.join(unknown)}")
    sections: dict[str, dict[str, Any]] = {name: {} for name, _ in _SECTIONS}
    top: dict[str, Any] = {}
    for spec in specs:
        value = values.get(spec.name, spec.default)
        if spec.kind is tuple and value is not None:
            value = tuple(value)
        target = sections[spec.path[0]] if len(spec.path) == 2 else top
        target[spec.path[-1]] = value
    model = sections.pop("model")
    preset = model.pop("preset")
    model = model_config(preset, **{k: v for k, v in model.items() if v is not None})
    cfg = TrainConfig(model=model, loss=LossConfig(**sections["loss"]),
                      optim=OptimConfig(**sections["optim"]),
                      data=PipelineConfig(**sections["data"]), **top)
    cfg.validate()
    return cfg
