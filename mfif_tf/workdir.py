"""Checks on a training work dir, before anything is written to it, and where each worker
of a multi-worker run writes.

No TensorFlow here: `python -m mfif_tf.train` refuses a wrong `--workdir` with a one-line
error before TensorFlow loads, and `train_lib.train_and_evaluate` repeats the check for
library callers.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import tempfile
from typing import Any, Iterator, Mapping

from mfif_tf.config import ModelConfig

RUN_CONFIG = "config.json"  # the resolved `TrainConfig` of the run in a work dir


class WorkdirNotShared(ValueError):
    """The workers of a multi-worker run do not see the same work dir: they restored
    different checkpoints (or some none)."""


def check_workdir(workdir: str, model: Mapping[str, Any] | None = None) -> None:
    """Raises ValueError when `workdir` cannot be a directory of ours or, given the network
    settings of a run (`TrainConfig.to_dict()["model"]`), when its `config.json` records
    other ones: the run could not restore its checkpoints, and `config.json` must keep
    describing them (`model_io.load_generator` builds the networks from it)."""
    if os.path.exists(workdir) and not os.path.isdir(workdir):
        raise ValueError(f"work dir exists and is not a directory: {workdir}")
    parent = os.path.dirname(os.path.abspath(workdir))
    if os.path.exists(parent) and not os.path.isdir(parent):
        raise ValueError(f"parent of the work dir is not a directory: {parent}")
    stored_path = os.path.join(workdir, RUN_CONFIG)
    if model is None or not os.path.isfile(stored_path):
        return
    try:
        with open(stored_path) as f:
            stored = json.load(f)["model"]
        if not isinstance(stored, dict):
            raise TypeError("'model' is not an object")
    except (OSError, ValueError, KeyError, TypeError) as e:
        detail = str(e).splitlines()[0] if str(e) else type(e).__name__
        if isinstance(e, KeyError):
            detail = f"no {detail} entry"
        raise ValueError(f"{stored_path}: not a readable run configuration ({detail}); repair "
                         f"it or use another --workdir") from None
    # Fields a work dir of an older version lacks have their defaults, as when it is loaded.
    stored = {**json.loads(json.dumps(dataclasses.asdict(ModelConfig()))), **stored}
    given = json.loads(json.dumps(dict(model)))
    differ = [f"{k} ({stored.get(k)} there, {given.get(k)} now)"
              for k in sorted(set(stored) | set(given)) if stored.get(k) != given.get(k)]
    if differ:
        raise ValueError(f"{workdir} holds a run with other networks: {', '.join(differ)}; "
                         f"resume with its settings or use another --workdir")


@contextlib.contextmanager
def output_dir(workdir: str, is_chief: bool = True) -> Iterator[str]:
    """The directory a training process writes its checkpoints, summaries and export to:
    `workdir` for the chief (and for a run of one process), a new temporary directory for
    the other workers of a multi-worker run, removed when the block ends.

    Every worker of a `MultiWorkerMirroredStrategy` run saves (a save may read variables
    with collectives that need all of them), but only the chief's files are the run's;
    the others' are written to a place of their own and dropped, as TensorFlow's guide
    for the strategy recommends.
    """
    if is_chief:
        yield workdir
        return
    path = tempfile.mkdtemp(prefix="mfif_tf-worker-")
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
