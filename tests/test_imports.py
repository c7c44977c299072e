"""Only entry points define absl flags: importing every library module registers none.

A library module that defined flags at import would clash with the entry point that imports
it (absl refuses a flag defined twice) and would tie the library to one command line.
"""

import importlib.util
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGES = ("mfif_tf", "data_pipeline", "export")
# The absl entry points: they define their flags at import and end in `app.run(main...)`.
ENTRY_POINTS = frozenset({
    "mfif_tf.ablate", "mfif_tf.evaluate", "mfif_tf.fuse", "mfif_tf.train",
    "mfif_tf.train_refiner", "data_pipeline.benchmark", "data_pipeline.blur_estimate",
    "data_pipeline.preview", "data_pipeline.tfds.build", "export.export", "export.measure",
    "export.litert_package",
})

# Runs in a fresh interpreter, so that no flag defined by an earlier test or import counts.
IMPORT_ALL = r"""
import importlib, json, pkgutil, sys
from absl import flags

packages, entry_points = json.loads(sys.argv[1])
imported = []
for package in packages:
    imported.append(importlib.import_module(package).__name__)
    for info in pkgutil.walk_packages(sys.modules[package].__path__, package + "."):
        if info.name not in entry_points:
            imported.append(importlib.import_module(info.name).__name__)
ours = {}
for name in list(flags.FLAGS):
    module = flags.FLAGS.find_module_defining_flag(name)
    if module and module.split(".")[0] in packages:
        ours[name] = module
print(json.dumps({"imported": imported, "flags": ours}))
"""


def test_entry_point_list_is_current():
    for name in ENTRY_POINTS:
        spec = importlib.util.find_spec(name)
        assert spec is not None and spec.origin, name
        with open(spec.origin, encoding="utf-8") as f:
            source = f.read()
        assert "flags.DEFINE_" in source and "app.run(" in source, name


def test_importing_every_library_module_registers_no_flag():
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    proc = subprocess.run(
        [sys.executable, "-c", IMPORT_ALL, json.dumps([PACKAGES, sorted(ENTRY_POINTS)])],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["flags"] == {}, "library modules define flags: " + ", ".join(
        f"--{flag} ({module})" for flag, module in sorted(result["flags"].items()))
    imported = set(result["imported"])
    assert not imported & ENTRY_POINTS
    # Not vacuous: the walk reached the libraries the entry points are built on.
    assert {"mfif_tf.evaluate_lib", "mfif_tf.fuse_lib", "mfif_tf.train_lib", "mfif_tf.cli",
            "export.export_lib", "data_pipeline.ground_truth",
            "mfif_tf.metrics.registry"} <= imported
