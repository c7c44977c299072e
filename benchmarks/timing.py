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
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
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


class ProcessError(RuntimeError):
    """A timed child process exited with an error."""


def run_timed(command: Sequence[str], env: dict[str, str] | None = None,
              cwd: str | None = None, name: str = "") -> tuple[float, float, float, str]:
    """Runs a command as a child process and waits for it.

    Returns (wall seconds, CPU seconds of the child (user + system, all threads), the child's
    peak RSS in MB (`os.wait4` resource usage), its standard output). Raises `ProcessError`
    with the last line of its standard error when it fails.
    """
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        process = subprocess.Popen(list(command), stdout=out, stderr=err, env=env, cwd=cwd)
        _, status, usage = os.wait4(process.pid, 0)
        elapsed = time.perf_counter() - start
        process.returncode = os.waitstatus_to_exitcode(status)
        if process.returncode != 0:
            err.seek(0)
            lines = [l for l in err.read().decode(errors="replace").splitlines() if l.strip()]
            detail = lines[-1] if lines else f"exit code {process.returncode}"
            raise ProcessError(f"{name or command[0]} failed: {detail}")
        out.seek(0)
        text = out.read().decode(errors="replace")
    return elapsed, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024.0, text


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
