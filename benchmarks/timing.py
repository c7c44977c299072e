"""How every configuration is timed: warm-up, then repeated runs within a time budget.

Each timed run records wall time and the process's CPU time (all threads). The median of
the runs is reported. A run that takes minutes is not repeated five times: after the first
timed run, runs continue while fewer than `repeats` are done and the elapsed time plus one
more run stays within `budget_s` (at least one timed run always happens).
"""

from __future__ import annotations

import dataclasses
import os
import statistics
import time
from collections.abc import Callable
from typing import Any


@dataclasses.dataclass
class Runs:
    """Wall and CPU seconds of each timed run, and what the last run returned."""

    wall: list[float]
    cpu: list[float]
    last: Any = None

    @property
    def median_wall(self) -> float:
        return statistics.median(self.wall)

    @property
    def median_cpu(self) -> float:
        return statistics.median(self.cpu)

    def summary(self) -> dict[str, Any]:
        return {"runs": len(self.wall), "wall_s": self.wall, "cpu_s": self.cpu,
                "median_wall_s": self.median_wall, "median_cpu_s": self.median_cpu}


def timed_runs(fn: Callable[[], Any], repeats: int, budget_s: float) -> Runs:
    """Calls fn() at least once and at most `repeats` times within `budget_s`."""
    runs = Runs([], [])
    start_all = time.perf_counter()
    while True:
        wall, cpu = time.perf_counter(), time.process_time()
        runs.last = fn()
        runs.wall.append(time.perf_counter() - wall)
        runs.cpu.append(time.process_time() - cpu)
        elapsed = time.perf_counter() - start_all
        if len(runs.wall) >= repeats or elapsed + statistics.median(runs.wall) > budget_s:
            return runs


def median_of(dicts: list[dict[str, float]]) -> dict[str, float]:
    """Per-key median of a list of timing dicts."""
    keys = [k for k in dicts[0]] if dicts else []
    return {k: statistics.median(d.get(k, 0.0) for d in dicts) for k in keys}


def load_average() -> float | None:
    try:
        return os.getloadavg()[0]
    except OSError:
        return None


def set_tf_threads(threads: int):
    """Imports TensorFlow with `threads` intra-op threads (0: TF's default, all cores) and
    one inter-op thread when limited, as `mfif_tf.fuse --threads` does. Returns tf."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    if threads > 0:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    return tf
