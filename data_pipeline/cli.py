"""What every command-line tool shares: a bad flag or argument ends the program with one line,
`error: message`, and exit code 2, and TensorFlow's native start-up notes stay off the
terminal (`mfif_tf.cli` builds on this for the tools of `mfif_tf` and `export`)."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Iterator
from typing import NoReturn

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


def parse_flags(argv: list[str], prog: str | None = None) -> list[str]:
    """`app.run(main, flags_parser=parse_flags)`: unknown or malformed flags (also inside a
    flagfile) become a one-line error instead of absl's usage dump (`prog`: see `fail`)."""
    try:
        return flags.FLAGS(argv)
    except flags.Error as e:
        # absl puts its own "ERROR:: " before some messages (an unreadable flagfile).
        fail(str(e).removeprefix("ERROR:: "), prog)


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
