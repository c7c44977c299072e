"""What every entry point shares: one-line errors with exit code 2 for bad flags, and flags
made from config fields (`define_flags`)."""

from __future__ import annotations

from typing import Any, Iterable

from absl import flags

# The tools import these from here.
from data_pipeline.cli import fail, parse_flags, quiet_native_stderr  # noqa: F401


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
