"""The report's cells: each metric read where it lives, in percent (counts as counts).

A run metric comes from the run's metrics files: ``accuracy`` from ``metrics/evaluate/<run>.json``,
the paper protocol's best-on-test from stage 2's training log, the verdict agreement from stage 1's
(``metrics/train/<run>/<stage>.json``). A teacher metric of a (dataset, teacher) comes from
``metrics/teachers/<dataset>.json`` (accuracies on the questions every teacher answered) or from
``metrics/teach/<dataset>/<teacher>.json`` (its self-evaluations against gold)."""
from __future__ import annotations

import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from ..core.artifacts import read_model
from ..core.records import EvalMetrics, TeacherComparison, TeachMetrics, TrainingLog
from ..core.spec_tables import COUNT_METRICS
from ..core.stageio import METRICS
from ..runs import Run

MEANING = {
    "accuracy": "test accuracy of the checkpoint selected on the validation split (our protocol)",
    "paper_protocol_accuracy": "best test accuracy over all selection points: the official code's best-on-test "
                               "protocol (it selects on the test split: optimistic; for comparison with the paper only)",
    "verdict_agreement": "agreement of the stage-1 student's verdicts with the teacher's on held-out "
                         "self-evaluations (two-stage runs)",
    "teacher_accuracy": "accuracy of the teacher's first CoT per question (unparseable = wrong), on the questions "
                        "every teacher of the dataset answered (metrics/teachers/<dataset>.json; `*`: files that hold "
                        "only CoTs that reached the gold answer, so not the teacher's accuracy)",
    "teacher_parse_rate": "share of the teacher's CoTs with a parseable answer, on those same questions",
    "teacher_cot_accuracy": "share of all the teacher's CoTs that reached the gold answer, on those same questions",
    "se_agreement": "the teacher's 'correct'/'wrong' self-evaluation verdicts that match the gold correctness of "
                    "the CoT they judge (all its self-evaluations of CoTs with a parseable answer)",
    "se_wrong_precision": "of the teacher's 'wrong' verdicts, the share on CoTs that are wrong",
    "se_wrong_recall": "of the teacher's evaluations of wrong CoTs, the share that say 'wrong'",
    "se_evaluations": "self-evaluations judged (count)",
    "se_correct_on_correct": "'correct' verdicts on correct CoTs (count)",
    "se_wrong_on_correct": "'wrong' verdicts on correct CoTs (count)",
    "se_uncertain_on_correct": "'uncertain' verdicts on correct CoTs (count)",
    "se_correct_on_wrong": "'correct' verdicts on wrong CoTs (count)",
    "se_wrong_on_wrong": "'wrong' verdicts on wrong CoTs (count)",
    "se_uncertain_on_wrong": "'uncertain' verdicts on wrong CoTs (count)",
    "se_unparsed": "evaluations without a verdict (count)",
}


@dataclass(frozen=True)
class Stat:
    """One cell of one metric, in percent: the mean over the seeds with metrics, their sample std, n."""

    mean: Optional[float] = None
    std: Optional[float] = None
    n: int = 0  # seeds (runs) with a value
    seeds: int = 1  # seeds asked (0: teacher metric)
    omitted: bool = False
    note: str = ""
    count: bool = False  # a count, not a percentage
    mark: str = ""  # shown after the value (`*`: CoTs selected by gold)

    @property
    def status(self) -> str:
        return "omitted" if self.omitted else "missing" if self.mean is None else "ok"

    def show(self) -> str:
        if self.omitted:
            return "-"
        if self.mean is None:
            return "n/a"
        if self.count:
            return f"{self.mean:.0f}"
        if self.seeds <= 1:
            return f"{self.mean:.2f}{self.mark}"
        return f"{self.mean:.2f}" + (f" ± {self.std:.2f}" if self.std is not None else "") + f" (n={self.n})"


def _stat(values: list, seeds: int, note: str = "", count: bool = False, mark: str = "") -> Stat:
    vals = [(1 if count else 100) * v for v in values if v is not None]
    if not vals:
        return Stat(seeds=seeds, note=note, count=count)
    return Stat(statistics.fmean(vals), statistics.stdev(vals) if len(vals) > 1 else None, len(vals), seeds, note=note,
                count=count, mark=mark)


def _read(path: Path, model):
    return read_model(path, model) if path.exists() else None


def log_paths(run: Run) -> list[Path]:
    """The training logs of a run, stage 1 first: the one home of its selection and verdict agreement."""
    return [METRICS / "train" / run.name / f"{stage}.json" for stage in ("stage1", "stage2")[0 if run.two_stage else 1:]]


class Metrics:
    """The metrics files, each read once (``None``: not written yet)."""

    def __init__(self) -> None:
        self.evals: dict[str, Optional[EvalMetrics]] = {}
        self.train: dict[Path, Optional[TrainingLog]] = {}
        self.teach: dict[tuple[str, str], Optional[TeachMetrics]] = {}
        self.compared: dict[str, Optional[TeacherComparison]] = {}

    def run(self, name: str) -> Optional[EvalMetrics]:
        if name not in self.evals:
            self.evals[name] = _read(METRICS / "evaluate" / f"{name}.json", EvalMetrics)
        return self.evals[name]

    def logs(self, run: Run) -> list[Optional[TrainingLog]]:
        """The run's training logs, stage 1 first (None: not written yet)."""
        for p in log_paths(run):
            if p not in self.train:
                self.train[p] = _read(p, TrainingLog)
        return [self.train[p] for p in log_paths(run)]

    def value(self, metric: str, run: Run) -> Optional[float]:
        """A run metric of a table cell, read where it lives: the accuracy in the evaluation metrics, the
        paper protocol's best-on-test in stage 2's training log, the verdict agreement in stage 1's."""
        if metric == "accuracy":
            ev = self.run(run.name)
            return ev.accuracy if ev else None
        logs = self.logs(run)
        if metric == "paper_protocol_accuracy":
            best = logs[-1].paper_protocol_best if logs[-1] else None
            return best.test_accuracy if best else None
        if metric == "verdict_agreement":
            return logs[0].verdict_agreement if run.two_stage and logs[0] else None
        raise ValueError(f"not a run metric: {metric}")

    def teacher(self, metric: str, ds: str, teacher: str) -> Stat:
        """A teacher metric of one (dataset, teacher): accuracies on the questions every teacher of the dataset
        answered (metrics/teachers), the self-evaluation figures from its teach metrics."""
        if metric.startswith("teacher_"):
            if ds not in self.compared:
                self.compared[ds] = _read(METRICS / "teachers" / f"{ds}.json", TeacherComparison)
            c = self.compared[ds]
            t = c.teachers.get(teacher) if c else None
            if t is None:
                return Stat(seeds=0)
            v = {"teacher_accuracy": t.accuracy, "teacher_parse_rate": t.parse_rate,
                 "teacher_cot_accuracy": t.cot_accuracy}[metric]
            note = f"{ds}: {c.questions} of {c.split_questions} {c.split} questions (every teacher answered them)"
            return _stat([v], 0, note, mark="*" if t.selected_by_gold and metric != "teacher_parse_rate" else "")
        key = (ds, teacher)
        if key not in self.teach:
            self.teach[key] = _read(METRICS / "teach" / ds / f"{teacher}.json", TeachMetrics)
        v = self.teach[key].verdicts if self.teach[key] else None
        if v is None:
            return Stat(seeds=0, count=metric in COUNT_METRICS)
        counts = {"correct_on_correct": v.on_correct.get("correct", 0), "wrong_on_correct": v.on_correct.get("wrong", 0),
                  "uncertain_on_correct": v.on_correct.get("uncertain", 0),
                  "correct_on_wrong": v.on_wrong.get("correct", 0), "wrong_on_wrong": v.on_wrong.get("wrong", 0),
                  "uncertain_on_wrong": v.on_wrong.get("uncertain", 0),
                  "unparsed": v.on_correct.get("unparsed", 0) + v.on_wrong.get("unparsed", 0),
                  "evaluations": sum(v.on_correct.values()) + sum(v.on_wrong.values()),
                  "agreement": v.agreement, "wrong_precision": v.wrong_precision, "wrong_recall": v.wrong_recall}
        return _stat([counts[metric.removeprefix("se_")]], 0, count=metric in COUNT_METRICS)
