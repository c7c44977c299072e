"""What every entry point shares: one-line errors with exit code 2 for bad flags."""

from __future__ import annotations

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
