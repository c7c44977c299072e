"""Runs one benchmark configuration in a fresh process (called by `benchmarks.suite`).

  python -m benchmarks.worker SPEC.json RESULT.json

SPEC.json holds {"kind": ..., ...}; RESULT.json receives {"row": {...}} or {"error": "..."}.
A fresh process per configuration makes peak memory that configuration's alone.
"""

from __future__ import annotations

import json
import sys
import traceback

from benchmarks.timing import load_average


def _task(kind: str):
    if kind in ("fusion", "stack"):
        from benchmarks.tasks_fusion import fusion_task

        return fusion_task
    if kind == "export":
        from benchmarks.tasks_fusion import export_task

        return export_task
    if kind == "format":
        from benchmarks.tasks_fusion import format_task

        return format_task
    if kind == "process":
        from benchmarks.tasks_fusion import process_task

        return process_task
    if kind == "quality":
        from benchmarks.tasks_fusion import quality_task

        return quality_task
    if kind == "training":
        from benchmarks.tasks_training import training_task

        return training_task
    if kind == "pipeline":
        from benchmarks.tasks_training import pipeline_task

        return pipeline_task
    if kind == "flops":
        from benchmarks.tasks_training import flops_task

        return flops_task
    raise ValueError(f"unknown benchmark kind {kind!r}")


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print("usage: python -m benchmarks.worker SPEC.json RESULT.json", file=sys.stderr)
        return 2
    with open(argv[1]) as f:
        spec = json.load(f)
    load_start = load_average()
    try:
        row = _task(spec["kind"])(spec)
        row["load_average"] = [load_start, load_average()]
        payload = {"row": row}
    except Exception as err:  # reported in the table; the suite goes on
        traceback.print_exc()
        message = str(err).splitlines()[0] if str(err) else ""
        payload = {"error": f"{type(err).__name__}: {message}"}
    with open(argv[2], "w") as f:
        json.dump(payload, f, indent=1, default=_jsonable)
    return 0


def _jsonable(value):
    try:
        import numpy as np

        if isinstance(value, np.generic):
            return value.item()
        if isinstance(value, np.ndarray):
            return value.tolist()
    except ImportError:
        pass
    return str(value)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
