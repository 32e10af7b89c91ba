"""report: every table (and figure) of params.yaml's ``tables:``, from the DVC metrics files only
(``metrics/evaluate/<run>.json``, ``metrics/teach/<dataset>.json``), with the reference values of
``reports/reference.csv`` (``table,row,col,value,source``; value in percent) beside the cells they match.

Writes ``reports/tables/<table>.md`` and ``.csv`` (one CSV line per cell), ``reports/figures/<table>.png``
(a line figure for ``show: line``, with its data as ``reports/figures/<table>.csv``; grouped bars
otherwise), the index ``reports/tables/README.md`` (with the reference values that match no cell), the
one DVC metrics file ``metrics/headline.json`` (``{table: {"row/col": percent or null}}``).

Then MLflow, in this one process: every evaluated run of ``runs.yaml`` from its metrics files
(``metrics/evaluate/<run>.json`` and the training logs ``metrics/train/<run>/stage{1,2}.json``), logged
once per content of those files (``pipeline.tracking.sync_runs``: fingerprinted, so a repro logs only
what changed, and a stage DVC restored from its run-cache is logged all the same), the run ids in
``metrics/mlflow_runs.json`` (``{run: MLflow run id}``), and the tables and figures as one MLflow
"report" run (``pipeline.tracking.log_report``)."""
from __future__ import annotations

import csv
import io
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from ..core.artifacts import atomic_path
from ..core.spec import Params
from ..core.spec_tables import COUNT_METRICS, PLAIN_METRICS, TEACHER_METRICS
from ..core.stageio import METRICS
from ..runs import Plan
from . import figures
from .cells import MEANING, Metrics, Stat, _stat, log_paths

REPORTS = Path("reports")
REFERENCE = REPORTS / "reference.csv"
TABLES = REPORTS / "tables"
FIGURES = REPORTS / "figures"
INDEX = TABLES / "README.md"
HEADLINE = METRICS / "headline.json"
MLFLOW_RUNS = METRICS / "mlflow_runs.json"
CSV_COLUMNS = ("row", "col", "value", "std", "n", "seeds", "status", "reference", "diff", "note")
@dataclass(frozen=True)
class Ref:
    line: int
    table: str
    row: str
    col: str
    value: float
    source: str


@dataclass
class Grid:
    name: str
    rows: list[str]
    cols: list[str]
    col_dim: str  # the columns' dimension, or "metric"
    stats: dict[tuple[str, str], Stat]


def _columns(t) -> list[tuple[str, str, str]]:
    """(column label, column value, metric) of a table: one per column value, or per metric without cols,
    or per (column value, metric) when a table with cols lists several metrics."""
    if not t.cols:
        return [(m, "None", m) for m in t.metrics]
    if len(t.metrics) == 1:
        return [(str(c), str(c), t.metrics[0]) for c in t.values[t.cols]]
    return [(f"{c} {m}", str(c), m) for c in t.values[t.cols] for m in t.metrics]


def _grid(params: Params, plan: Plan, name: str, m: Metrics) -> Grid:
    t = params.tables[name]
    columns = _columns(t)
    stats: dict[tuple[str, str], Stat] = {}
    for cell in plan.cells[name]:
        for col, _, metric in (c for c in columns if c[1] == str(cell.col)):
            if cell.omitted:
                stat = Stat(omitted=True, seeds=0 if metric in TEACHER_METRICS else len(t.seeds or [params.seed]))
            elif metric in TEACHER_METRICS:
                stat = m.teacher(metric, cell.dataset, cell.teacher)
            elif cell.mode.kind == "verify" and not any(r.two_stage for r in cell.runs):
                stat = Stat(omitted=True, seeds=len(cell.runs), note="one-stage run: no trained judge")
            else:
                stat = _stat([m.value(metric, r, cell.mode) for r in cell.runs], len(cell.runs),
                             count=metric in COUNT_METRICS, scale=1 if metric in PLAIN_METRICS else 100,
                             digits=4 if metric == "teacher_usd" else 2)
            stats[str(cell.row), col] = stat
    return Grid(name, [str(r) for r in t.values[t.rows]], [c for c, _, _ in columns], t.cols or "metric", stats)


def read_references(grids: dict[str, Grid], path: Path = REFERENCE) -> tuple[dict, list[Ref]]:
    """The reference values by (table, row, col), and those that match no cell (each warned on stderr)."""
    found: dict[tuple[str, str, str], Ref] = {}
    unmatched: list[Ref] = []
    if not path.exists():
        return found, unmatched
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = [c for c in ("table", "row", "col", "value") if c not in (reader.fieldnames or [])]
        if reader.fieldnames and missing:
            print(f"warning: {path}:1: no column {', '.join(missing)} (expected table,row,col,value,source): "
                  "reference values ignored", file=sys.stderr)
            return found, unmatched
        for r in reader:
            line = reader.line_num
            table, row, col = ((r.get(k) or "").strip() for k in ("table", "row", "col"))
            value = (r.get("value") or "").strip()
            if not table or table.startswith("#") or not value:  # blank, comment, or a value not filled in yet
                continue
            try:
                ref = Ref(line, table, row, col, float(value.rstrip("%")), (r.get("source") or "").strip())
            except ValueError:
                print(f"warning: {path}:{line}: value {value!r} is not a number (percent): ignored", file=sys.stderr)
                continue
            key = (table, row, col)
            g = grids.get(table)
            if g is None or (row, col) not in g.stats:
                why = "" if g is not None else f" (no table {table!r} in params.yaml)"
                print(f"warning: {path}:{line}: table {table} has no cell ({row}, {col}){why}", file=sys.stderr)
                unmatched.append(ref)
            elif key in found:
                print(f"warning: {path}:{line}: a second value for ({table}, {row}, {col}) "
                      f"(first on line {found[key].line}): ignored", file=sys.stderr)
            else:
                found[key] = ref
    return found, unmatched


def _diff(s: Stat, ref: Optional[Ref]) -> str:
    return f"{s.mean - ref.value:+.2f}" if ref and s.mean is not None else ""


def _write(path: Path, text: str, out: list[Path]) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    out.append(path)


def _table_csv(g: Grid, refs: dict) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_COLUMNS)
    for row in g.rows:
        for col in g.cols:
            s, ref = g.stats.get((row, col)), refs.get((g.name, row, col))
            if s is None:
                continue
            w.writerow([row, col, "" if s.mean is None else f"{s.mean:.2f}", "" if s.std is None else f"{s.std:.2f}",
                        s.n, s.seeds or "", s.status, "" if ref is None else f"{ref.value:.2f}", _diff(s, ref), s.note])
    return buf.getvalue()


def _table_md(params: Params, g: Grid, refs: dict, figure: Optional[Path]) -> str:
    t = params.tables[g.name]
    seeds = None if t.teacher_only else (t.seeds or [params.seed])
    multi = seeds is not None and len(seeds) > 1
    fixed = ", ".join(f"{k} = {v}" for k, v in t.fixed.items()) or "none"
    md = [f"# {t.title}", "", f"regenerates: {t.paper or '(not given)'}", "",
          "Generated by `python -m pipeline report` from `metrics/` only: do not edit by hand.", "",
          f"- rows: {t.rows}; columns: {g.col_dim}" + ("" if t.cols else " (one column per metric)"),
          f"- fixed: {fixed}",
          f"- seeds: {', '.join(map(str, seeds))}" if seeds else "- seeds: none (the teacher's outputs)"]
    md += [f"- {x}: {MEANING[x]}" for x in t.metrics]
    md += ["- cells: the metric in percent, 2 decimals (counts as whole numbers"
           + ("; teacher_usd in USD, train_minutes in minutes" if set(t.metrics) & set(PLAIN_METRICS) else "") + ")"
           + ("; mean ± sample std over the seeds (n = seeds evaluated)" if multi else "")
           + "; `n/a`: not evaluated yet; `-`: omitted (not run)",
           "- `[ref R; diff D]`: the value R of `reports/reference.csv` for that cell, and ours - R in points "
           "(sources below); Mind's Mirror's own values are not available offline: fill them in there "
           "(`table,row,col,value,source`)",
           f"- `{g.name}.csv`: one line per cell: row, col, value (%), std, n (seeds evaluated), seeds (asked), "
           "status (ok / missing / omitted), reference (%), diff (points), note", ""]
    md += [f"| {t.rows} | " + " | ".join(g.cols) + " |", "|---|" + "---|" * len(g.cols)]
    for row in g.rows:
        shown = []
        for col in g.cols:
            s, ref = g.stats.get((row, col), Stat(omitted=True)), refs.get((g.name, row, col))
            d = _diff(s, ref)
            shown.append(s.show() + (f" [ref {ref.value:.2f}" + (f"; diff {d}]" if d else "]") if ref else ""))
        md.append(f"| {row} | " + " | ".join(shown) + " |")
    md.append("")
    notes = sorted({s.note for s in g.stats.values() if s.note})
    if notes:
        md += [("Teacher accuracies counted on: " if t.teacher_only else "Notes: ") + "; ".join(notes) + ".", ""]
    if any(s.mark == "*" for s in g.stats.values()):
        md += ["`*`: the recorded files hold only CoTs that reached the gold answer (selected after sampling): the "
               "value is the agreement of the kept CoTs with gold, not the teacher's accuracy.", ""]
    used = [r for (tb, _, _), r in refs.items() if tb == g.name]
    if used:
        md += ["Reference values:", ""] + [f"- ({r.row}, {r.col}) {r.value:.2f}: {r.source}" for r in used] + [""]
    if figure:
        md += [f"![{g.name}](../figures/{figure.name})", "",
               f"Vector copy: [{figure.stem}.svg](../figures/{figure.stem}.svg).", ""]
    return "\n".join(md)


def _figure(params: Params, g: Grid, out: list[Path]) -> Optional[Path]:
    """The table's figure (``reports/figures/<table>.png`` and its vector copy ``.svg``; a line table's
    data also as ``.csv``), added to ``out``; returns the PNG. The percent columns only (counts would
    dwarf them), on a 0-100 axis; a table of counts only: its counts, on a 0 to 1.1 x max axis."""
    t = params.tables[g.name]
    if t.show == "cost":
        return _cost_figure(t, g, out)
    columns = _columns(t)
    numbers = COUNT_METRICS + PLAIN_METRICS
    percent = any(metric not in numbers for _, _, metric in columns)
    cols = [label for label, _, metric in columns if (metric not in numbers) == percent]
    metrics = [x for x in t.metrics if (x not in numbers) == percent]
    series = {row: [(s.mean, s.std) if (s := g.stats.get((row, col))) else (None, None) for col in cols]
              for row in g.rows}
    ylabel = (metrics[0] if len(metrics) == 1 else "value") + (" (%)" if percent else " (count)")
    if t.show == "line":
        figures.write_csv(FIGURES / f"{g.name}.csv", g.col_dim, g.cols, series)
        out.append(FIGURES / f"{g.name}.csv")
    png, svg = figures.plot(FIGURES / f"{g.name}.png", t.show if t.show == "line" else "bar", t.title, g.col_dim,
                            cols, series, ylabel, percent=percent)
    out += [png, svg]
    return png


def _cost_figure(t, g: Grid, out: list[Path]) -> Path:
    """``show: cost``: the first metric (an accuracy, %) against the second (a cost), one line per row through
    the columns' cells."""
    y, x = t.metrics
    series = {row: [(sx.mean if (sx := g.stats.get((row, f"{c} {x}"))) else None,
                     sy.mean if (sy := g.stats.get((row, f"{c} {y}"))) else None, str(c)) for c in t.values[t.cols]]
              for row in g.rows}
    fig = figures.render_cost(t.title, series, f"{x} ({MEANING[x].split(' (')[0][:60]})", f"{y} (%)", t.cols)
    png, svg = figures.save(fig, FIGURES / f"{g.name}.png")
    out += [png, svg]
    return png


def _index(params: Params, unmatched: list[Ref]) -> str:
    md = ["# Tables", "", f"Profile `{params.profile}`. Generated by `python -m pipeline report` from `metrics/` "
          "only; the cells of every table are also in `metrics/headline.json`. Reference values: "
          "`reports/reference.csv` (`table,row,col,value,source`, value in percent; Mind's Mirror's own values "
          "are not available offline: fill them in).", ""]
    for name, t in params.tables.items():
        md.append(f"- [{name}]({name}.md) ([csv]({name}.csv), [figure](../figures/{name}.png), "
                  f"[svg](../figures/{name}.svg)): {t.title}" + (f" (regenerates: {t.paper})" if t.paper else ""))
    md += ["", "## Unmatched reference values", ""]
    md += [f"- `reports/reference.csv` line {r.line}: table {r.table}, row {r.row}, col {r.col}: {r.value:.2f} "
           f"({r.source})" for r in unmatched] or ["none"]
    return "\n".join(md) + "\n"


def _prune(keep: list[Path]) -> None:
    """Remove what no table produces from the stage's output folders (DVC does too, before a run)."""
    kept = {p.resolve() for p in keep}
    for d in (TABLES, FIGURES):
        for p in d.iterdir():
            if (p.is_file() or p.is_symlink()) and p.resolve() not in kept:
                p.unlink()


def _evaluated(plan: Plan, m: Metrics) -> list:
    """Every run of runs.yaml with an evaluation, with its training logs, as ``tracking.RunFiles``."""
    from ..tracking import RunFiles

    items = []
    for name, r in plan.runs.items():
        ev = m.run(name)
        if ev is None:
            continue
        logs = m.logs(r)
        if any(log is None for log in logs):
            missing = [p.as_posix() for p, log in zip(log_paths(r), logs) if log is None]
            print(f"warning: {', '.join(missing)} missing: {name} not logged to MLflow", file=sys.stderr)
            continue
        inferred = [(METRICS / "evaluate" / f"{i}.json", inf) for i, x in plan.inferences.items()
                    if x.run.name == name and (inf := m.inference(i)) is not None]
        items.append(RunFiles(r, ev, tuple(logs), (METRICS / "evaluate" / f"{name}.json", *log_paths(r),
                                                   *(p for p, _ in inferred)),
                              tuple(plan.tables_of[name]), tuple(inf for _, inf in inferred)))
    return items


def run(params: Params, plan: Plan | None = None) -> list[Path]:
    started = time.time()
    plan = plan or Plan(params)
    m = Metrics()
    grids = {name: _grid(params, plan, name, m) for name in params.tables}
    refs, unmatched = read_references(grids)
    out: list[Path] = []
    TABLES.mkdir(parents=True, exist_ok=True)
    FIGURES.mkdir(parents=True, exist_ok=True)
    headline: dict[str, dict[str, Optional[float]]] = {}
    for name, g in grids.items():
        figure = _figure(params, g, out)
        _write(TABLES / f"{name}.md", _table_md(params, g, refs, figure), out)
        _write(TABLES / f"{name}.csv", _table_csv(g, refs), out)
        # as the tables show them (2 decimals): `dvc exp show --only-changed` then lists what a reader sees change
        headline[name] = {f"{row}/{col}": None if s.mean is None else round(s.mean, s.digits)
                          for row in g.rows for col in g.cols
                          if (s := g.stats.get((row, col))) is not None and not s.omitted}
    _write(INDEX, _index(params, unmatched), out)
    _write(HEADLINE, json.dumps(headline, indent=2) + "\n", out)
    _prune(out)

    from ..tracking import log_report, sync_runs

    ids = sync_runs(params, _evaluated(plan, m))
    _write(MLFLOW_RUNS, json.dumps(dict(sorted(ids.items())), indent=2) + "\n", out)
    log_report(params, out, plan.tables_of, ids, started_at=started)
    return out

