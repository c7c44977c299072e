"""Tables and plots of metric results: Table 1, Table 2 and Fig. 6(f) styles.

Plain data in, text or files out: per-image results are ``{stem: {metric: value}}``,
method means ``{method: {metric: value}}``, a diffusion study ``{k: {metric: value}}``.
"""

from __future__ import annotations

import csv
import io
import math
import pathlib
from typing import Mapping, Sequence

from mfif_tf.metrics import BEST_RULE, HIGHER_IS_BETTER

_ARROWS = {"max": "↑", "min": "↓", "zero": "→0"}

Row = Mapping[str, float]


def fmt(x: float, digits: int = 5) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return f"{x:.{digits}f}"


def _columns(rows: Sequence[Row]) -> list[str]:
    cols: list[str] = []
    for row in rows:
        cols += [k for k in row if k not in cols]
    return cols


def _md(header: Sequence[str], body: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in body]
    return "\n".join(lines) + "\n"


def markdown_per_image(per_image: Mapping[str, Row], mean: Row, title: str = "") -> str:
    """Images as rows, metrics as columns, then the mean row."""
    cols = _columns(list(per_image.values()))
    body = [[stem] + [fmt(row.get(c, math.nan)) for c in cols] for stem, row in per_image.items()]
    body.append(["**mean**"] + [fmt(mean.get(c, math.nan)) for c in cols])
    head = f"### {title}\n\n" if title else ""
    return head + _md(["image"] + cols, body)


def best_method(means: Mapping[str, Row], metric: str) -> str | None:
    """Best method for one metric (LIF lowest, SF closest to 0, else highest), None if none."""
    valid = {n: r[metric] for n, r in means.items() if metric in r and not math.isnan(r[metric])}
    if not valid:
        return None
    rule = BEST_RULE.get(metric, "max")
    if rule == "zero":
        return min(valid, key=lambda n: abs(valid[n]))
    return (max if rule == "max" else min)(valid, key=valid.get)


def markdown_comparison(means: Mapping[str, Row]) -> str:
    """Table 1 layout: metrics as rows, methods as columns, the best value in bold."""
    names = list(means)
    metrics = _columns(list(means.values()))
    body = []
    for m in metrics:
        best = best_method(means, m) if len(names) > 1 else None
        cells = []
        for n in names:
            cell = fmt(means[n].get(m, math.nan))
            cells.append(f"**{cell}**" if n == best else cell)
        arrow = _ARROWS[BEST_RULE.get(m, "max")]
        body.append([f"{m} {arrow}"] + cells)
    return _md(["metric"] + names, body)


def markdown_timing(timings: Mapping[str, Row]) -> str:
    """Table 2 layout: mean seconds per pair, methods as rows."""
    cols = _columns(list(timings.values()))
    body = [[n] + [fmt(t.get(c, math.nan), 4) for c in cols] for n, t in timings.items()]
    return _md(["method"] + [f"{c} (s)" for c in cols], body)


def _csv(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue()


def csv_per_image(per_image: Mapping[str, Row], mean: Row) -> str:
    cols = _columns(list(per_image.values()))
    rows = [[s] + [repr(float(r.get(c, math.nan))) for c in cols] for s, r in per_image.items()]
    rows.append(["mean"] + [repr(float(mean.get(c, math.nan))) for c in cols])
    return _csv(["image"] + cols, rows)


def csv_means(means: Mapping[str, Row]) -> str:
    cols = _columns(list(means.values()))
    rows = [[n] + [repr(float(r.get(c, math.nan))) for c in cols] for n, r in means.items()]
    return _csv(["method"] + cols, rows)


def normalize_columns(table: Mapping[int, Row]) -> dict[str, list[float]]:
    """Each metric's values over the rows min-max scaled to [0, 1] (Fig. 6(f))."""
    keys = list(table)
    out: dict[str, list[float]] = {}
    for m in _columns(list(table.values())):
        vals = [table[k].get(m, math.nan) for k in keys]
        finite = [v for v in vals if math.isfinite(v)]
        lo, hi = (min(finite), max(finite)) if finite else (0.0, 0.0)
        out[m] = [(v - lo) / (hi - lo) if hi > lo else 0.5 for v in vals]
    return out


def markdown_diffusion(table: Mapping[int, Row]) -> str:
    """Degree of diffusion k (pixels; < 0 contraction) as rows, metric means as columns."""
    cols = _columns(list(table.values()))
    body = [
        [f"{k:+d}" if k else "0"] + [fmt(r.get(c, math.nan)) for c in cols]
        for k, r in table.items()
    ]
    return _md(["k"] + cols, body)


def csv_diffusion(table: Mapping[int, Row]) -> str:
    cols = _columns(list(table.values()))
    rows = [[k] + [repr(float(r.get(c, math.nan))) for c in cols] for k, r in table.items()]
    return _csv(["k"] + cols, rows)


def plot_diffusion(table: Mapping[int, Row], path: str | pathlib.Path, title: str = "") -> None:
    """Fig. 6(f): every metric normalised to [0, 1] against the degree of diffusion."""
    import matplotlib  # pylint: disable=import-outside-toplevel

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt  # pylint: disable=import-outside-toplevel

    ks = list(table)
    norm = normalize_columns(table)
    fig, ax = plt.subplots(figsize=(8, 5), dpi=120)
    palette = plt.get_cmap("tab20").colors
    colors = palette[::2] + palette[1::2]  # 20 distinct colours, strong ones first
    markers = "os^vD<>phx*+"
    for i, (m, vals) in enumerate(norm.items()):
        label = m if HIGHER_IS_BETTER.get(m, True) else f"{m} (lower is better)"
        ax.plot(ks, vals, marker=markers[i % len(markers)], markersize=4, label=label,
                color=colors[i % len(colors)])
    ax.axvline(0, color="grey", linewidth=0.8, linestyle="--")
    xlabel = "degree of diffusion k (pixels; negative = contraction)"
    ax.set_xlabel(f"{xlabel}\n{title}" if title else xlabel)
    ax.set_ylabel("normalised value")
    ax.set_xticks(ks)
    ax.set_ylim(-0.05, 1.05)
    ax.legend(ncol=4, fontsize=8, loc="lower center", bbox_to_anchor=(0.5, 1.0))
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
