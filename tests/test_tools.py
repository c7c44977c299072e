"""Every command-line tool answers an unknown flag with one line, `error: ...`, and exit code
2, before it loads TensorFlow; the tfds builder also checks its source folder before it
builds."""

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# The modules users run with `python -m` (absl flags).
TOOLS = (
    "mfif_tf.fuse", "mfif_tf.evaluate", "mfif_tf.train", "mfif_tf.train_refiner",
    "mfif_tf.ablate", "export.export", "export.litert_package", "export.measure",
    "data_pipeline.ground_truth", "data_pipeline.tfds.build", "data_pipeline.benchmark",
    "data_pipeline.blur_estimate", "data_pipeline.preview",
)

# Runs a module as `python -m` would, in a fresh interpreter, and reports its exit code and
# whether TensorFlow was imported.
_RUN = r"""
import json, runpy, sys
module, args = sys.argv[1], json.loads(sys.argv[2])
sys.argv = [module] + args
try:
    runpy.run_module(module, run_name="__main__", alter_sys=True)
    code = 0
except SystemExit as e:
    code = e.code if isinstance(e.code, int) else 1
print(json.dumps({"code": code, "tensorflow": "tensorflow" in sys.modules}))
"""


def run_tool(module: str, args: list[str]) -> tuple[dict, str]:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="0")  # any native start-up note would show
    proc = subprocess.run([sys.executable, "-c", _RUN, module, json.dumps(args)], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.stdout.strip(), proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1]), proc.stderr


@pytest.mark.parametrize("module", TOOLS)
def test_unknown_flag_is_one_line_before_tensorflow(module):
    result, stderr = run_tool(module, ["--no_such_flag=1"])
    assert result == {"code": 2, "tensorflow": False}, (result, stderr[-3000:])
    assert stderr.strip().count("\n") == 0, stderr[-3000:]
    assert stderr.strip().endswith("error: Unknown command line flag 'no_such_flag'"), stderr


def test_tfds_build_checks_its_folder_and_configs_first(tmp_path):
    data_dir = tmp_path / "tfds"
    empty = tmp_path / "empty"
    empty.mkdir()
    cases = [
        ([], "error: --manual_dir is required", False),
        ([f"--manual_dir={tmp_path / 'nowhere'}"],
         f"error: --manual_dir: no such folder: {tmp_path / 'nowhere'}", False),
        ([f"--manual_dir={empty}"],
         f"error: manual_dir {empty} holds neither PASCAL VOC 2012 (JPEGImages/) nor a mask "
         "folder (images/ + masks/), directly or in a subfolder", True),
        ([f"--manual_dir={empty}", "--dataset=mfif_benchmark"],
         f"error: manual_dir {empty} has no test set: expected subfolders with A/ and B/",
         True),
        ([f"--manual_dir={empty}", "--config=alpha"],
         "error: --config: mfif_alpha_matte has no config 'alpha'; choose from alpha_matte, "
         "conventional, alpha_matte_random_sigma, alpha_matte_filled_random_sigma", True),
    ]
    for args, message, loads_tensorflow in cases:
        result, stderr = run_tool("data_pipeline.tfds.build",
                                  [*args, f"--data_dir={data_dir}"])
        assert result == {"code": 2, "tensorflow": loads_tensorflow}, (args, stderr[-3000:])
        assert stderr.strip() == message, stderr[-3000:]
    assert not data_dir.exists() and os.listdir(empty) == []


@pytest.mark.parametrize("module,args,message", [
    ("data_pipeline.blur_estimate", ["--test_dir={missing}"],
     "error: test set folder not found: {missing}"),
    ("data_pipeline.preview", ["--out={out}", "--source=folder", "--data_dir={missing}"],
     "error: images folder not found: {missing}/images"),
    ("data_pipeline.benchmark", ["--source=folder", "--data_dir={missing}"],
     "error: images folder not found: {missing}/images"),
])
def test_data_tools_name_a_missing_folder_in_one_line(tmp_path, module, args, message):
    names = {"missing": tmp_path / "missing", "out": tmp_path / "out.png"}
    result, stderr = run_tool(module, [a.format(**names) for a in args])
    assert result["code"] == 2, stderr[-3000:]
    assert stderr.strip() == message.format(**names), stderr[-3000:]
    assert os.listdir(tmp_path) == []


def test_export_checks_its_settings_before_tensorflow(tmp_path):
    result, stderr = run_tool("export.export", [
        "--weights=default", f"--export_dir={tmp_path / 'exp'}", "--version=1", "--tflite",
        "--tflite_quantizations=float32,int8_full",
        f"--tflite_representative_dir={tmp_path / 'nowhere'}"])
    assert result == {"code": 2, "tensorflow": False}, stderr[-3000:]
    assert stderr.strip() == (f"error: --tflite_representative_dir: no such folder: "
                              f"{tmp_path / 'nowhere'}")
    assert os.listdir(tmp_path) == []


def test_missing_flagfile_is_one_line(tmp_path):
    result, stderr = run_tool("mfif_tf.train", [f"--flagfile={tmp_path / 'none.flags'}",
                                                f"--workdir={tmp_path / 'w'}"])
    assert result == {"code": 2, "tensorflow": False}, stderr[-3000:]
    assert stderr.strip() == (f"error: Unable to open flagfile: [Errno 2] No such file or "
                              f"directory: '{tmp_path / 'none.flags'}'")
    assert os.listdir(tmp_path) == []
