"""Running one benchmark configuration in its own process and waiting for it.

`run_worker` starts `python -m benchmarks.worker` (fresh process: its peak memory is that
configuration's alone); `run_srr_bench` runs benchmarks/srr_bench.py unchanged with its own
flags and collects its JSON and its markdown table. Both show the elapsed time on a terminal
and stop a configuration after a timeout.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_NOISE = ("I0000", "W0000", "E0000", "WARNING: All log messages", "To enable the following")


def _wait(process: subprocess.Popen, timeout_s: float, label: str) -> bool:
    """Waits for the process, showing the elapsed time on a terminal; False on timeout."""
    start = time.monotonic()
    tty = sys.stderr.isatty()
    while True:
        try:
            process.wait(timeout=1.0)
            if tty:
                sys.stderr.write("\r\033[K")
            return True
        except subprocess.TimeoutExpired:
            elapsed = time.monotonic() - start
            if tty:
                sys.stderr.write(f"\r\033[K  {label}: {elapsed:.0f} s")
                sys.stderr.flush()
            if elapsed > timeout_s:
                process.kill()
                process.wait()
                if tty:
                    sys.stderr.write("\r\033[K")
                return False


def run_worker(spec: dict[str, Any], workdir: str, timeout_s: float,
               label: str) -> dict[str, Any]:
    """{"row": ...} or {"error": ...} from `python -m benchmarks.worker` in a new process."""
    fd, spec_path = tempfile.mkstemp(suffix=".json", dir=workdir)
    with os.fdopen(fd, "w") as f:
        json.dump(spec, f)
    result_path = spec_path[:-5] + ".result.json"
    log_path = spec_path[:-5] + ".log"
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = ROOT + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    with open(log_path, "w") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.worker", spec_path, result_path],
            cwd=ROOT, env=env, stdout=log_file, stderr=subprocess.STDOUT)
        finished = _wait(process, timeout_s, label)
    if not finished:
        return {"error": f"stopped after {timeout_s:.0f} s (--timeout)"}
    if os.path.exists(result_path):
        with open(result_path) as f:
            return json.load(f)
    return {"error": f"worker exited with code {process.returncode}: {_log_tail(log_path)}"}


def _log_tail(path: str, lines: int = 2) -> str:
    """The last lines of a log that are not TensorFlow's start-up chatter."""
    with open(path, errors="replace") as f:
        text = [l.rstrip() for l in f if l.strip() and not l.startswith(_NOISE)]
    return " / ".join(text[-lines:])[-300:]


def run_srr_bench(spec: dict[str, Any], workdir: str, timeout_s: float) -> dict[str, Any]:
    """benchmarks/srr_bench.py as it is, in its own process; its JSON and its table."""
    out = os.path.join(workdir, "srr_bench.json")
    command = [sys.executable, "-m", "benchmarks.srr_bench", f"--sizes={','.join(spec['sizes'])}",
               f"--repeats={spec['repeats']}", f"--threads={spec['threads']}",
               f"--tflite_size={spec['tflite_size']}", f"--json_out={out}", "--overwrite"]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    log_path = os.path.join(workdir, "srr_bench.log")
    with open(log_path, "w") as log_file:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log_file,
                                   stderr=subprocess.STDOUT, text=True)
        finished = _wait(process, timeout_s, "srr_bench")
    with open(log_path, errors="replace") as f:
        text = f.read()
    if not finished:
        return {"error": f"stopped after {timeout_s:.0f} s (--timeout)"}
    if process.returncode != 0 or not os.path.exists(out):
        return {"error": f"srr_bench failed: {_log_tail(log_path)}"}
    with open(out) as f:
        result = json.load(f)
    table = "\n".join(l for l in text.splitlines() if l.startswith("|") or not l.strip())
    return {"row": {"result": result, "markdown": table.strip()}}
