"""Markdown tables of a results dict (see `benchmarks.suite`), one per section.

Ratios: the fusion, whole-process, stack and quality sections compare every method with
enfuse and with refined (the default `fuse_arrays` call): "this / enfuse" is the row's time
(or peak memory) divided by enfuse's in the same run, at the same size; above 1 the row is
slower (or larger). A table without refined rows (a file measured while coarse_to_fine was
the default) gives its ratios to coarse_to_fine instead, and says so in its header.

Scaling: for each method the time and the memory increment (peak RSS minus the RSS after
set-up) are fitted as c * MP^k over the measured sizes of at least `MIN_FIT_MEGAPIXELS`
(least squares on logs); k near 1 is linear, and k above `SUPERLINEAR` is flagged.

Rows measured before the coarse-to-fine default (methods "compact", "paper" as a preset,
"model", "model_one_scale") stay in the JSON file but are left out of the tables.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from benchmarks import methods as methods_lib

SUPERLINEAR = 1.15
MIN_FIT_MEGAPIXELS = 0.25  # below, fixed costs (calls, process start) hide the growth
LYTRO_METRICS = ("MI", "TE", "NCIE", "Q_Y", "Q_CB", "Q_G", "Q_M", "SF")


# The methods in table order, each process-only variant (`--engine=tensorflow`) after its base.
METHOD_ORDER = {m: i for i, m in enumerate(
    v for m in methods_lib.METHODS
    for v in (m, *(k for k, (base, _) in methods_lib.PROCESS_VARIANTS.items() if base == m)))}
COMPARED = ("fusion", "whole_process", "stack", "quality")  # sections of METHODS
BASELINE = "enfuse"
REFERENCE = methods_lib.REFERENCE
# The reference of files measured while coarse_to_fine was the default (no refined rows).
PREVIOUS_REFERENCE = "coarse_to_fine"


def _reference(methods) -> str:
    """The method a table's ratios are given to: `REFERENCE`, or for a table without it (a
    file measured before the refined default) `PREVIOUS_REFERENCE` when that has rows."""
    methods = set(methods)
    if REFERENCE not in methods and PREVIOUS_REFERENCE in methods:
        return PREVIOUS_REFERENCE
    return REFERENCE


def _key_parts(key: str) -> tuple[str, int, int]:
    """(method, pixels, frames) from a key like fusion/<method>/<W>x<H>[/N<frames>]."""
    parts = key.split("/")
    method = parts[1] if len(parts) > 1 else ""
    pixels = frames = 0
    for part in parts[2:]:
        if part.startswith("N") and part[1:].isdigit():
            frames = int(part[1:])
        elif "x" in part:
            try:
                width, height = (int(v) for v in part.split("x"))
                pixels = width * height
            except ValueError:
                pass
    return method, pixels, frames


def _current(key: str, row: dict[str, Any]) -> bool:
    """A row of the methods compared today (not one measured before coarse-to-fine became
    the default: those had no "mode", or another method name)."""
    method = row.get("method") or _key_parts(key)[0]
    if method not in METHOD_ORDER:
        return False
    return not methods_lib.uses_model(method) or "error" in row or "unavailable" in row \
        or "mode" in row


def _retired(results: dict[str, Any], section: str) -> int:
    rows = results.get("sections", {}).get(section, {}).get("rows", {})
    return sum(not _current(k, r) for k, r in rows.items())


def _rows(results: dict[str, Any], section: str) -> list[tuple[str, dict[str, Any]]]:
    """(key, row) of a section: the last plan's order, then rows of earlier runs. Rows of
    the compared sections are sorted by method, then size, then depth; retired rows are
    left out."""
    store = results.get("sections", {}).get(section)
    if not store:
        return []
    rows = store.get("rows", {})
    order = [k for k in store.get("order", []) if k in rows]
    order += sorted(k for k in rows if k not in order)
    if section in COMPARED:
        order = [k for k in order if _current(k, rows[k])]

        def rank(key: str):
            method, pixels, frames = _key_parts(key)
            return METHOD_ORDER.get(method, 9), method, pixels, frames
        order.sort(key=rank)
    return [(k, rows[k]) for k in order]


def _ok(row: dict[str, Any]) -> bool:
    return "error" not in row and "unavailable" not in row


def _ratio(a: dict[str, Any] | None, b: dict[str, Any] | None, wall: str = "median_wall_s",
           cpu: str | None = "median_cpu_s") -> str:
    """a's time over b's: wall-clock, CPU time in brackets."""
    if not a or not b or not a.get(wall) or not b.get(wall):
        return ""
    cell = _f(a[wall] / b[wall])
    if cpu and a.get(cpu) and b.get(cpu):
        cell += f" ({_f(a[cpu] / b[cpu])})"
    return cell


def _memory_ratio(a: dict[str, Any] | None, b: dict[str, Any] | None) -> str:
    if not a or not b or not a.get("peak_rss_mb") or not b.get("peak_rss_mb"):
        return ""
    return _f(a["peak_rss_mb"] / b["peak_rss_mb"])


def _mode(row: dict[str, Any]) -> str:
    """How a model row ran: mode, working side or scales, and precision (rows measured
    before the precision was recorded ran in float32)."""
    if not row.get("mode"):
        return ""
    precision = row.get("precision") or "float32"
    if row["mode"] == "coarse_to_fine":
        return f"coarse_to_fine, side {row.get('working_side')}, {precision}"
    scales = row.get("scales") or [1.0]
    return f"{row['mode']}, scales " + " + ".join(_f(v) for v in scales) + f", {precision}"


def _retired_note(results: dict[str, Any], section: str) -> str:
    n = _retired(results, section)
    return (f"{n} row(s) measured before the coarse-to-fine default are kept in the JSON file "
            "and not shown.") if n else ""


def _f(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return ""
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return str(value)
    if abs(value) >= 1000:
        return f"{value:.0f}"
    return f"{value:.{digits}g}"


def _table(header: list[str], lines: list[list[str]]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(line) + " |" for line in lines]
    return "\n".join(out)


def _failed(key: str, row: dict[str, Any], width: int) -> list[str]:
    reason = row.get("error") or row.get("unavailable", "")
    return [key.split("/", 1)[-1], f"**not measured**: {reason}"] + [""] * (width - 2)


def fit_exponent(x: list[float], y: list[float]) -> float | None:
    """k of y = c * x^k by least squares on logs (None with fewer than two points)."""
    pts = [(a, b) for a, b in zip(x, y) if a and b and a > 0 and b > 0]
    if len(pts) < 2 or len({a for a, _ in pts}) < 2:
        return None
    lx, ly = np.log([a for a, _ in pts]), np.log([b for _, b in pts])
    return float(np.polyfit(lx, ly, 1)[0])


def header(results: dict[str, Any]) -> str:
    m = results.get("machine", {})
    cpu, peak = m.get("cpu", {}), m.get("peak", {})
    v = results.get("versions", {})
    run = results.get("runs", [{}])[-1]
    lines = [
        f"Machine: {cpu.get('model_name')} ({cpu.get('family')}/{cpu.get('model')}), "
        f"{cpu.get('physical_cores')} cores / {cpu.get('logical_cpus')} CPUs at "
        f"{_f(peak.get('ghz'))} GHz, {_f((m.get('memory_mb') or 0) / 1024)} GB RAM; "
        f"vector units: {', '.join(cpu.get('vector_flags', []))}.",
        f"FP32 peak estimate: {_f(peak.get('gflops'))} GFLOP/s = {peak.get('cores')} cores x "
        f"{_f(peak.get('ghz'))} GHz x {peak.get('flops_per_cycle')} FLOPs/cycle "
        f"({peak.get('assumption')}; clock: {peak.get('ghz_source')}).",
        "Software: " + ", ".join(f"{k} {val}" for k, val in v.items() if val) + ".",
        f"Last run: started {run.get('started')}, 1-min load average "
        f"{_f(run.get('load_average_start'))} at start, {_f(run.get('load_average_end'))} at "
        f"end{' (--quick)' if run.get('quick') else ''}; up to {run.get('repeats')} timed runs "
        f"after a warm-up, median reported, within {_f(run.get('budget_s'))} s per configuration.",
    ]
    return "\n".join(lines)


# ------------------------------------------------------------------------------ fusion


def _by_size(rows):
    out: dict[tuple[int, int], dict[str, dict]] = {}
    for _, row in rows:
        if not _ok(row):
            continue
        out.setdefault((row["width"], row["height"]), {})[row["method"]] = row
    return out


def _tile(row: dict[str, Any]) -> str:
    """Where G ran: its input size for the modes with R (refined: the full size;
    coarse_to_fine: the working resolution), whole image or tiles, R's levels."""
    if "tile_size" not in row:
        return ""
    where = f"{row['tile_size']} px tiles" if row["tile_size"] else "whole image"
    if row.get("mode") in methods_lib.REFINED_MODES and row.get("network_input"):
        w, h = row["network_input"]
        levels = row.get("refiner_levels")
        return f"{w}x{h}, {where}" + (f"; R on {levels} level(s)" if levels else "")
    return where


def fusion_table(results: dict[str, Any]) -> str:
    rows = _rows(results, "fusion")
    if not rows:
        return _retired_note(results, "fusion")
    by_size = _by_size(rows)
    head = ["method", "size", "MP", "mode", "runs", "total (s)", "CPU (s)", "F_hat: G (+ R) (s)",
            "SRR (s)", "eq. 14 (s)", "s per MP", "CPU s per MP", "peak RSS (MB)",
            "RSS after set-up (MB)", "G runs on"]
    lines = []
    for key, row in rows:
        if not _ok(row):
            lines.append(_failed(key, row, len(head)))
            continue
        split = row.get("split_s", {})
        total, cpu = row["median_wall_s"], row.get("median_cpu_s")
        runs = str(row["runs"]) + (" (capped)" if row.get("repeats_note") else "")
        lines.append([
            row["method"], f"{row['width']}x{row['height']}", _f(row["megapixels"]),
            _mode(row), runs, _f(total), _f(cpu), _f(split.get("network", split.get("focus"))),
            _f(split.get("srr")), _f(split.get("fusion")), _f(total / row["megapixels"]),
            _f(cpu / row["megapixels"]) if cpu else "", _f(row.get("peak_rss_mb")),
            _f(row.get("setup_rss_mb")), _tile(row)])
    notes = [n for n in (_capped_note(rows), _retired_note(results, "fusion")) if n]
    return "\n\n".join(t for t in (_table(head, lines), "\n".join(notes),
                                     comparison_table(by_size), scaling_notes(rows)) if t)


def _capped_note(rows) -> str:
    capped = sorted({r["repeats_note"] for _, r in rows if r.get("repeats_note")})
    return ("\"(capped)\": " + "; ".join(capped) + ".") if capped else ""


def comparison_table(by_size: dict[tuple[int, int], dict[str, dict]]) -> str:
    """Per size: each method's time and peak memory, and its ratio to enfuse and to refined
    (wall-clock, CPU time in brackets)."""
    if not by_size:
        return ""
    reference = _reference(m for methods in by_size.values() for m in methods)
    head = ["size", "method", "total (s)", "CPU (s)", "peak RSS (MB)",
            f"this / {BASELINE} (time)", f"this / {reference} (time)",
            f"this / {BASELINE} (peak RSS)", f"this / {reference} (peak RSS)"]
    lines = []
    for (w, h), methods in sorted(by_size.items(), key=lambda item: item[0][0] * item[0][1]):
        base, ref = methods.get(BASELINE), methods.get(reference)
        for method in sorted(methods, key=lambda m: METHOD_ORDER.get(m, 9)):
            row = methods[method]
            lines.append([f"{w}x{h}", method, _f(row["median_wall_s"]),
                          _f(row.get("median_cpu_s")), _f(row.get("peak_rss_mb")),
                          _ratio(row, base), _ratio(row, ref), _memory_ratio(row, base),
                          _memory_ratio(row, ref)])
    return (f"Every method against enfuse and against {reference} at each size: time ratio "
            "wall-clock (CPU time in brackets) and peak-memory ratio; above 1 means this row "
            f"is slower or larger (e.g. the {reference} row's \"this / enfuse\" is "
            f"{reference} / enfuse):\n\n" + _table(head, lines))


def scaling_notes(rows) -> str:
    methods: dict[str, list[dict]] = {}
    for _, row in rows:
        if not _ok(row) or row["megapixels"] < MIN_FIT_MEGAPIXELS:
            continue
        methods.setdefault(row["method"], []).append(row)
    notes = []
    for method, items in methods.items():
        mp = [r["megapixels"] for r in items]
        parts = {"time": fit_exponent(mp, [r["median_wall_s"] for r in items])}
        if all(r.get("median_cpu_s") for r in items):
            parts["CPU time"] = fit_exponent(mp, [r["median_cpu_s"] for r in items])
        for part in ("network", "focus", "srr", "fusion"):
            values = [r.get("split_s", {}).get(part) for r in items]
            if all(values):
                parts[part] = fit_exponent(mp, values)
        grow = [(r.get("peak_rss_mb") or 0) - (r.get("setup_rss_mb") or 0) for r in items]
        if all(g > 0 for g in grow) and all(r.get("setup_rss_mb") for r in items):
            parts["memory increment"] = fit_exponent(mp, grow)
        elif method == "enfuse":
            parts["memory"] = fit_exponent(mp, [r.get("peak_rss_mb") for r in items])
        text = ", ".join(f"{name} MP^{k:.2f}"
                         + (" **faster than linear**" if k > SUPERLINEAR else "")
                         for name, k in parts.items() if k is not None)
        if text:
            notes.append(f"- {method} ({len(items)} sizes): {text}")
    return "Growth with the pixel count (fit c * MP^k):\n" + "\n".join(notes) if notes else ""


def per_frame_fit(points: list[tuple[int, float]]) -> tuple[float, float] | None:
    """(seconds per added frame, fixed seconds) of total = fixed + slope * N by least
    squares over the measured depths (None with fewer than two depths)."""
    if len({n for n, _ in points}) < 2:
        return None
    slope, fixed = np.polyfit([n for n, _ in points], [t for _, t in points], 1)
    return float(slope), float(fixed)


def stack_table(results: dict[str, Any]) -> str:
    rows = _rows(results, "stack")
    if not rows:
        return _retired_note(results, "stack")
    head = ["method", "frames N", "size", "runs", "total (s)", "CPU (s)",
            "total / (N - 1) (s)", "F_hat: G (+ R) (s)", "SRR (s)", "eq. 14 (s)", "peak RSS (MB)",
            "PSNR vs all-sharp (dB)"]
    lines, fits = [], {}
    groups: dict[tuple[int, int], dict[str, list[dict]]] = {}
    for key, row in rows:
        if not _ok(row):
            lines.append(_failed(key, row, len(head)))
            continue
        split = row.get("split_s", {})
        total = row["median_wall_s"]
        size = f"{row['width']}x{row['height']}"
        fits.setdefault((row["method"], size), []).append((row["depth"] - 1, total))
        groups.setdefault((row["width"], row["height"]), {}).setdefault(
            row["method"], []).append(row)
        lines.append([row["method"], str(row["depth"]), f"{row['width']}x{row['height']}",
                      str(row["runs"]), _f(total), _f(row.get("median_cpu_s")),
                      _f(total / (row["depth"] - 1)),
                      _f(split.get("network", split.get("focus"))), _f(split.get("srr")),
                      _f(split.get("fusion")), _f(row.get("peak_rss_mb")), _psnr(row)])
    notes = []
    several = len({size for _, size in fits}) > 1
    for (method, size), pts in fits.items():
        k = fit_exponent([p[0] for p in pts], [p[1] for p in pts])
        if k is not None:
            notes.append(f"- {method}{f' at {size}' if several else ''}: time ~ (N - 1)^{k:.2f}"
                         + (" **faster than linear**" if k > SUPERLINEAR else ""))
    parts = [_table(head, lines), per_frame_table(groups)]
    if notes:
        parts.append("Growth with the number of pair fusions N - 1:\n" + "\n".join(notes))
    parts.append(_retired_note(results, "stack"))
    return "\n\n".join(p for p in parts if p)


def _psnr(row: dict[str, Any]) -> str:
    """A row's PSNR against the all-sharp image: "exact" when equal, "" when not measured
    (rows of earlier runs)."""
    if "psnr_db" not in row:
        return ""
    return "exact" if row["psnr_db"] is None else f"{row['psnr_db']:.2f}"


def per_frame_table(groups: dict[tuple[int, int], dict[str, list[dict]]]) -> str:
    """Per size and method: the cost of each added frame (the slope of total time over N),
    its ratio to enfuse's and refined's, and the totals at N = 6 (or the largest N)."""
    lines, shown_depths = [], set()
    reference = _reference(m for methods in groups.values() for m in methods)
    for (w, h), methods in sorted(groups.items(), key=lambda item: item[0][0] * item[0][1]):
        depths = sorted({r["depth"] for rs in methods.values() for r in rs})
        shown = 6 if 6 in depths else depths[-1]
        shown_depths.add(shown)
        slopes: dict[str, dict[str, float]] = {}
        for method, items in methods.items():
            wall = per_frame_fit([(r["depth"], r["median_wall_s"]) for r in items])
            cpu = per_frame_fit([(r["depth"], r["median_cpu_s"]) for r in items
                                 if r.get("median_cpu_s")])
            if wall:
                slopes[method] = {"median_wall_s": wall[0], "fixed": wall[1],
                                  "median_cpu_s": cpu[0] if cpu else None}
        at = {m: next((r for r in items if r["depth"] == shown), None)
              for m, items in methods.items()}
        for method in sorted(methods, key=lambda m: METHOD_ORDER.get(m, 9)):
            slope = slopes.get(method)
            lines.append([
                f"{w}x{h}", method, ",".join(str(r["depth"]) for r in
                                             sorted(methods[method], key=lambda r: r["depth"])),
                _f(slope["median_wall_s"]) if slope else "",
                _f(slope["median_cpu_s"]) if slope else "",
                _f(slope["fixed"]) if slope else "",
                _ratio(slope, slopes.get(BASELINE)), _ratio(slope, slopes.get(reference)),
                _f(at[method]["median_wall_s"]) if at[method] else "",
                _ratio(at[method], at.get(BASELINE)), _ratio(at[method], at.get(reference))])
    if not lines:
        return ""
    n = f"N={shown_depths.pop()}" if len(shown_depths) == 1 else "N=6 (else largest N)"
    head = ["size", "method", "N measured", "per added frame (s)", "CPU per added frame (s)",
            "fixed (s)", f"per frame: this / {BASELINE}", f"per frame: this / {reference}",
            f"total at {n} (s)", f"{n} total: this / {BASELINE}",
            f"{n} total: this / {reference}"]
    return ("Cost of each added frame: total = fixed + per added frame x N, fitted over the "
            "measured N (so enfuse's start-up and our set-up land in \"fixed\"); ratios "
            "wall-clock (CPU in brackets):\n\n" + _table(head, lines))


def formats_table(results: dict[str, Any]) -> str:
    rows = _rows(results, "formats")
    if not rows:
        return ""
    export = results["sections"]["formats"].get("export", {})
    head = ["format", "runs what", "runs", "wall (s)", "CPU (s)", "agreement with Keras (%)",
            "max abs F_hat diff", "size (MB)", "peak RSS (MB)"]
    lines = []
    for key, row in rows:
        if "error" in row:
            lines.append(_failed(key, row, len(head)))
            continue
        lines.append([key.split("/", 1)[1], row["runs_what"], str(row["runs"]),
                      _f(row["median_wall_s"]), _f(row["median_cpu_s"]),
                      f"{row['f_final_agreement_pct']:.3f} ({row['agreement_of']})",
                      f"{row['max_abs_f_hat_diff']:.1e}", _f(row.get("size_mb")),
                      _f(row.get("peak_rss_mb"))])
    note = (f"Weights: {export.get('weights')}; mode {export.get('mode', 'paper')} (G at full "
            "resolution); 520x520 synthetic pair.") if export else ""
    return _table(head, lines) + ("\n\n" + note if note else "")


def srr_table(results: dict[str, Any]) -> str:
    rows = _rows(results, "srr")
    for key, row in rows:
        if "error" in row:
            return f"SRR: **not measured**: {row['error']}"
        return row.get("markdown", "")
    return ""


def quality_table(results: dict[str, Any]) -> str:
    rows = _rows(results, "quality")
    if not rows:
        notes = results.get("sections", {}).get("quality", {}).get("notes", [])
        return "; ".join(n for n in notes + [_retired_note(results, "quality")] if n)
    ok = {r["method"]: r for _, r in rows if _ok(r)}
    reference = _reference(ok)
    base, ref = ok.get(BASELINE), ok.get(reference)
    head = ["method", "mode", "s per pair (median)", "CPU s per pair",
            f"this / {BASELINE} (time)", f"this / {reference} (time)", *LYTRO_METRICS]
    lines = []
    for key, row in rows:
        if not _ok(row):
            lines.append(_failed(key, row, len(head)))
            continue
        lines.append([row["method"], _mode(row), _f(row["median_wall_s"]),
                      _f(row.get("median_cpu_s")), _ratio(row, base), _ratio(row, ref),
                      *[_f(row["metrics"].get(m), 4) for m in LYTRO_METRICS]])
    notes = [_weights_note(ok), _retired_note(results, "quality")]
    if base:
        notes.append("enfuse's time is its whole process on the JPEG files (start-up, decode, "
                     "blend, TIFF write); ours is the fuse_arrays call on decoded arrays.")
    pairs = {r.get("pairs") for r in ok.values()}
    return _table(head, lines) + "".join(
        "\n\n" + n for n in [f"Pairs: {', '.join(str(p) for p in sorted(pairs))}; ratios "
                             "wall-clock (CPU in brackets)."] + notes if n)


def _weights_note(ok: dict[str, dict[str, Any]]) -> str:
    """The weights our rows used: G's preset, step and hash; R's source, steps and hash."""
    g = next((r.get("weights") for r in ok.values() if isinstance(r.get("weights"), dict)), None)
    r = next((row.get("refiner") for row in ok.values() if isinstance(row.get("refiner"), dict)),
             None)
    parts = []
    if g:
        parts.append(f"G: the {g.get('preset')} preset, training step {g.get('step')}, weights "
                     f"sha256 {g.get('hash')}")
    if r:
        parts.append(f"R: {r.get('source')}, {r.get('steps')} steps, weights sha256 "
                     f"{r.get('hash')}")
    return ("Our model: " + "; ".join(parts) + ".") if parts else ""


def whole_process_table(results: dict[str, Any]) -> str:
    rows = _rows(results, "whole_process")
    if not rows:
        return ""
    ok = {r["method"]: r for _, r in rows if _ok(r)}
    reference = _reference(ok)
    base, ref = ok.get(BASELINE), ok.get(reference)
    head = ["method", "command", "size", "runs", "median wall (s)", "CPU (s)",
            "fusion inside (s)", "start-up, I/O and rest (s)", "first run (s)",
            "peak RSS (MB)", f"this / {BASELINE} (time)", f"this / {reference} (time)",
            f"this / {BASELINE} (peak RSS)"]
    lines = []
    for key, row in rows:
        if not _ok(row):
            lines.append(_failed(key, row, len(head)))
            continue
        inside = row.get("median_in_process_s")
        lines.append([row["method"], f"`{row.get('command', '')}`",
                      f"{row['width']}x{row['height']}", str(row["runs"]),
                      _f(row["median_wall_s"]), _f(row.get("median_cpu_s")), _f(inside),
                      _f(row["median_wall_s"] - inside) if inside is not None else "",
                      _f(row.get("first_run_s")), _f(row.get("peak_rss_mb")),
                      _ratio(row, base), _ratio(row, ref), _memory_ratio(row, base)])
    return _table(head, lines) + (
        "\n\nEach command runs as its own process on PNG files and writes a PNG; the median "
        "of the timed runs after one untimed run (which fills the page cache; its time is "
        "\"first run\"). CPU time and peak RSS are the child's. \"fusion inside\" is the "
        "time mfif_tf.fuse reports for the fuse_arrays call; the rest is Python and "
        "TensorFlow start-up, loading G and R, reading and writing the images.")


def training_table(results: dict[str, Any]) -> str:
    rows = _rows(results, "training")
    if not rows:
        return ""
    head = ["preset", "batch", "size", "XLA", "warm-up (L1) steps/s", "critic steps/s",
            "generator steps/s", "iterations/s (5 D + 1 G)", "warm-up examples/s",
            "first call (s) w/c/g", "peak RSS (MB)"]
    lines = []
    for key, row in rows:
        if "error" in row:
            lines.append(_failed(key, row, len(head)))
            continue
        first = "/".join(_f(row[f"{n}_first_call_s"], 2) for n in ("warmup", "critic", "generator"))
        lines.append([row["preset"], str(row["batch"]), str(row["size"]),
                      "yes" if row["jit_compile"] else "no", _f(row["warmup_steps_per_s"]),
                      _f(row["critic_steps_per_s"]), _f(row["generator_steps_per_s"]),
                      _f(row["adversarial_iterations_per_s"]), _f(row["warmup_examples_per_s"]),
                      first, _f(row.get("peak_rss_mb"))])
    return _table(head, lines)


def pipeline_table(results: dict[str, Any]) -> str:
    rows = _rows(results, "pipeline")
    if not rows:
        return ""
    head = ["source", "setting", "batch", "size", "crop", "examples/s"]
    lines = []
    for key, row in rows:
        if "error" in row:
            lines.append(_failed(key, row, len(head)))
            continue
        lines.append([row["source"], key.rsplit("/", 1)[1], str(row["batch"]), str(row["size"]),
                      row["crop"], _f(row["examples_per_s"])])
    notes = results["sections"]["pipeline"].get("notes", [])
    return _table(head, lines) + ("\n\n" + "; ".join(notes) if notes else "")


def _peak_for(results: dict[str, Any], threads: int | None) -> float | None:
    """The nominal peak of the cores `threads` can use (0 or None: all)."""
    peak = results.get("machine", {}).get("peak", {})
    if not peak.get("gflops"):
        return None
    cores = peak.get("cores") or 1
    used = min(threads or cores, cores)
    return peak["gflops"] * used / cores


def flops_table(results: dict[str, Any]) -> str:
    rows = _rows(results, "flops")
    if not rows or "error" in rows[0][1]:
        return f"FLOPs: **not measured**: {rows[0][1]['error']}" if rows else ""
    data = rows[0][1]
    threads = data.get("threads")
    matmul = data.get("matmul", {})
    fusion = [r for _, r in _rows(results, "fusion") if _ok(r)]
    head = ["preset", "parameters", "GFLOP per MP", "stem / blocks / decoder", "TF op count",
            "measured", "G time (s)", "GFLOP/s", "% of nominal peak", "GFLOP per CPU-s",
            "% of matmul per CPU-s"]
    lines = []
    for preset, info in data["presets"].items():
        check = info["tf_conv2d_per_pixel"] == info["analytic_conv2d_per_pixel"]
        transposed = info.get("tf_conv2d_transpose_per_pixel")
        if transposed is not None:
            check = check and transposed == info["analytic_conv2d_transpose_per_pixel"]
        base = [preset, f"{info['parameters']:,}", _f(info["gflop_per_megapixel"], 4),
                f"{_f(info['stem_gflop_per_mp'])} / {_f(info['blocks_gflop_per_mp'])} / "
                f"{_f(info['decoder_gflop_per_mp'])}", "equal" if check else "**differs**"]
        side = info.get("network_side")
        measured = []
        if side:
            peak = _peak_for(results, threads)
            per_cpu = info["network_gflops_per_cpu_second"]
            measured.append([
                f"tf.function, whole {side}x{side}", _f(info["network"]["median_wall_s"]),
                _f(info["network_gflops_wall"]),
                _f(100 * info["network_gflops_wall"] / peak) if peak else "", _f(per_cpu),
                _f(100 * per_cpu / matmul["gflops_per_cpu_second"]) if matmul else ""])
        for r in fusion:
            # G alone at full resolution: the paper mode's single pass with this preset.
            seconds = r.get("split_s", {}).get("network")
            if r.get("method") != "paper" or r.get("preset") != preset or not seconds:
                continue
            rate = info["gflop_per_megapixel"] * r["megapixels"] / seconds
            peak = _peak_for(results, r.get("threads"))
            tile = f"tiles {r['tile_size']}" if r.get("tile_size") else "whole"
            measured.append([f"fuse_arrays mode paper {r['width']}x{r['height']} ({tile})",
                             _f(seconds),
                             _f(rate), _f(100 * rate / peak) if peak else "", "", ""])
        for values in measured or [[""] * 6]:
            lines.append(base + values)
            base = [""] * 5
    text = _table(head, lines)
    if matmul:
        text += (f"\n\nReference: a {matmul['n']}x{matmul['n']} float32 matmul reaches "
                 f"{_f(matmul['gflops_wall'])} GFLOP/s wall and "
                 f"{_f(matmul['gflops_per_cpu_second'])} GFLOP per CPU-second (one core's "
                 "nominal peak is "
                 f"{_f(_peak_for(results, 1))}). GFLOP per CPU-second does not drop when other "
                 "processes share the CPU, so it is the number to compare under load.")
        per_cycle = results.get("machine", {}).get("peak", {}).get("flops_per_cycle")
        one_core = _peak_for(results, 1)
        if per_cycle and one_core and matmul["gflops_per_cpu_second"] > one_core:
            text += (f" The matmul beats one core's nominal peak, so the cores run faster than "
                     f"the clock in /proc/cpuinfo: at least "
                     f"{matmul['gflops_per_cpu_second'] / per_cycle:.2f} GHz at {per_cycle} "
                     "FLOPs per cycle (boost); the nominal-peak percentages are too high by the "
                     "same factor (--cpu_ghz corrects them).")
    return text + (
        "\n\nConvolution FLOPs (2 per multiply-add) counted from the layer shapes; "
        "\"TF op count\" compares them with TensorFlow's own per-op FLOP statistics on a "
        f"{data['probe_side']}x{data['probe_side']} concrete function. fuse_arrays rows time G "
        "inside the user-facing call in mode paper (eager, tiled where the image is large), "
        "from the fusion section's \"paper\" rows (the packaged model's preset).")


def markdown(results: dict[str, Any]) -> str:
    """All tables with their headings."""
    parts = ["## Machine\n\n" + header(results)]
    for title, fn in (("Fusion of a pair", fusion_table),
                      ("Whole process: one 520x520 pair from the command line",
                       whole_process_table),
                      ("Focus stacks", stack_table),
                      ("Export formats (compact model, mode paper, 520x520)", formats_table),
                      ("Small region removal: TF op vs skimage", srr_table),
                      ("Lytro: time and quality against the baselines", quality_table),
                      ("Training steps", training_table), ("Input pipeline alone", pipeline_table),
                      ("Arithmetic: FLOPs and the fraction of peak", flops_table)):
        body = fn(results)
        if body:
            parts.append(f"## {title}\n\n{body}")
    return "\n\n".join(parts) + "\n"
