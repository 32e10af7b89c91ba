"""forecast: the compute plan of params.yaml, before anything runs (``python -m pipeline forecast``).

For every run: its training rows per stage, optimiser steps, selection points and what they decode,
its greedy and sampled decodes (evaluate, infer), and the accelerator hours these take at a student's
throughput on a device; for every (dataset, teacher): the teacher's requests, tokens and cost. Totals
per table and for the profile, printed and written to ``reports/forecast.json`` (``Forecast``).

- **Counts.** The questions are the dataset's canonical examples (the ``prepare`` logic, in memory:
  the source is loaded, split and limited exactly as the stage would). ``--sizes`` states a dataset's
  question counts instead (a source that loads only in part here, e.g. a local copy of ANLI's dev set
  standing in for its Hub splits): its teacher tokens are then those of the loaded questions, scaled
  split by split. Every teacher output is counted as parseable (the rows are an upper bound).
- **Time** is ``examples / train_examples_per_s + decodes / decodes_per_s`` for each student, from
  its ``Throughput`` on the device: ``benchmarks/calibration/*.json`` (``bench_train.py --calibrate``
  writes one) or ``--calibration FILE``. Each figure says whether it was measured, and where.
- **Limits.** ``--max-hours`` / ``--max-usd``: above either, one line with the totals and exit 2, so
  ``python -m pipeline forecast --max-usd 100 && dvc repro`` never starts an over-budget profile.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Optional

from ..core.artifacts import read_model, write_model
from ..core.errors import PipelineError
from ..core.paths import project_root
from ..core.records_forecast import (Forecast, RunForecast, StageForecast, TableForecast, TeacherForecast,
                                     Throughput)
from ..core.spec import SPLITS, OpenAITeacher, Params
from ..core.spec_budget import Budget, budget_keys
from ..core.stageio import by_origin
from ..runs import Plan, Run, teachings
from ..sources import canonical
from ..tasks import get_task
from ..training.schedule import selection_steps

OUT = Path("reports") / "forecast.json"
CALIBRATION_DIR = Path("benchmarks") / "calibration"


# ----------------------------------------------------------------------------------------------- inputs
def parse_sizes(text: Optional[str], params: Params) -> dict[str, dict[str, int]]:
    """``svamp:train=720,valid=80,test=200;anli1:train=16946`` -> {dataset: {split: n}}."""
    out: dict[str, dict[str, int]] = {}
    for part in filter(None, (text or "").split(";")):
        ds, colon, counts = part.partition(":")
        ds = ds.strip()
        if not colon:
            raise PipelineError(f"--sizes: {part!r} is not <dataset>:<split>=<count>,...")
        if ds not in params.datasets:
            raise PipelineError(f"--sizes: {ds!r} is not a key of datasets (known: {', '.join(params.datasets)})")
        for item in filter(None, counts.split(",")):
            split, _, n = item.partition("=")
            if split.strip() not in ("train", "valid", "test") or not n.strip().isdigit():
                raise PipelineError(f"--sizes: {item!r} in {part!r} is not <split>=<count> (train, valid or test)")
            out.setdefault(ds, {})[split.strip()] = int(n)
    return out


def load_throughputs(params: Params, device: str, calibration: Optional[Path]) -> dict[str, Optional[Throughput]]:
    """Student key -> its throughput on ``device`` (None: no figure). ``calibration``: a file that must be for
    one of the profile's students on ``device``; otherwise every file of ``benchmarks/calibration``."""
    ids = {key: s.id for key, s in params.students.items()}
    if calibration is not None:
        th = read_model(calibration, Throughput)
        keys = [k for k, i in ids.items() if i == th.student]
        if th.device != device or not keys:
            raise PipelineError(f"{calibration}: measured for {th.student} on {th.device}, not for a student of this profile "
                                f"({', '.join(sorted(set(ids.values())))}) on {device}")
        found = {k: th for k in keys}
    else:
        found = {}
        d = project_root() / CALIBRATION_DIR
        for f in sorted(d.glob("*.json")) if d.is_dir() else []:
            th = read_model(f, Throughput)
            for k, i in ids.items():  # a measured figure wins over an assumed one
                if th.student == i and th.device == device and (k not in found or found[k].source == "assumed"):
                    found[k] = th
    return {k: found.get(k) for k in ids}


# ----------------------------------------------------------------------------------------------- counting
def _budget_text(b: Budget, params: Params, run: Run, stage: str) -> str:
    where = budget_keys(params.methods[run.method], run.method, run.dataset, True)[f"{stage}_length"]
    return (f"{b.steps:,} steps" if b.steps is not None else f"{b.epochs:g} epochs") + f" ({where})"


def _n_eval(params: Params, q: dict[str, int]) -> int:
    """The questions the student is scored on: the evaluation split, up to ``evaluate.limit``."""
    ev = params.evaluate
    return min(q[ev.split], ev.limit) if ev.limit else q[ev.split]


def stage_forecast(params: Params, run: Run, stage: str, q: dict[str, int]) -> StageForecast:
    t = params.train
    se_splits = getattr(params.teacher(run.dataset, run.teacher), "self_eval_splits", ["train"]) \
        if run.teacher != "none" else []
    if stage == "stage1":
        rows = q["train"] * run.cots * run.self_evals
    else:
        rows = q["train"] * max(1, run.cots)
    b = params.budget(run.method, run.dataset, stage)
    n_batches = max(1, math.ceil(rows / t.batch_size))  # one process: a global batch is batch_size rows
    steps = b.total_steps(n_batches, t.grad_accum, t.max_steps)
    if stage == "stage1":
        points = 0
        decodes = q["valid"] * run.cots * run.self_evals if "valid" in se_splits else 0  # the verdict agreement
    else:
        points = len(selection_steps(b.select_every or 0.0, n_batches, t.grad_accum, steps, b.select_every_steps))
        per_point = q["valid"] + (_n_eval(params, q) if t.paper_protocol else 0)
        decodes = points * per_point
    return StageForecast(stage=stage, rows=rows, budget=_budget_text(b, params, run, stage), steps=steps,
                         examples=steps * t.batch_size * t.grad_accum, selection_points=points, decodes=decodes)


def run_forecast(params: Params, plan: Plan, run: Run, q: dict[str, int], th: Optional[Throughput]) -> RunForecast:
    stages = ([stage_forecast(params, run, "stage1", q)] if run.two_stage else []) + [stage_forecast(params, run, "stage2", q)]
    n_test = _n_eval(params, q)
    answers = sum(s.decodes for s in stages) + n_test
    rationales = n_test if params.evaluate.keep_rationales and run.cots else 0  # a label-only student has no rationale
    for inf in plan.inferences.values():  # the sampled modes: k rationales and answers per question
        if inf.run == run:
            answers += inf.k * n_test
            rationales += inf.k * n_test
    hours = None
    if th is not None:
        seconds = (sum(s.examples for s in stages) / th.train_examples_per_s + answers / th.answer_decodes_per_s
                   + rationales / th.rationale_decodes_per_s)
        hours = round(seconds / 3600, 6)
    return RunForecast(run=run.name, tables=plan.tables_of[run.name], stages=stages, answer_decodes=answers,
                       rationale_decodes=rationales, hours=hours)


def teacher_forecast(params: Params, ds: str, name: str, examples: dict, scale: dict[str, float]) -> TeacherForecast:
    """The teacher's bill from scratch (no journal), split by split: a train or valid question costs its CoTs
    and their self-evaluations, a test question its CoTs only, so each split is scaled by its own stated size."""
    t = params.teacher(ds, name)
    teaching = f"{ds}-{name}"
    if not isinstance(t, OpenAITeacher):
        return TeacherForecast(teaching=teaching, backend=t.backend, model=None, requests=0, samples=0, prompt_tokens=0,
                               completion_tokens_max=0, usd_max=None,
                               note=f"{t.backend}: no requests (outputs {'replayed' if t.backend == 'replay' else 'simulated'})")
    from ..teacher.openai.estimate import estimate

    task = get_task(params.datasets[ds].task)
    parts = [(estimate(task, t, by_origin({s: examples[s] if s == split else [] for s in SPLITS}), use_journal=False),
              scale.get(split, 1.0)) for split in SPLITS if examples[split]]
    total = lambda f: sum(f(e) * k for e, k in parts)  # noqa: E731
    notes = [f"batch mode: at the batch price, x{t.batch_price_factor:g} of the prices in params"] if t.mode == "batch" else []
    if any(k != 1 for _, k in parts):
        notes.append("scaled from the loaded questions, split by split (" +
                     ", ".join(f"{s} x{scale[s]:.3f}" for s in SPLITS if scale.get(s, 1.0) != 1) + ")")
    if parts and all(e.use_n and e.n_ok is None for e, _ in parts):
        notes.append(f"with n per request; {round(total(lambda e: e.samples)):,} requests if the endpoint ignores n "
                     "(and prompt tokens in proportion)")
    return TeacherForecast(teaching=teaching, backend=t.backend, model=t.model, requests=round(total(lambda e: e.requests)),
                           samples=round(total(lambda e: e.samples)), prompt_tokens=round(total(lambda e: e.prompt_tokens)),
                           completion_tokens_max=round(total(lambda e: e.completion_max)),
                           usd_max=round(total(lambda e: e.usd_max), 2), note="; ".join(notes))


# ----------------------------------------------------------------------------------------------- the plan
def run(params: Params, plan: Plan, sizes: Optional[str] = None, device: Optional[str] = None,
        calibration: Optional[Path] = None, max_hours: Optional[float] = None, max_usd: Optional[float] = None,
        out: Path = OUT) -> Forecast:
    device = device or ("cpu" if params.train.device == "cpu" else "cuda")
    stated = parse_sizes(sizes, params)
    ths = load_throughputs(params, device, calibration)
    questions, sizes_from, examples, scale = {}, {}, {}, {}
    for ds, spec in params.datasets.items():
        c = canonical(get_task(spec.task), spec, ds)
        examples[ds] = c.splits
        loaded = {s: len(v) for s, v in c.splits.items()}
        questions[ds] = {**loaded, **stated.get(ds, {})}
        for split in stated.get(ds, {}):
            if not loaded[split]:
                raise PipelineError(f"--sizes: {ds} {split}: none of its questions loaded here, so there is nothing to "
                                    "scale the teacher's tokens from")
        scale[ds] = {s: questions[ds][s] / n for s, n in loaded.items() if n}
        sizes_from[ds] = ("--sizes (stated), teacher tokens scaled from the loaded questions" if ds in stated
                          else f"the source, loaded: {getattr(spec.source, 'id', None) or spec.source.kind}")
    runs = [run_forecast(params, plan, r, questions[r.dataset], ths[r.student]) for r in plan.runs.values()]
    teachers = [teacher_forecast(params, t["dataset"], t["teacher"], examples[t["dataset"]], scale[t["dataset"]])
                for t in teachings(params).values()]
    hours = lambda rs: None if any(r.hours is None for r in rs) else round(sum(r.hours for r in rs), 4)  # noqa: E731
    steps = lambda rs: sum(s.steps for r in rs for s in r.stages)  # noqa: E731
    points = lambda rs: sum(s.selection_points for r in rs for s in r.stages)  # noqa: E731
    tables = []
    for name in params.tables:
        rs = [r for r in runs if name in r.tables]
        tables.append(TableForecast(table=name, runs=len(rs), steps=steps(rs), selection_points=points(rs), hours=hours(rs)))
    used = {r.student for r in plan.runs.values()}
    fc = Forecast(profile=params.profile, device=device, throughputs={k: v for k, v in ths.items() if v is not None and k in used},
                  questions=questions, sizes_from=sizes_from, runs=runs, tables=tables, teachers=teachers,
                  steps=steps(runs), selection_points=points(runs), hours=hours(runs),
                  usd_max=round(sum(t.usd_max or 0.0 for t in teachers), 2))
    write_model(out, fc)  # written first: a refusal keeps the figures it refused on
    missing = sorted(used - set(fc.throughputs))
    over = []
    if max_hours is not None and (fc.hours is None or fc.hours > max_hours):
        over.append(f"--max-hours {max_hours:g}" + (f": no throughput for {', '.join(missing)} on {device}" if fc.hours is None else ""))
    if max_usd is not None and fc.usd_max > max_usd:
        over.append(f"--max-usd {max_usd:g}")
    if over:
        raise PipelineError(f"forecast: {totals_line(fc)}: above {' and '.join(over)}; not starting (see {out})")
    return fc


def totals_line(fc: Forecast) -> str:
    h = "n/a" if fc.hours is None else f"{fc.hours:,.1f}"
    return (f"profile {fc.profile}: {len(fc.runs)} runs, {fc.steps:,} optimiser steps, {fc.selection_points:,} selection "
            f"points, ~{h} {fc.device} hours, teacher <= ${fc.usd_max:,.2f}")


def lines(fc: Forecast) -> list[str]:
    """The forecast as the CLI prints it."""
    out = []
    for k, th in fc.throughputs.items():
        out.append(f"throughput {k} ({th.student}, {th.device_name}, {th.precision}): {th.train_examples_per_s:g} train rows/s, "
                   f"{th.answer_decodes_per_s:g} answers/s, {th.rationale_decodes_per_s:g} rationales/s; {th.source}: {th.measured}")
    for ds, q in fc.questions.items():
        out.append(f"questions {ds}: " + ", ".join(f"{s} {n:,}" for s, n in q.items()) + f" (from {fc.sizes_from[ds]})")
    out.append(f"{'run':<58} {'stage':<6} {'rows':>9} {'budget':<16} {'steps':>9} {'sel.':>5} {'decodes':>9} {'hours':>8}")
    for r in fc.runs:
        for i, s in enumerate(r.stages):
            h = ("n/a" if r.hours is None else f"{r.hours:.2f}") if i == len(r.stages) - 1 else ""
            out.append(f"{r.run if i == 0 else '':<58} {s.stage:<6} {s.rows:>9,} {s.budget.split(' (')[0]:<16} {s.steps:>9,} "
                       f"{s.selection_points:>5} {s.decodes:>9,} {h:>8}")
    for t in fc.tables:
        out.append(f"table {t.table}: {t.runs} runs, {t.steps:,} steps, {t.selection_points:,} selection points, "
                   f"~{'n/a' if t.hours is None else f'{t.hours:,.1f}'} hours")
    for t in fc.teachers:
        cost = "n/a" if t.usd_max is None else f"<= ${t.usd_max:,.2f}"
        out.append(f"teacher {t.teaching} ({t.model or t.backend}): {t.requests:,} requests, {t.samples:,} samples, "
                   f"~{t.prompt_tokens:,} prompt tokens, <= {t.completion_tokens_max:,} completion tokens, {cost}"
                   + (f"; {t.note}" if t.note else ""))
    out.append(totals_line(fc))
    return out
