"""teach: teacher records per split (``TeacherRecord``, ``teacher.schema.json``): per question k CoTs
(raw text, rationale, parsed answer, parse status, gold correctness) and, where the teacher gave
them, self-evaluations of each CoT. Teacher accuracy and parse rate per split as DVC metrics
(``TeachMetrics``).

The backends (``pipeline/teacher``) take the typed examples and return plain records, quarantine rows and
usage; this stage types them (``TeacherRecord``, ``TeacherUsage``) and writes every file:
``data/teacher/<dataset>/<teacher>/<split>.jsonl``, ``quarantine.jsonl`` (live teacher) and
``metrics/teach/<dataset>/<teacher>.json``. It runs once per (dataset, teacher) that ``datasets:``
lists; a live teacher that stops part-way (``budget_usd``) still writes its metrics, with the
spend, before the stage fails."""
from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Optional

from ..core.artifacts import parse_model, read_model, write_jsonl, write_model, write_records
from ..core.errors import PipelineError
from ..core.paths import METRICS, PREPARED, QUARANTINE, TEACHER
from ..core.records import (PrepareMetrics, TeacherRecord, TeacherUsage, TeachMetrics, TeachSplitMetrics,
                            VerdictCounts)
from ..core.spec import SPLITS, OpenAITeacher, Params, SimulatedTeacher
from ..tasks import get_task
from ..core.stageio import by_origin, dataset_spec, read_prepared


def paths(dataset: str, teacher: str) -> tuple[Path, Path]:
    """Where a teaching's records and metrics go: ``data/teacher/<dataset>/<teacher>/``, ``metrics/teach/<dataset>/<teacher>.json``."""
    return TEACHER / dataset / teacher, METRICS / "teach" / dataset / f"{teacher}.json"


def run(params: Params, dataset: str, teacher: str) -> TeachMetrics:
    spec = dataset_spec(params, dataset)
    t = params.teacher(dataset, teacher)
    task = get_task(spec.task)
    prepared = read_prepared(dataset)
    prep_metrics = read_model(METRICS / "prepare" / f"{dataset}.json", PrepareMetrics)
    origins = by_origin(prepared)
    out_dir, metrics_path = paths(dataset, teacher)
    base = dict(dataset=dataset, teacher=teacher, description=t.description, backend=t.backend)

    quarantine, usage, error_kinds = None, None, None
    if isinstance(t, OpenAITeacher):
        from ..teacher.openai import TeacherStopped, generate

        try:
            out = generate(dataset, task, t, origins, name=teacher)
        except TeacherStopped as stop:  # the budget summary is what the user needs most here
            usage = parse_model(TeacherUsage, stop.usage, f"teach {dataset}/{teacher}: usage of the stopped teacher")
            write_model(metrics_path, TeachMetrics(**base, splits={}, usage=usage, stopped=str(stop)))
            raise
        recs_by_origin, unmatched = out.records, {split: 0 for split in origins}
        quarantine = out.quarantine
        usage = parse_model(TeacherUsage, out.usage, f"teach {dataset}/{teacher}: usage of the {t.backend} teacher")
        selected = False
    elif isinstance(t, SimulatedTeacher):
        from ..teacher.simulated import simulate

        sim = simulate(task, t, origins)
        recs_by_origin, unmatched, error_kinds = sim.records, {split: 0 for split in origins}, sim.error_kinds
        usage = parse_model(TeacherUsage, sim.usage, f"teach {dataset}/{teacher}: usage of the {t.backend} teacher")
        selected = False
    else:
        from ..teacher.replay import replay

        recs_by_origin, unmatched = replay(task, t, origins, prep_metrics.source_rows)
        selected = any(src.selected == "correct" for src in t.sources)

    # the backends return plain records (by source split): typed here, in the split each question is in
    by_id = {r["id"]: r for recs in recs_by_origin.values() for r in recs}
    splits: dict[str, TeachSplitMetrics] = {}
    every: list[TeacherRecord] = []
    for split in SPLITS:
        where = f"teach {dataset}/{teacher}: {t.backend} teacher record of {split} question"
        recs = [parse_model(TeacherRecord, {**by_id[ex.id], "split": split}, f"{where} {ex.id!r}")
                for ex in prepared[split]]
        write_records(out_dir / f"{split}.jsonl", recs)
        every += recs
        if recs:
            splits[split] = split_metrics(recs, unmatched.get(split, 0))
    if quarantine is not None:
        write_jsonl(out_dir / QUARANTINE, quarantine, None)
    metrics = TeachMetrics(**base, selected_by_gold=selected, splits=splits, verdicts=verdict_counts(every),
                           usage=usage, error_kinds=error_kinds)
    write_model(metrics_path, metrics)
    return metrics


def estimate(params: Params, dataset: str, teacher: str) -> None:
    """Print the requests, tokens and cost the teach stage would send now (nothing is sent)."""
    spec = dataset_spec(params, dataset)
    t = params.teacher(dataset, teacher)
    if not isinstance(t, OpenAITeacher):
        raise PipelineError(f"teachers.{teacher}: backend {t.backend!r}: estimate is for the openai backend")
    if not (PREPARED / dataset).is_dir():
        raise PipelineError(f"{PREPARED / dataset}: not found; run `python -m pipeline prepare --dataset {dataset}` first")
    from ..teacher.openai import estimate_lines

    for line in estimate_lines(dataset, get_task(spec.task), t, by_origin(read_prepared(dataset)), name=teacher):
        print(line)


def batch_files(params: Params, dataset: str, teacher: str, export: Optional[Path], import_: Optional[Path]) -> None:
    """The Batch API's request file out, or an output file in, for an engine run offline (nothing is sent)."""
    spec = dataset_spec(params, dataset)
    t = params.teacher(dataset, teacher)
    if not isinstance(t, OpenAITeacher):
        raise PipelineError(f"teachers.{teacher}: backend {t.backend!r}: batch files are for the openai backend")
    if export is None and import_ is None:
        raise PipelineError("teach-batch: give --export FILE (the request file) and/or --import FILE (an output file)")
    if import_ is not None and not import_.is_file():
        raise PipelineError(f"--import: {import_}: no such file")
    if not (PREPARED / dataset).is_dir():
        raise PipelineError(f"{PREPARED / dataset}: not found; run `python -m pipeline prepare --dataset {dataset}` first")
    from ..teacher.openai.backend import batch_files as run_files

    for line in run_files(dataset, get_task(spec.task), t, by_origin(read_prepared(dataset)), teacher, export, import_):
        print(line)


def verdict_counts(recs: list[TeacherRecord]) -> VerdictCounts | None:
    """Every self-evaluation of ``recs`` against the gold correctness of the CoT it judges."""
    on: dict[bool, Counter] = {True: Counter(), False: Counter()}
    for r in recs:
        for c in r.cots:
            if c.correct is None:
                continue
            for e in c.evaluations:
                on[c.correct][e.verdict or "unparsed"] += 1
    if not sum(on[True].values()) + sum(on[False].values()):
        return None
    said_wrong = on[True]["wrong"] + on[False]["wrong"]
    judged = on[True]["correct"] + on[True]["wrong"] + on[False]["correct"] + on[False]["wrong"]
    ratio = lambda a, b: round(a / b, 6) if b else None  # noqa: E731
    return VerdictCounts(on_correct=dict(sorted(on[True].items())), on_wrong=dict(sorted(on[False].items())),
                         wrong_precision=ratio(on[False]["wrong"], said_wrong),
                         wrong_recall=ratio(on[False]["wrong"], sum(on[False].values())),
                         agreement=ratio(on[True]["correct"] + on[False]["wrong"], judged))


def summary(s: TeachSplitMetrics) -> str:
    """One split's teacher figures, each saying what it counted (the CLI prints it)."""
    if not s.cots:
        return f"{s.questions} questions, none with CoTs"
    acc = "n/a" if s.accuracy is None else f"{100 * s.accuracy:.2f}%"
    return (f"{s.questions} questions, {s.questions_with_cots} with CoTs ({s.cots} CoTs); "
            f"parsed {s.parsed}/{s.cots} CoTs ({100 * s.parse_rate:.2f}%); "
            f"first CoT correct {s.correct}/{s.questions_with_cots} questions with CoTs ({acc})")


def split_metrics(recs: list[TeacherRecord], unmatched: int = 0) -> TeachSplitMetrics:
    cots = [c for r in recs for c in r.cots]
    parsed = sum(c.status == "ok" for c in cots)
    first_correct = sum(bool(r.cots) and r.cots[0].correct is True for r in recs)
    verdicts: Counter = Counter()
    agree = judged = n_evals = 0
    for c in cots:
        for e in c.evaluations:
            n_evals += 1
            verdicts[e.verdict or "unparsed"] += 1
            if e.verdict in ("correct", "wrong") and c.correct is not None:
                judged += 1
                agree += (e.verdict == "correct") == c.correct
    with_cots = sum(bool(r.cots) for r in recs)
    return TeachSplitMetrics(
        questions=len(recs),
        questions_with_cots=with_cots,
        cots=len(cots),
        parsed=parsed,
        parse_rate=round(parsed / len(cots), 6) if cots else None,
        accuracy=round(first_correct / with_cots, 6) if with_cots else None,
        correct=first_correct,
        cot_accuracy=round(sum(c.correct is True for c in cots) / len(cots), 6) if cots else None,
        evaluations=n_evals,
        verdicts=dict(sorted(verdicts.items())),
        verdict_agreement=round(agree / judged, 6) if judged else None,
        unmatched_source_rows=unmatched,
    )
