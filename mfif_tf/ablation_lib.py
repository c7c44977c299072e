"""The ablations of section 4.3: train each variant briefly, evaluate all into one table.

Each variant is a flagfile in `configs/ablations/` that changes one thing of
`configs/ablations/base.flags`. Training runs in a subprocess per variant (its own flags, its
own work dir, resumable), then every trained generator fuses the test pairs and the paper's
metrics are tabulated side by side. "no_pp" reuses the "full" model without SRR.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from typing import Callable, Sequence

from mfif_tf import evaluate_lib

VARIANTS = ("full", "no_alpha", "bce", "no_pp", "two_branches", "no_gp", "no_se", "ls")
NO_TRAINING = {"no_pp": "full"}  # variant -> the variant whose model it evaluates
NO_SRR = {"no_pp"}


@dataclasses.dataclass
class AblationConfig:
    """Attributes:
      dataset_dir: test pairs (A/, B/), e.g. the Lytro folder.
      output_dir: one work dir per variant, plus the tables.
      flags_dir: where `<variant>.flags` live.
      variants: which variants to run, in table order.
      num_steps: overrides the flagfiles' step count (0 keeps it).
      extra_flags: passed to every training run (e.g. --data_dir=...).
    """

    dataset_dir: str
    output_dir: str
    flags_dir: str = "configs/ablations"
    variants: tuple[str, ...] = VARIANTS
    num_steps: int = 0
    extra_flags: tuple[str, ...] = ()


def check(config: AblationConfig) -> None:
    unknown = [v for v in config.variants if v not in VARIANTS]
    if unknown:
        raise ValueError(f"unknown ablation variants {unknown}; choose from {list(VARIANTS)}")
    for variant in config.variants:
        trained = NO_TRAINING.get(variant, variant)
        path = os.path.join(config.flags_dir, f"{trained}.flags")
        if not os.path.isfile(path):
            raise ValueError(f"missing ablation flagfile: {path}")
    if not os.path.isdir(config.dataset_dir):
        raise ValueError(f"dataset_dir is not a directory: {config.dataset_dir}")


def train_variant(config: AblationConfig, variant: str,
                  log: Callable[[str], None]) -> str:
    """Trains (or resumes) one variant in a subprocess; returns its work dir."""
    workdir = os.path.join(config.output_dir, variant)
    command = [sys.executable, "-m", "mfif_tf.train",
               f"--flagfile={os.path.join(config.flags_dir, variant + '.flags')}",
               f"--workdir={workdir}", *config.extra_flags]
    if config.num_steps:
        command.append(f"--num_steps={config.num_steps}")
    log(f"[{variant}] training: {' '.join(command[1:])}")
    proc = subprocess.run(command)
    if proc.returncode != 0:
        raise RuntimeError(f"training of ablation {variant!r} failed (exit {proc.returncode})")
    return workdir


def run_ablations(config: AblationConfig, log: Callable[[str], None] = print) -> str:
    """Trains every variant, evaluates each and writes `ablations.md` and `ablations.json`."""
    check(config)
    os.makedirs(config.output_dir, exist_ok=True)
    workdirs: dict[str, str] = {}
    for variant in config.variants:
        trained = NO_TRAINING.get(variant, variant)
        if trained not in workdirs:
            workdirs[trained] = train_variant(config, trained, log)
    results = []
    for variant in config.variants:
        model_dir = os.path.join(workdirs[NO_TRAINING.get(variant, variant)], "export")
        eval_cfg = evaluate_lib.EvalConfig(
            dataset_dir=config.dataset_dir,
            output_dir=os.path.join(config.output_dir, "eval", variant), overwrite=True)
        fuse_fn = evaluate_lib.model_fuse_fn(model_dir, srr=variant not in NO_SRR)
        log(f"[{variant}] evaluating {model_dir}")
        results.append(evaluate_lib.evaluate_fn(eval_cfg, fuse_fn, name=variant))
    table = evaluate_lib.results_markdown(results, "paper", per_image=False)
    with open(os.path.join(config.output_dir, "ablations.md"), "w") as f:
        f.write(table)
    with open(os.path.join(config.output_dir, "ablations.json"), "w") as f:
        json.dump({r.name: r.mean for r in results}, f, indent=2, sort_keys=True)
    return table


def parse_variants(names: Sequence[str]) -> tuple[str, ...]:
    return tuple(names) if names else VARIANTS
