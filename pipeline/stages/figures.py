"""The report's figures (matplotlib, Agg backend, no network): a line figure for ``show: line`` tables
(x = the columns, one line per row, error bars = the std over seeds) with its data as a wide CSV for
``dvc plots``, and a grouped bar figure for ``show: table`` tables.

Every figure is written twice, atomically and deterministically (the same inputs give the same bytes):
``<table>.png`` at :data:`DPI` dpi and a vector copy ``<table>.svg`` beside it. The layout is meant for a
paper: the full title (wrapped, never cut) above the axes, the legend outside the axes (below), each
value written on its bar / next to its point (so a 0 is visible), a missing cell marked ``n/a`` at the
baseline, and a percent axis from 0 to 100 (counts: 0 to 1.1 x the largest value).

:func:`render` builds the :class:`~matplotlib.figure.Figure` (tests measure it); :func:`plot` renders
and saves it."""
from __future__ import annotations

import csv
import io
import math
import textwrap
from pathlib import Path
from typing import Optional

from ..core.artifacts import atomic_path

# one series per row value: (mean, std) per column, None where the cell has no value
Point = tuple[Optional[float], Optional[float]]
Series = dict[str, list[Point]]

DPI = 200
MISSING = "n/a"  # written at the baseline where a cell has no value (a 0 is written "0.0")
TITLE_SIZE, LABEL_SIZE, VALUE_SIZE = 10, 8, 6.5
# fixed rendering settings: deterministic SVG ids, text as paths (the same glyphs everywhere)
STYLE = {"svg.hashsalt": "mind-mirror-report", "svg.fonttype": "path", "font.family": "DejaVu Sans",
         "axes.spines.top": False, "axes.spines.right": False, "axes.titlesize": TITLE_SIZE,
         "axes.labelsize": LABEL_SIZE, "xtick.labelsize": LABEL_SIZE, "ytick.labelsize": LABEL_SIZE,
         "legend.fontsize": LABEL_SIZE, "errorbar.capsize": 2.5}


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


def _value(m: float, percent: bool) -> str:
    """The text written on a bar / next to a point: percent with 1 decimal, a count as a whole number."""
    return f"{m:.1f}" if percent or m != int(m) else f"{int(m)}"


def _fit_title(fig, title: str):
    """The full ``title`` as the figure's suptitle, wrapped (on words) until it fits the figure's width."""
    width_pt = fig.get_figwidth() * 72 - 12
    chars = max(10, int(width_pt / (0.55 * TITLE_SIZE)))  # a first guess from DejaVu Sans' mean glyph width
    while True:
        text = fig.suptitle(textwrap.fill(title, chars, break_on_hyphens=False), fontsize=TITLE_SIZE)
        extent = text.get_window_extent(fig.canvas.get_renderer())
        if extent.width <= fig.bbox.width - 12 * fig.dpi / 72 or chars <= 10:
            return text
        chars = max(10, int(chars * 0.9))


def _errors(pts: list[Point]) -> Optional[list[float]]:
    """The error bars (the std over seeds; NaN: none, for a single seed or a missing cell), or None."""
    errs = [s if (m is not None and s) else math.nan for m, s in pts]
    return None if all(math.isnan(e) for e in errs) else errs


def _bars(ax, xs: list[str], series: Series, percent: bool) -> None:
    """Grouped bars (one group per x, one bar per series), each with its value (or ``n/a``) on top."""
    width = 0.8 / max(1, len(series))
    for i, (name, pts) in enumerate(series.items()):
        pos = [j - 0.4 + width * (i + 0.5) for j in range(len(xs))]
        ys = [math.nan if m is None else m for m, _ in pts]
        errs = _errors(pts)
        bars = ax.bar(pos, ys, width * 0.92, label=name, yerr=errs, linewidth=0.8,
                      error_kw={"elinewidth": 0.8, "ecolor": "0.25"})
        for p in bars.patches:  # an edge: a zero-height bar shows as a line on the baseline
            p.set_edgecolor(p.get_facecolor())
        for x, (m, s) in zip(pos, pts):
            top = 0.0 if m is None else m + (s or 0.0)
            ax.annotate(MISSING if m is None else _value(m, percent), (x, top), xytext=(0, 1.5),
                        textcoords="offset points", ha="center", va="bottom", fontsize=VALUE_SIZE,
                        color="0.45" if m is None else "0.1", fontstyle="italic" if m is None else "normal")
    ax.set_xticks(list(range(len(xs))), xs)
    ax.set_xlim(-0.55, len(xs) - 0.45)


def _lines(ax, xs: list[str], series: Series, percent: bool) -> None:
    """One line per series, error bars = the std; each value written beside its point, ``n/a`` (in the
    series' colour, stacked per series) at the baseline where a point is missing."""
    num = _numeric(xs)
    pos = num if num is not None else list(range(len(xs)))
    for i, (name, pts) in enumerate(series.items()):
        ys = [math.nan if m is None else m for m, _ in pts]
        line = ax.errorbar(pos, ys, yerr=_errors(pts), marker="o", markersize=4, linewidth=1.2,
                           elinewidth=0.8, label=name)
        color = line.lines[0].get_color()
        for x, (m, _) in zip(pos, pts):
            if m is None:
                ax.annotate(MISSING, (x, 0), xytext=(0, 1.5 + 7 * i), textcoords="offset points", ha="center",
                            va="bottom", fontsize=VALUE_SIZE, color=color, fontstyle="italic")
            else:
                ax.annotate(_value(m, percent), (x, m), xytext=(4, 3), textcoords="offset points", ha="left",
                            va="bottom", fontsize=VALUE_SIZE, color=color)
    ax.set_xticks(pos, xs)
    if pos:  # every column, with or without a value
        pad = 0.08 * (max(pos) - min(pos)) if len(pos) > 1 else 0.5
        ax.set_xlim(min(pos) - pad, max(pos) + pad)


def _size(kind: str, xs: list[str], series: Series) -> tuple[float, float, bool, int]:
    """(width, height) in inches, whether to slant the x labels, and the legend's columns: wide enough
    for each bar's value, the legend in rows below the axes."""
    group = 0.34 * max(1, len(series)) + 0.3 if kind == "bar" else 0.8
    width = max(6.0, 1.4 + group * len(xs))
    slant = max((len(x) for x in xs), default=0) * 0.075 > group
    entry = 0.75 + 0.07 * max((len(n) for n in series), default=0)  # inches per legend entry
    ncol = max(1, min(len(series), int(width / entry)))
    rows = math.ceil(len(series) / ncol) if series else 0
    ncol = math.ceil(len(series) / rows) if rows else 1  # balanced rows
    return width, 3.4 + (0.8 if slant else 0.0) + 0.2 * rows, slant, ncol


def render(kind: str, title: str, x_name: str, xs: list[str], series: Series, ylabel: str,
           percent: bool = True):
    """The figure, laid out (constrained layout) but not saved. ``kind``: ``line`` (x = columns, one line
    per series) or ``bar`` (groups = columns, one bar per series). ``percent``: the values are percent
    (the y axis runs 0 to 100, with headroom for the written values); else counts (0 to 1.1 x max)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    with matplotlib.rc_context(STYLE):
        width, height, slant, ncol = _size(kind, xs, series)
        fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
        FigureCanvasAgg(fig)
        ax = fig.add_subplot()
        (_lines if kind == "line" else _bars)(ax, xs, series, percent)
        if slant:
            ax.tick_params(axis="x", labelrotation=30)
            for t in ax.get_xticklabels():
                t.set_horizontalalignment("right")
        if all(m is None for pts in series.values() for m, _ in pts):
            ax.text(0.5, 0.5, "no metrics yet", transform=ax.transAxes, ha="center", va="center", color="grey")
        hi = max([m + (s or 0) for pts in series.values() for m, s in pts if m is not None], default=0.0)
        if percent:  # 0 to 100 (ticks), headroom for the values written above a 100% bar
            ax.set_ylim(0, max(108.0, 1.08 * hi))
            ax.set_yticks(list(range(0, int(max(100.0, hi)) + 1, 20)))
        else:
            ax.set_ylim(0, max(1.0, 1.1 * hi))
        ax.set_xlabel(x_name)
        ax.set_ylabel(ylabel)
        ax.grid(axis="y", linewidth=0.4, color="0.88")
        ax.set_axisbelow(True)
        if series:  # outside the axes (below them): it covers no data
            fig.legend(loc="outside lower center", ncol=ncol, frameon=False)
        _fit_title(fig, title)
        fig.canvas.draw()  # lay out now, so that the extents a caller measures are the saved ones
    return fig


# a cost figure: per series, the points (x = cost, y = accuracy, the column value it is) in column order
XY = dict[str, list[tuple[Optional[float], Optional[float], str]]]


def render_cost(title: str, series: XY, xlabel: str, ylabel: str, x_name: str):
    """Accuracy against cost: one line per series through its cells in column order, each point labelled
    with its column value (``k=3``); cells without both values are left out and listed under the axes."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    with matplotlib.rc_context(STYLE):
        ncol = max(1, min(len(series), 4))
        fig = Figure(figsize=(6.0, 3.8 + 0.2 * math.ceil(len(series) / ncol)), dpi=DPI, layout="constrained")
        FigureCanvasAgg(fig)
        ax = fig.add_subplot()
        missing = []
        for name, pts in series.items():
            have = [(x, y, c) for x, y, c in pts if x is not None and y is not None]
            missing += [f"{name} {x_name}={c}" for x, y, c in pts if x is None or y is None]
            line, = ax.plot([x for x, _, _ in have], [y for _, y, _ in have], marker="o", markersize=4,
                            linewidth=1.2, label=name)
            for x, y, c in have:
                ax.annotate(f"{x_name}={c}: {y:.1f}", (x, y), xytext=(4, 3), textcoords="offset points",
                            fontsize=VALUE_SIZE, color=line.get_color())
        hi = max([x for pts in series.values() for x, y, _ in pts if x is not None and y is not None], default=0.0)
        ax.set_xlim(0, max(1e-9, 1.25 * hi))
        ax.set_ylim(0, 108.0)
        ax.set_yticks(list(range(0, 101, 20)))
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.grid(linewidth=0.4, color="0.88")
        ax.set_axisbelow(True)
        if missing:
            ax.text(0.01, 0.98, f"{MISSING}: " + ", ".join(missing[:6]) + (" ..." if len(missing) > 6 else ""),
                    transform=ax.transAxes, va="top", fontsize=VALUE_SIZE, color="0.45", fontstyle="italic")
        if series:
            fig.legend(loc="outside lower center", ncol=ncol, frameon=False)
        _fit_title(fig, title)
        fig.canvas.draw()
    return fig


def save(fig, png: Path) -> tuple[Path, Path]:
    """Write ``fig`` as ``png`` (:data:`DPI` dpi) and as the SVG beside it, each atomically, with no
    date or software metadata (the same figure gives the same bytes); returns (png, svg)."""
    import matplotlib

    svg = png.with_suffix(".svg")
    with matplotlib.rc_context(STYLE):
        with atomic_path(png) as tmp:
            fig.savefig(tmp, format="png", dpi=DPI, metadata={"Software": None})
        with atomic_path(svg) as tmp:
            fig.savefig(tmp, format="svg", metadata={"Date": None, "Creator": None})
    return png, svg


def plot(path: Path, kind: str, title: str, x_name: str, xs: list[str], series: Series, ylabel: str,
         percent: bool = True) -> tuple[Path, Path]:
    """Render (:func:`render`) and save (:func:`save`) one figure: ``path`` (PNG) and its SVG copy."""
    return save(render(kind, title, x_name, xs, series, ylabel, percent), path)
