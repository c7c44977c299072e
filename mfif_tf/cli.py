"""What every entry point shares: one-line errors with exit code 2 for bad flags, and flags
made from config fields (`define_flags`)."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from typing import Any, Iterable, Iterator, NoReturn

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


class TupleParser(flags.ArgumentParser):
    """Parses "a,b,c" into a tuple of `item_type` items (`length` of them when given). An
    empty value is () or, for a fixed length, None (not given)."""

    def __init__(self, item_type: type, length: int | None = None):
        self.item_type = item_type
        self.length = length

    def parse(self, argument: Any) -> tuple | None:
        if argument is None:
            return None
        if isinstance(argument, str):
            text = argument.strip()
            if not text:
                return None if self.length else ()
            argument = [item.strip() for item in text.split(",")]
        items = list(argument)
        if self.length is not None and len(items) != self.length:
            raise ValueError(f"needs {self.length} comma-separated values, got {len(items)}")
        try:
            return tuple(self.item_type(item) for item in items)
        except (TypeError, ValueError):
            raise ValueError(f"needs {self.item_type.__name__} values") from None

    def flag_type(self) -> str:
        return f"comma-separated {self.item_type.__name__}s"


def define_flags(specs: Iterable[Any], flag_values: flags.FlagValues = flags.FLAGS) -> None:
    """Defines one flag per spec (`mfif_tf.config.FlagSpec`: name, kind, default, help,
    choices, item_type, length). Entry points call it; `read_flags` gives the values back."""
    common = dict(flag_values=flag_values)
    for spec in specs:
        if spec.kind is bool:
            flags.DEFINE_bool(spec.name, spec.default, spec.help, **common)
        elif spec.kind is int:
            flags.DEFINE_integer(spec.name, spec.default, spec.help, **common)
        elif spec.kind is float:
            flags.DEFINE_float(spec.name, spec.default, spec.help, **common)
        elif spec.kind is str and spec.choices:
            flags.DEFINE_enum(spec.name, spec.default, list(spec.choices), spec.help, **common)
        elif spec.kind is str:
            flags.DEFINE_string(spec.name, spec.default, spec.help, **common)
        elif spec.kind is tuple:
            flags.DEFINE(TupleParser(spec.item_type, spec.length), spec.name, spec.default,
                         spec.help, serializer=flags.CsvListSerializer(","), **common)
        else:
            raise TypeError(f"no flag type for --{spec.name} ({spec.kind})")


def read_flags(specs: Iterable[Any], flag_values: flags.FlagValues = flags.FLAGS
               ) -> dict[str, Any]:
    """{name: value} of the flags of `specs` (after parsing)."""
    return {spec.name: flag_values[spec.name].value for spec in specs}
