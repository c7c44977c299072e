"""Writes an MFIF-GAN export: a TF Serving model folder, a `models.config`, TFLite models.

Layout under `export_dir` (TF Serving serves integer version folders of a model's base path):

  models.config                       example config for `--model_config_file`
  <model_name>/<version>/             SavedModel (signatures: export/serving.py)
  tflite/<model_name>/<version>/      mfif_dynamic_float32.tflite, mfif_512x512_int8.tflite, ...

Each version folder is written to a hidden temporary folder beside it and renamed into place,
so TF Serving, which polls the base path, never sees half a model. An existing version folder
is only replaced with `overwrite=True`.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import tempfile
from collections.abc import Callable

from export import serving
from export.config import MODELS_CONFIG, ExportConfig, check_targets
from export import tflite as tflite_lib
from mfif_tf.networks import Generator
from mfif_tf import model_io
from mfif_tf.refiner import Refiner



@dataclasses.dataclass
class ExportResult:
    """Paths written by `export_model`, and the size of each file in bytes."""

    saved_model_dir: str
    models_config: str | None
    tflite_models: dict[str, str]
    sizes: dict[str, int]


def write_version_dir(target: str, write: Callable[[str], object], overwrite: bool) -> str:
    """Calls `write(tmp)` on a fresh hidden folder beside `target`, then renames it to
    `target` (replacing an existing one only when `overwrite`)."""
    parent = os.path.dirname(os.path.abspath(target))
    name = os.path.basename(target)
    if os.path.exists(target) and not overwrite:
        raise FileExistsError(f"{target} already exists; pass --overwrite to replace it")
    os.makedirs(parent, exist_ok=True)
    # Names that are not integers are ignored by TF Serving's version polling.
    staging = tempfile.mkdtemp(prefix=f".{name}.tmp-", dir=parent)
    try:
        content = os.path.join(staging, "content")
        write(content)
        if os.path.exists(target):
            retired = tempfile.mkdtemp(prefix=f".{name}.old-", dir=parent)
            os.rename(target, os.path.join(retired, "content"))
            os.rename(content, target)
            shutil.rmtree(retired, ignore_errors=True)
        else:
            os.rename(content, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def models_config_text(model_name: str, base_path: str) -> str:
    return (
        "# TF Serving model config (text protobuf) for this export. Start the server with\n"
        "#   tensorflow_model_server --rest_api_port=8501 --model_config_file=models.config\n"
        "# base_path is the model folder as the server sees it: /models/<name> when this\n"
        "# export folder is mounted at /models in the tensorflow/serving docker image (see\n"
        "# docs/serving.md); use the absolute path of <export_dir>/<name> otherwise.\n"
        "model_config_list {\n"
        "  config {\n"
        f'    name: "{model_name}"\n'
        f'    base_path: "{base_path}"\n'
        '    model_platform: "tensorflow"\n'
        "  }\n"
        "}\n"
    )


def write_models_config(export_dir: str, model_name: str) -> str | None:
    """Writes `export_dir/models.config` unless a different one is there (left untouched,
    returns None)."""
    path = os.path.join(export_dir, MODELS_CONFIG)
    text = models_config_text(model_name, f"/models/{model_name}")
    if os.path.exists(path):
        with open(path) as f:
            if f.read() == text:
                return path
        logging.warning("%s exists and differs from this export's config; left as it is", path)
        return None
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)
    return path


def _file_sizes(root: str) -> dict[str, int]:
    sizes = {}
    for folder, _, files in os.walk(root):
        for name in files:
            path = os.path.join(folder, name)
            sizes[os.path.relpath(path, root)] = os.path.getsize(path)
    return sizes


def directory_size(root: str) -> int:
    return sum(_file_sizes(root).values())


def export_model(generator: Generator, config: ExportConfig,
                 refiner: Refiner | None = None,
                 coarse_refiner: Refiner | None = None,
                 coarse_generator: Generator | None = None) -> ExportResult:
    """Writes the SavedModel, the models.config example and (optionally) the TFLite models;
    the refined modes need the refinement head `refiner`; with `coarse_refiner` the
    refined mode of the SavedModel and of the TFLite models runs G at a shorter side of at
    most `inference.DEFAULT_G_SIDE` (`coarse_generator` there, when given, instead of G).
    G runs in `config.precision`
    (a copy of G is made when it computes in another one)."""
    config.validate()
    check_targets(config)
    generator = model_io.with_precision(generator, config.precision)
    if coarse_generator is not None:
        coarse_generator = model_io.with_precision(coarse_generator, config.precision)
    saved_model_dir = write_version_dir(
        config.saved_model_dir,
        lambda d: serving.save_serving_model(generator, d, config.min_size_fraction,
                                             config.scales, config.mode, refiner,
                                             config.working_side, coarse_refiner,
                                             coarse_generator=coarse_generator),
        config.overwrite)
    sizes = {"saved_model": directory_size(saved_model_dir)}
    tflite_models: dict[str, str] = {}
    if config.tflite:
        write_version_dir(
            config.tflite_dir,
            lambda d: tflite_lib.export_tflite(generator, d, config.tflite_config, refiner,
                                               coarse_refiner, coarse_generator),
            config.overwrite)
        for name in sorted(os.listdir(config.tflite_dir)):
            path = os.path.join(config.tflite_dir, name)
            tflite_models[name] = path
            sizes[name] = os.path.getsize(path)
    models_config = write_models_config(config.export_dir, config.model_name)
    return ExportResult(saved_model_dir, models_config, tflite_models, sizes)
