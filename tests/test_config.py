"""Training configuration: flags made from the config fields, shipped flagfiles, config.json."""

import dataclasses
import glob
import json
import os
import re
import subprocess
import sys

import pytest
from absl import flags

from data_pipeline import PipelineConfig
from mfif_tf import cli
from mfif_tf import config as config_lib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Flagfiles of `python -m mfif_tf.train`; refiner*.flags belong to `mfif_tf.train_refiner`
# (tests/test_train_refiner.py).
FLAGFILES = sorted(os.path.relpath(p, ROOT) for p in glob.glob(
    os.path.join(ROOT, "configs", "**", "*.flags"), recursive=True)
    if not os.path.basename(p).startswith("refiner"))


def resolve(args):
    """The config of `python -m mfif_tf.train` flags, parsed with the flag definitions of
    the entry point into their own `FlagValues`."""
    specs = config_lib.flag_specs()
    values = flags.FlagValues()
    cli.define_flags(specs, values)
    values(["train", *args])
    return config_lib.config_from_flags(cli.read_flags(specs, values))


def test_default_flags_give_the_default_config():
    assert resolve([]) == config_lib.TrainConfig()
    assert config_lib.config_from_flags({}) == config_lib.TrainConfig()


def test_every_setting_has_one_flag_with_its_default():
    specs = config_lib.flag_specs()
    paths = {s.path for s in specs}
    sections = {"model": config_lib.ModelConfig, "loss": config_lib.LossConfig,
                "optim": config_lib.OptimConfig, "data": PipelineConfig}
    want = {(f.name,) for f in dataclasses.fields(config_lib.TrainConfig)
            if f.name not in sections}
    for section, cls in sections.items():
        want |= {(section, f.name) for f in dataclasses.fields(cls)}
    assert paths == want and len(specs) == len(want)
    assert len({s.name for s in specs}) == len(specs)
    by_name = {s.name: s for s in specs}
    assert by_name["data_source"].path == ("data", "source")
    assert by_name["extra_data_dirs"].path == ("data", "extra_dirs")
    assert by_name["gan_loss"].path == ("loss", "gan")
    for name in ("lambda_adv", "critic_channels", "critic_max_channels", "critic_layers"):
        assert name in by_name
    assert by_name["critic_channels"].default is None  # the preset's
    assert by_name["sigma_range"].length == 2 and by_name["sigma_range"].item_type is float


@pytest.mark.parametrize("flagfile", FLAGFILES)
def test_shipped_flagfiles_resolve_to_valid_configs(flagfile, monkeypatch):
    monkeypatch.chdir(ROOT)  # flagfiles name the flagfiles they include from the root
    cfg = resolve([f"--flagfile={flagfile}"])
    cfg.validate()
    assert config_lib.TrainConfig.from_dict(cfg.to_dict()) == cfg


def test_shipped_flagfiles_say_what_they_claim(monkeypatch):
    monkeypatch.chdir(ROOT)
    paper = resolve(["--flagfile=configs/paper.flags"])
    assert paper.model == config_lib.model_config("paper")
    data = paper.data
    assert (data.source, data.crop, data.center_crop_size) == ("voc", "center", 178)
    assert paper.loss == config_lib.LossConfig()
    assert paper.optim == config_lib.OptimConfig()
    shipped = resolve(["--flagfile=configs/pretrained.flags"])
    assert shipped.model == config_lib.model_config("compact")
    assert shipped.data.swap_sources and shipped.data.sigma_range == (1.0, 4.5)
    finetune = resolve(["--flagfile=configs/pretrained_finetune.flags"])
    assert finetune.data.image_size == 256 and finetune.data.sigma_range == (1.0, 4.5)
    assert resolve(["--flagfile=configs/ablations/no_se.flags"]).model.use_se is False
    # The small G's two flagfiles make the network that ships in pretrained/small/, for the
    # steps its model.json gives, distilled from the packaged G; the second starts from the
    # first one's export.
    small = resolve(["--flagfile=configs/pretrained_small.flags"])
    small_ft = resolve(["--flagfile=configs/pretrained_small_finetune.flags"])
    with open(os.path.join(ROOT, "mfif_tf", "pretrained", "small", "model.json")) as f:
        meta = json.load(f)
    for stage in (small, small_ft):
        assert stage.model == config_lib.model_config_from_dict(meta["model"])
        assert stage.teacher == "default" and stage.data.synthesis == "mixed"
    assert small.model.down_channels == (16, 32)
    assert not small.init_checkpoint
    assert small_ft.init_checkpoint == "runs/pretrained_small/export"
    assert list(meta["info"]["steps"].values()) == [small.num_steps, small_ft.num_steps]
    assert meta["info"]["flagfiles"] == ["configs/pretrained_small.flags",
                                         "configs/pretrained_small_finetune.flags"]
    assert meta["info"]["training_config"]["optim"]["learning_rate"] == \
        small_ft.optim.learning_rate


def test_flags_override_presets_and_sections():
    cfg = resolve(["--preset=compact", "--critic_layers=4", "--critic_channels=16",
                   "--lambda_adv=0.5", "--down_channels=8,16", "--sigma_range=1,4",
                   "--extra_data_dirs=a,b", "--data_source=folder", "--data_dir=d",
                   "--nouse_se"])
    assert cfg.model == config_lib.model_config(
        "compact", critic_layers=4, critic_channels=16, down_channels=(8, 16), use_se=False)
    assert cfg.model.critic_max_channels == 256  # still the preset's
    assert cfg.loss.lambda_adv == 0.5
    assert cfg.data == PipelineConfig(source="folder", data_dir="d", extra_dirs=("a", "b"),
                                      sigma_range=(1.0, 4.0))


@pytest.mark.parametrize("args,message", [
    (["--sigma_range=1,2,3"], "flag --sigma_range=1,2,3: needs 2 comma-separated values"),
    (["--down_channels=a,b"], "needs int values"),
    (["--crop=middle"], "--crop"),
    (["--no_such_flag=1"], "no_such_flag"),
])
def test_malformed_flags_are_flag_errors(args, message):
    with pytest.raises(flags.Error, match=message):
        resolve(args)


@pytest.mark.parametrize("args,message", [
    (["--sigma_range=3,1"], "sigma_range must be"),
    (["--data_source=folder"], "needs data_dir"),
    (["--image_size=30"], "multiple of 4"),
    (["--critic_layers=1"], "critic_layers"),
    (["--lambda_adv=-1"], "non-negative"),
])
def test_invalid_settings_are_value_errors(args, message):
    with pytest.raises(ValueError, match=message):
        resolve(args)


# `config.json` as the first versions wrote it: no optim.warmup_decay_fraction, no
# data.swap_sources, no data.tfds_name; JSON lists for tuples.
OLD_CONFIG_JSON = {
    "model": {"preset": "compact", "stem_channels": 16, "down_channels": [32, 64],
              "num_blocks": 6, "se_reduction": 8, "use_se": True, "branches": "six",
              "critic_channels": 32, "critic_max_channels": 256, "critic_layers": 8},
    "loss": {"gan": "wgan_gp", "reconstruction": "l1", "lambda_gp": 10.0, "lambda_rec": 10.0,
             "lambda_adv": 1.0},
    "optim": {"learning_rate": 1e-4, "beta_1": 0.5, "beta_2": 0.999, "decay_fraction": 0.5,
              "critic_steps": 5},
    "data": {"source": "folder", "data_dir": "data/ecssd", "extra_dirs": [],
             "tfds_data_dir": "", "image_size": 128, "crop": "random", "center_crop_size": 178,
             "resize_shorter": 192, "synthesis": "alpha_matte", "sigma": 1.0,
             "sigma_range": [1.0, 4.0], "flip": True, "shuffle_buffer": 256},
    "batch_size": 8, "num_steps": 20000, "warmup_steps": 2000, "seed": 0,
    "mixed_precision": "none", "jit_compile": False, "distribution": "auto", "log_every": 50,
    "image_every": 500, "checkpoint_every": 250, "keep_checkpoints": 3, "init_checkpoint": "",
}


def test_config_json_of_earlier_versions_loads(monkeypatch):
    cfg = config_lib.TrainConfig.from_dict(OLD_CONFIG_JSON)
    assert cfg.optim.warmup_decay_fraction == 0.0 and not cfg.data.swap_sources
    assert cfg.data.sigma_range == (1.0, 4.0) and cfg.model.down_channels == (32, 64)
    monkeypatch.chdir(ROOT)
    # What configs/compact.flags gives today, but for its newer settings' defaults.
    assert cfg == resolve(["--flagfile=configs/compact.flags"])
    assert config_lib.DataConfig is PipelineConfig  # the old name still works
    with pytest.raises(ValueError, match="unknown data settings: colour"):
        config_lib.TrainConfig.from_dict({**OLD_CONFIG_JSON, "data": {"colour": 1}})
    with pytest.raises(ValueError, match="unknown settings: epochs"):
        config_lib.TrainConfig.from_dict({**OLD_CONFIG_JSON, "epochs": 3})


def test_flags_resolve_before_tensorflow_loads():
    # A bad flag fails with one line before TensorFlow (and its native log lines) loads.
    code = ("import sys; from mfif_tf import train; train.FLAGS(['train']); "
            "train.config_from_flags(); print('tensorflow' in sys.modules)")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip() == "False"


def _documented_defaults(path):
    """{flag: default cell} of the markdown tables of `path` that name flags (`--x`)."""
    found = {}
    with open(os.path.join(ROOT, path), encoding="utf-8") as f:
        for line in f:
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            for i, cell in enumerate(cells[:-1]):
                names = re.findall(r"`--(?:\[no\])?(\w+)`", cell)
                if names and re.fullmatch(r"(`--[^`]+`(, )?)+", cell):
                    values = cells[i + 1].split(", ")
                    values = values if len(values) == len(names) else [cells[i + 1]] * len(names)
                    found.update(zip(names, values))
                    break
    return found


def _parse_documented(text):
    text = re.sub(r"\s+\(.+\)$", "", text).strip()  # a note after the value
    known = {"the preset's": None, "none": None, '""': "", "()": (), "true": True,
             "false": False}
    if text in known:
        return known[text]
    if text.startswith("`"):
        return text.strip("`")
    return float(text)


def test_documented_flags_and_defaults_are_the_configs():
    documented = {**_documented_defaults("BUILD.md"), **_documented_defaults("docs/data.md")}
    specs = {s.name: s for s in config_lib.flag_specs()}
    assert set(documented) == set(specs)
    for name, text in documented.items():
        assert _parse_documented(text) == specs[name].default, name
