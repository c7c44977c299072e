"""What every entry point shares: one-line errors with exit code 2 for bad flags."""

from __future__ import annotations

import os
import sys
from typing import NoReturn

from absl import flags


def fail(message: str) -> NoReturn:
    """Prints `error: message` on one line and exits with code 2."""
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def parse_flags(argv: list[str]) -> list[str]:
    """`app.run(main, flags_parser=parse_flags)`: unknown or malformed flags (also inside a
    flagfile) become a one-line error instead of absl's usage dump."""
    try:
        return flags.FLAGS(argv)
    except flags.Error as e:
        fail(str(e))


def check_workdir(workdir: str) -> None:
    """Raises ValueError when `workdir` cannot be a directory of ours."""
    if os.path.exists(workdir) and not os.path.isdir(workdir):
        raise ValueError(f"work dir exists and is not a directory: {workdir}")
    parent = os.path.dirname(os.path.abspath(workdir))
    if os.path.exists(parent) and not os.path.isdir(parent):
        raise ValueError(f"parent of the work dir is not a directory: {parent}")
