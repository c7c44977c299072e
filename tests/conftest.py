import ast
import functools
import os
import pathlib

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# Under pytest-xdist each worker process (and every process a test starts, which inherits
# this) gets its share of the CPUs for TensorFlow's thread pools, instead of every worker
# using all of them: on 2 cores with `-n 2`, two pools of 2 threads each fight over the cores
# and four of the test files took 1.10-1.17x as long (two comparisons).
if "PYTEST_XDIST_WORKER_COUNT" in os.environ:
    _workers = int(os.environ["PYTEST_XDIST_WORKER_COUNT"])
    _share = str(max(1, len(os.sched_getaffinity(0)) // _workers))
    os.environ.setdefault("TF_NUM_INTRAOP_THREADS", _share)
    os.environ.setdefault("TF_NUM_INTEROP_THREADS", _share)

# Test tiers (docs/contributing.md). `slow` (registered in pytest.ini) goes on every test that
# starts a Python process, exports or loads a SavedModel, converts to TFLite or runs training
# steps; `python -m pytest -m "not slow" tests` is the quick loop,
# `python -m pytest -q -n 2 --dist loadfile tests` runs everything. Test files may mark tests
# themselves; this hook also marks the files that are not edited for it, by these rules:
SLOW_MODULES = frozenset({
    "test_export",  # every test shares a SavedModel export (and TF1 serving sessions)
    "test_tflite",  # every test shares a SavedModel + TFLite export
})
# A test is slow when it, a fixture it requests or a module-level helper it calls (at any
# depth) uses one of these names (as a name or an attribute).
SLOW_NAMES = frozenset({
    "subprocess",  # a new Python process imports TensorFlow again
    "train_and_evaluate", "warmup_step", "generator_step", "critic_step",  # training steps
    "run_ablations",  # trains every ablation variant
    "export_model", "saved_model", "TFLiteConverter",  # SavedModel / TFLite export
})


@functools.cache
def _slow_functions(path: pathlib.Path) -> frozenset[str]:
    """Top-level functions (tests, fixtures, helpers) of a test file that use a name in
    `SLOW_NAMES`, directly or through other top-level functions of the file."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    used = {}
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            used[node.name] = ({n.id for n in ast.walk(node) if isinstance(n, ast.Name)}
                               | {n.attr for n in ast.walk(node) if isinstance(n, ast.Attribute)})
    slow = {name for name, names in used.items() if names & SLOW_NAMES}
    grew = True
    while grew:
        grew = False
        for name, names in used.items():
            if name not in slow and names & slow:
                slow.add(name)
                grew = True
    return frozenset(slow)


def is_slow(item: pytest.Item) -> bool:
    """Whether the rules above make `item` a slow test."""
    path = pathlib.Path(str(item.fspath))
    if path.stem in SLOW_MODULES:
        return True
    if path.suffix != ".py":
        return False
    slow = _slow_functions(path)
    name = getattr(item, "originalname", None) or item.name
    return name in slow or bool(slow.intersection(getattr(item, "fixturenames", ())))


# The files that take longest (minutes each on 2 cores), longest first. They run first, so that
# with `-n 2 --dist loadfile` (pytest-xdist hands out whole files in collection order) the
# two processes end together instead of one waiting for a long file picked up last.
# The training CLI's smoke flagfile with one SE-ResNet block and a 3-layer critic: tracing the
# replicated steps of the multi-device and multi-worker tests is most of their time.
SMOKE_SMALL = ("--flagfile=configs/smoke.flags", "--num_blocks=1", "--critic_layers=3")

LONG_MODULES = ("test_training", "test_multi_worker", "test_train_refiner", "test_tflite",
                "test_tfds_builders", "test_export", "test_precision", "test_fuse_cli")


def pytest_configure(config):
    # pytest-xdist reorders files by their number of tests unless told not to, which would
    # undo the order below (most long files hold few tests).
    if hasattr(config.option, "loadscopereorder"):
        config.option.loadscopereorder = False


def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.get_closest_marker("slow") is None and is_slow(item):
            item.add_marker(pytest.mark.slow)
    rank = {name: i for i, name in enumerate(LONG_MODULES)}
    items.sort(key=lambda item: rank.get(pathlib.Path(str(item.fspath)).stem, len(rank)))


def decisive_generator(seed: int, gain: float = 300.0):
    """The compact G with random weights and its head's kernel scaled by `gain`: random
    weights alone give F_hat within 0.02 of 0.5; a steeper head gives maps with both sides
    of 0.5 in quantity and outlines, as a trained model's are."""
    import keras

    from mfif_tf.config import model_config
    from mfif_tf.networks import build_generator

    keras.utils.set_random_seed(seed)
    g = build_generator(model_config("compact"))
    g.head.kernel.assign(g.head.kernel * gain)
    return g


def random_refiner(seed: int = 12, channels: int = 8, layers: int = 3):
    """A refinement head R with random, non-zero weights (it changes maps in its band)."""
    import numpy as np
    import tensorflow as tf

    from mfif_tf import refiner as refiner_lib

    tf.keras.utils.set_random_seed(seed)
    r = refiner_lib.build_refiner(refiner_lib.RefinerConfig(channels=channels, layers=layers))
    rng = np.random.default_rng(seed)
    for w in r.weights:
        w.assign(rng.normal(0.0, 0.3, w.shape).astype(np.float32))
    return r
