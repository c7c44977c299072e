"""Markdown tables of a results dict (see `benchmarks.suite`), one per section.

Scaling: for each method the time and the memory increment (peak RSS minus the RSS after
set-up) are fitted as c * MP^k over the measured sizes of at least `MIN_FIT_MEGAPIXELS`
(least squares on logs); k near 1 is linear, and k above `SUPERLINEAR` is flagged.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

SUPERLINEAR = 1.15
MIN_FIT_MEGAPIXELS = 0.25  # below, fixed costs (calls, process start) hide the growth
LYTRO_METRICS = ("MI", "TE", "NCIE", "Q_Y", "Q_CB", "Q_G", "Q_M", "SF")


METHOD_ORDER = {"compact": 0, "paper": 1, "classical": 2, "enfuse": 3}


def _rows(results: dict[str, Any], section: str) -> list[tuple[str, dict[str, Any]]]:
    """(key, row) of a section: the last plan's order, then rows of earlier runs. Fusion and
    stack rows are sorted by method, then size or depth."""
    store = results.get("sections", {}).get(section)
    if not store:
        return []
    rows = store.get("rows", {})
    order = [k for k in store.get("order", []) if k in rows]
    order += sorted(k for k in rows if k not in order)
    if section in ("fusion", "stack"):
        def rank(key: str):
            _, method, what = key.split("/", 2)
            if what.startswith("N"):
                size = int(what[1:])
            else:
                width, height = (int(v) for v in what.split("x"))
                size = width * height
            return METHOD_ORDER.get(method, 9), method, size
        order.sort(key=rank)
    return [(k, rows[k]) for k in order]


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
        if "error" in row or "unavailable" in row:
            continue
        out.setdefault((row["width"], row["height"]), {})[row["method"]] = row
    return out


def _tile(row: dict[str, Any]) -> str:
    if "tile_size" not in row:
        return ""
    return f"{row['tile_size']} px" if row["tile_size"] else "whole image"


def fusion_table(results: dict[str, Any]) -> str:
    rows = _rows(results, "fusion")
    if not rows:
        return ""
    by_size = _by_size(rows)
    head = ["method", "size", "MP", "runs", "total (s)", "CPU (s)", "G / focus (s)", "SRR (s)",
            "eq. 14 (s)", "s per MP", "CPU s per MP", "peak RSS (MB)", "RSS after set-up (MB)",
            "G runs on"]
    lines = []
    for key, row in rows:
        if "error" in row or "unavailable" in row:
            lines.append(_failed(key, row, len(head)))
            continue
        split = row.get("split_s", {})
        total, cpu = row["median_wall_s"], row.get("median_cpu_s")
        lines.append([
            row["method"], f"{row['width']}x{row['height']}", _f(row["megapixels"]),
            str(row["runs"]), _f(total), _f(cpu), _f(split.get("network", split.get("focus"))),
            _f(split.get("srr")), _f(split.get("fusion")), _f(total / row["megapixels"]),
            _f(cpu / row["megapixels"]) if cpu else "", _f(row.get("peak_rss_mb")),
            _f(row.get("setup_rss_mb")), _tile(row)])
    return "\n\n".join(t for t in (_table(head, lines), ratio_table(by_size),
                                     scaling_notes(rows)) if t)


def ratio_table(by_size: dict[tuple[int, int], dict[str, dict]]) -> str:
    """Our time over the baselines' at each size: wall-clock, and CPU time in brackets."""
    pairs = [("compact", "enfuse"), ("compact", "classical"), ("paper", "enfuse"),
             ("paper", "classical"), ("classical", "enfuse")]
    present = [p for p in pairs if any(p[0] in m and p[1] in m for m in by_size.values())]
    if not present:
        return ""
    lines = []
    for (w, h), methods in sorted(by_size.items(), key=lambda item: item[0][0] * item[0][1]):
        cells = []
        for ours, theirs in present:
            if ours in methods and theirs in methods:
                a, b = methods[ours], methods[theirs]
                cell = _f(a["median_wall_s"] / b["median_wall_s"])
                if a.get("median_cpu_s") and b.get("median_cpu_s"):
                    cell += f" ({_f(a['median_cpu_s'] / b['median_cpu_s'])})"
                cells.append(cell)
            else:
                cells.append("")
        lines.append([f"{w}x{h}"] + cells)
    return ("Time ratios, wall-clock (CPU time in brackets); above 1 means the first is slower:"
            "\n\n" + _table(["size"] + [f"{a} / {b}" for a, b in present], lines))


def scaling_notes(rows) -> str:
    methods: dict[str, list[dict]] = {}
    for _, row in rows:
        if "error" in row or "unavailable" in row or row["megapixels"] < MIN_FIT_MEGAPIXELS:
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


def stack_table(results: dict[str, Any]) -> str:
    rows = _rows(results, "stack")
    if not rows:
        return ""
    head = ["method", "frames N", "size", "runs", "total (s)", "per added frame (s)",
            "G / focus (s)", "SRR (s)", "eq. 14 (s)", "peak RSS (MB)"]
    lines, fits = [], {}
    for key, row in rows:
        if "error" in row or "unavailable" in row:
            lines.append(_failed(key, row, len(head)))
            continue
        split = row.get("split_s", {})
        total = row["median_wall_s"]
        fits.setdefault(row["method"], []).append((row["depth"] - 1, total))
        lines.append([row["method"], str(row["depth"]), f"{row['width']}x{row['height']}",
                      str(row["runs"]), _f(total), _f(total / (row["depth"] - 1)),
                      _f(split.get("network", split.get("focus"))), _f(split.get("srr")),
                      _f(split.get("fusion")), _f(row.get("peak_rss_mb"))])
    notes = []
    for method, pts in fits.items():
        k = fit_exponent([p[0] for p in pts], [p[1] for p in pts])
        if k is not None:
            notes.append(f"- {method}: time ~ (N - 1)^{k:.2f}"
                         + (" **faster than linear**" if k > SUPERLINEAR else ""))
    return _table(head, lines) + ("\n\nGrowth with the number of pair fusions N - 1:\n"
                                  + "\n".join(notes) if notes else "")


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
    note = f"Weights: {export.get('weights')}; 520x520 synthetic pair." if export else ""
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
        return "; ".join(notes)
    ours = next((r for k, r in rows if k == "quality/model" and "error" not in r), None)
    head = ["method", "s per pair (median)", "CPU s per pair", "ours / this (time)",
            "ours / this (CPU)", *LYTRO_METRICS]
    lines = []
    for key, row in rows:
        if "error" in row or "unavailable" in row:
            lines.append(_failed(key, row, len(head)))
            continue
        ratio = cpu_ratio = ""
        if ours is not None and row is not ours:
            ratio = _f(ours["median_wall_s"] / row["median_wall_s"])
            if ours.get("median_cpu_s") and row.get("median_cpu_s"):
                cpu_ratio = _f(ours["median_cpu_s"] / row["median_cpu_s"])
        name = {"model": "MFIF-GAN (ours, default scales 1 + 1/2)",
                "model_one_scale": "MFIF-GAN (ours, one scale, --scales=1)"}.get(
                    row["method"], row["method"])
        lines.append([name, _f(row["median_wall_s"]), _f(row.get("median_cpu_s")), ratio,
                      cpu_ratio,
                      *[_f(row["metrics"].get(m), 4) for m in LYTRO_METRICS]])
    weights = ours.get("weights") if ours else None
    note = ""
    if isinstance(weights, dict):
        note = (f"Our model: the {weights.get('preset')} preset, training step "
                f"{weights.get('step')}, weights sha256 {weights.get('hash')}.")
    return _table(head, lines) + ("\n\n" + note if note else "")


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
    fusion = [r for _, r in _rows(results, "fusion") if "error" not in r and "unavailable" not in r]
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
            seconds = r.get("split_s", {}).get("network")
            if r["method"] != preset or not seconds:
                continue
            rate = info["gflop_per_megapixel"] * r["megapixels"] / seconds
            peak = _peak_for(results, r.get("threads"))
            tile = f"tiles {r['tile_size']}" if r.get("tile_size") else "whole"
            measured.append([f"fuse_arrays {r['width']}x{r['height']} ({tile})", _f(seconds),
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
        "inside the user-facing call (eager, tiled where the image is large).")


def markdown(results: dict[str, Any]) -> str:
    """All tables with their headings."""
    parts = ["## Machine\n\n" + header(results)]
    for title, fn in (("Fusion of a pair", fusion_table), ("Focus stacks", stack_table),
                      ("Export formats (compact model, 520x520)", formats_table),
                      ("Small region removal: TF op vs skimage", srr_table),
                      ("Lytro: time and quality against the baselines", quality_table),
                      ("Training steps", training_table), ("Input pipeline alone", pipeline_table),
                      ("Arithmetic: FLOPs and the fraction of peak", flops_table)):
        body = fn(results)
        if body:
            parts.append(f"## {title}\n\n{body}")
    return "\n\n".join(parts) + "\n"
