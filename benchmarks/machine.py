"""What a benchmark ran on: CPU, its estimated peak, software versions, memory readings.

The peak is cores x clock x FP32 FLOPs per cycle per core. FLOPs per cycle come from the
vector FMA units the CPU family is known to have (an FMA is two FLOPs), since /proc/cpuinfo
lists instruction sets, not units:

  AMD family 0x1A (Zen 5) with AVX-512: two 512-bit FMA pipes -> 2 x 16 x 2 = 64
  AMD family 0x19 (Zen 4) with AVX-512: 512-bit FMAs on two 256-bit pipes -> 32
  Intel with AVX-512: two 512-bit FMA units (Xeon Gold/Platinum; one-unit parts have 32) -> 64
  AVX2 + FMA (Haswell and later, Zen 2/3): two 256-bit FMA units -> 32
  otherwise (SSE): one 128-bit add and one 128-bit multiply per cycle -> 8

The clock is the largest "cpu MHz" in /proc/cpuinfo (under a hypervisor usually the base
clock; turbo may be higher, which would lower the true fraction of peak). Both can be
overridden. Cores are physical cores: SMT siblings share the FMA units.
"""

from __future__ import annotations

import importlib
import os
import platform
import shutil
import subprocess
from typing import Any

_CPUINFO = "/proc/cpuinfo"
_STATUS = "/proc/self/status"


def read_cpuinfo(text: str | None = None) -> dict[str, Any]:
    """Model name, vendor, family, logical CPUs, physical cores, MHz and the vector flags."""
    if text is None:
        try:
            with open(_CPUINFO) as f:
                text = f.read()
        except OSError:
            text = ""
    blocks = [b for b in text.split("\n\n") if b.strip()]
    entries = []
    for block in blocks:
        entry = {}
        for line in block.splitlines():
            key, _, value = line.partition(":")
            entry[key.strip()] = value.strip()
        entries.append(entry)
    first = entries[0] if entries else {}
    cores = {(e.get("physical id", "0"), e.get("core id", str(i))) for i, e in enumerate(entries)}
    mhz = [float(e["cpu MHz"]) for e in entries if _is_float(e.get("cpu MHz", ""))]
    flags = set(first.get("flags", "").split())
    family = first.get("cpu family", "")
    return {
        "model_name": first.get("model name", platform.processor() or "unknown"),
        "vendor": first.get("vendor_id", ""),
        "family": int(family) if family.isdigit() else None,
        "model": int(first["model"]) if first.get("model", "").isdigit() else None,
        "logical_cpus": len(entries) or os.cpu_count(),
        "physical_cores": len(cores) if entries else os.cpu_count(),
        "mhz": max(mhz) if mhz else None,
        "vector_flags": sorted(f for f in flags if f in (
            "sse4_2", "avx", "avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "amx_tile")),
        "machine": platform.machine(),
    }


def _is_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def flops_per_cycle(cpu: dict[str, Any]) -> tuple[int, str]:
    """FP32 FLOPs per cycle per core and the assumption behind it (see the module docstring)."""
    flags = set(cpu.get("vector_flags", ()))
    family = cpu.get("family") or 0
    vendor = cpu.get("vendor", "")
    if "avx512f" in flags and vendor == "AuthenticAMD" and family >= 0x1A:
        return 64, "AMD Zen 5 (family 0x1A): two 512-bit FMA pipes, 2 x 16 lanes x 2 FLOPs"
    if "avx512f" in flags and vendor == "AuthenticAMD":
        return 32, "AMD Zen 4: AVX-512 FMAs on two 256-bit pipes, 2 x 8 lanes x 2 FLOPs"
    if "avx512f" in flags:
        return 64, "AVX-512 with two FMA units (one-unit parts reach half), 2 x 16 x 2 FLOPs"
    if {"avx2", "fma"} <= flags:
        return 32, "AVX2 with two 256-bit FMA units, 2 x 8 lanes x 2 FLOPs"
    return 8, "no FMA: one 4-lane add and one 4-lane multiply per cycle"


def peak_gflops(cpu: dict[str, Any], ghz: float | None = None,
                per_cycle: int | None = None) -> dict[str, Any]:
    """{"gflops", "cores", "ghz", "flops_per_cycle", "assumption"} for FP32 on all cores."""
    assumed_per_cycle, why = flops_per_cycle(cpu)
    if per_cycle:
        assumed_per_cycle, why = per_cycle, "given on the command line"
    clock = ghz or ((cpu.get("mhz") or 0.0) / 1000.0)
    cores = cpu.get("physical_cores") or 1
    return {
        "gflops": cores * clock * assumed_per_cycle,
        "cores": cores,
        "ghz": clock,
        "ghz_source": "given on the command line" if ghz else "max 'cpu MHz' in /proc/cpuinfo",
        "flops_per_cycle": assumed_per_cycle,
        "assumption": why,
    }


def enfuse_binary() -> str | None:
    return shutil.which("enfuse")


def enfuse_version() -> str | None:
    binary = enfuse_binary()
    if binary is None:
        return None
    try:
        out = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=30,
                             check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    line = (out.stdout or out.stderr).strip().splitlines()
    return line[0] if line else "unknown"


def _module_version(name: str) -> str | None:
    try:
        module = importlib.import_module(name)
    except ImportError:
        return None
    return getattr(module, "__version__", "unknown")


def versions() -> dict[str, str | None]:
    """Python, the libraries that do the work, enfuse, and the project's git commit."""
    from importlib import metadata

    def dist(name: str) -> str | None:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return None

    commit = None
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    try:
        out = subprocess.run(["git", "-C", root, "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True, timeout=10, check=False)
        commit = out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        pass
    return {
        "python": platform.python_version(),
        "tensorflow": dist("tensorflow"),
        "keras": dist("keras"),
        "numpy": _module_version("numpy"),
        "scipy": _module_version("scipy"),
        "scikit-image": dist("scikit-image"),
        "opencv": dist("opencv-python-headless"),
        "ai-edge-litert": dist("ai-edge-litert"),
        "enfuse": enfuse_version(),
        "git_commit": commit,
    }


def describe_machine(ghz: float | None = None, per_cycle: int | None = None) -> dict[str, Any]:
    cpu = read_cpuinfo()
    total_mb = None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    total_mb = int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return {"cpu": cpu, "memory_mb": total_mb, "peak": peak_gflops(cpu, ghz, per_cycle)}


# ------------------------------------------------------------------ memory of this process


def _status_kb(key: str) -> float | None:
    try:
        with open(_STATUS) as f:
            for line in f:
                if line.startswith(key + ":"):
                    return float(line.split()[1])
    except OSError:
        return None
    return None


def rss_mb() -> float | None:
    """Resident memory now."""
    kb = _status_kb("VmRSS")
    return None if kb is None else kb / 1024.0


def peak_rss_mb() -> float | None:
    """Largest resident memory since start (or since `reset_peak_rss`)."""
    kb = _status_kb("VmHWM")
    if kb is None:
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    return kb / 1024.0


def reset_peak_rss() -> bool:
    """Restarts the peak at the current RSS (Linux clear_refs "5"); False if unsupported."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return False
    return True
