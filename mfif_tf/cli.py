"""What every entry point shares: one-line errors with exit code 2 for bad flags."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import sys
from typing import Any, Iterator, Mapping, NoReturn

from absl import flags


def fail(message: str, prog: str | None = None) -> NoReturn:
    """Prints `error: message` (`prog: error: message` with `prog`) on one line and exits with
    code 2.

    TensorFlow's Python warnings are silenced first: objects it deletes at exit (such as a
    checkpoint whose restore failed) would otherwise log a line per variable after the
    message.
    """
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    sys.stdout.flush()
    print(f"{prog}: error: {message}" if prog else f"error: {message}", file=sys.stderr,
          flush=True)
    sys.exit(2)


@contextlib.contextmanager
def quiet_native_stderr() -> Iterator[None]:
    """Silences what native libraries print to the stderr file descriptor in the block
    (TensorFlow's C++ runtime while it loads: CPU feature notes, GPU probing), so that the
    tool's own messages stand alone. Python exceptions still reach the user."""
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def parse_flags(argv: list[str], prog: str | None = None) -> list[str]:
    """`app.run(main, flags_parser=parse_flags)`: unknown or malformed flags (also inside a
    flagfile) become a one-line error instead of absl's usage dump (`prog`: see `fail`)."""
    try:
        return flags.FLAGS(argv)
    except flags.Error as e:
        fail(str(e), prog)


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
    stored_path = os.path.join(workdir, "config.json")
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
    from mfif_tf.config import ModelConfig  # pylint: disable=import-outside-toplevel

    # Fields a work dir of an older version lacks have their defaults, as when it is loaded.
    stored = {**json.loads(json.dumps(dataclasses.asdict(ModelConfig()))), **stored}
    given = json.loads(json.dumps(dict(model)))
    differ = [f"{k} ({stored.get(k)} there, {given.get(k)} now)"
              for k in sorted(set(stored) | set(given)) if stored.get(k) != given.get(k)]
    if differ:
        raise ValueError(f"{workdir} holds a run with other networks: {', '.join(differ)}; "
                         f"resume with its settings or use another --workdir")
