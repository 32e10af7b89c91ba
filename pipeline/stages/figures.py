"""The report's figures (matplotlib, Agg backend, no network): a line figure for ``show: line`` tables
(x = the columns, one line per row, error bars = the std over seeds) with its data as a wide CSV for
``dvc plots``, and a grouped bar figure for ``show: table`` tables. Values are in percent; a point
whose cell is missing or omitted is left out (``None``)."""
from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Optional

from ..core.artifacts import atomic_path

# one series per row value: (mean, std) per column, None where the cell has no value
Point = tuple[Optional[float], Optional[float]]
Series = dict[str, list[Point]]


def write_csv(path: Path, x_name: str, xs: list[str], series: Series) -> Path:
    """Wide CSV: the first column is the x dimension (e.g. ``cots``), then one column per series
    (row value) holding its mean (percent, 2 decimals; empty where missing)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow([x_name, *series])
    for i, x in enumerate(xs):
        w.writerow([x, *("" if pts[i][0] is None else f"{pts[i][0]:.2f}" for pts in series.values())])
    with atomic_path(path) as tmp:
        tmp.write_text(buf.getvalue(), encoding="utf-8")
    return path


def _numeric(xs: list[str]) -> Optional[list[float]]:
    try:
        return [float(x) for x in xs]
    except ValueError:
        return None


def plot(path: Path, kind: str, title: str, x_name: str, xs: list[str], series: Series, ylabel: str) -> Path:
    """``kind``: ``line`` (x = columns, one line per series) or ``bar`` (groups = columns, one bar per series)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    nan = float("nan")
    per_x = 0.9 if kind == "line" else 0.5 + 0.25 * len(series)
    fig, ax = plt.subplots(figsize=(max(4.0, 1.6 + per_x * len(xs)), 3.4))
    if kind == "line":
        num = _numeric(xs)
        pos = num if num is not None else list(range(len(xs)))
        for name, pts in series.items():
            ys = [nan if m is None else m for m, _ in pts]
            errs = [0.0 if (m is None or s is None) else s for m, s in pts]
            ax.errorbar(pos, ys, yerr=errs if any(errs) else None, marker="o", capsize=3, label=name)
        ax.set_xticks(pos, xs)
    else:
        width = 0.8 / max(1, len(series))
        for i, (name, pts) in enumerate(series.items()):
            ys = [nan if m is None else m for m, _ in pts]
            errs = [0.0 if (m is None or s is None) else s for m, s in pts]
            ax.bar([j - 0.4 + width * (i + 0.5) for j in range(len(xs))], ys, width, label=name,
                   yerr=errs if any(errs) else None, capsize=2)
        ax.set_xticks(list(range(len(xs))), xs)
    if all(m is None for pts in series.values() for m, _ in pts):
        ax.text(0.5, 0.5, "no metrics yet", transform=ax.transAxes, ha="center", va="center", color="grey")
    hi = max([m + (sd or 0) for pts in series.values() for m, sd in pts if m is not None], default=0.0)
    ax.set_ylim(0, max(1.0, 1.1 * hi))  # percentages start at 0 (a row of zeros is not an axis around 0)
    ax.set_xlabel(x_name)
    ax.set_ylabel(ylabel)
    ax.set_title(title if len(title) <= 70 else title[:67] + "...", fontsize=9)
    if series:
        ax.legend(fontsize=7, ncol=1 + len(series) // 4)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    return path
