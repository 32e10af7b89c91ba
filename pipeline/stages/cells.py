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
from ..core.records import AssembleMetrics, EvalMetrics, TeacherComparison, TeachMetrics, TrainingLog
from ..core.records_infer import InferMetrics
from ..core.spec_infer import Mode
from ..core.spec_tables import COUNT_METRICS
from ..core.spec_teachers import NO_TEACHER
from ..core.stageio import METRICS
from ..runs import Inference, Run

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
    "oracle_accuracy": "oracle@k: questions where at least one of the k sampled answers is right (the bound of "
                       "any reranker)",
    "sample_accuracy": "the share of right answers among the k samples",
    "judge_wrong_precision": "of the judge's 'wrong' verdicts (P(correct) < 1/2) on the run's own samples, the "
                             "share on wrong samples",
    "judge_wrong_recall": "of the run's wrong samples, the share its judge calls wrong",
    "judge_wrong_recall_arithmetic": "the same, on wrong samples with a false `a op b = c` step",
    "judge_wrong_recall_reasoning": "the same, on wrong samples whose steps' arithmetic is right (a wrong operand, "
                                    "operator or step)",
    "judge_auroc": "AUROC of the judge's P(correct) against the samples' gold correctness",
    "verify_pick_rate": "verify@k right, of the questions where at least one sample is right",
    "teacher_usd": "the teacher's bill (USD) for the CoTs and self-evaluations of the run's training questions, "
                   "prorated from the teach metrics' cost per output of each kind (n/a: a replayed teacher)",
    "teacher_requests": "the teacher's requests behind those outputs (prorated)",
    "teacher_tokens": "their prompt + completion tokens (prorated)",
    "train_minutes": "the student's training time, both stages (minutes)",
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
    digits: int = 2  # decimals shown (USD: 4)

    @property
    def status(self) -> str:
        return "omitted" if self.omitted else "missing" if self.mean is None else "ok"

    def show(self) -> str:
        if self.omitted:
            return "-"
        if self.mean is None:
            return "n/a"
        if self.count:
            return f"{self.mean:.0f}" if self.n <= 1 else f"{self.mean:.0f} ± {self.std or 0:.0f} (n={self.n})"
        d = self.digits
        if self.seeds <= 1:
            return f"{self.mean:.{d}f}{self.mark}"
        return f"{self.mean:.{d}f}" + (f" ± {self.std:.{d}f}" if self.std is not None else "") + f" (n={self.n})"


def _stat(values: list, seeds: int, note: str = "", count: bool = False, mark: str = "", scale: float = 100,
          digits: int = 2) -> Stat:
    vals = [(1 if count else scale) * v for v in values if v is not None]
    if not vals:
        return Stat(seeds=seeds, note=note, count=count, digits=digits)
    return Stat(statistics.fmean(vals), statistics.stdev(vals) if len(vals) > 1 else None, len(vals), seeds, note=note,
                count=count, mark=mark, digits=digits)


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
        self.inferred: dict[str, Optional[InferMetrics]] = {}
        self.assembled: dict[str, Optional[AssembleMetrics]] = {}

    def teach_metrics(self, ds: str, teacher: str) -> Optional[TeachMetrics]:
        if (ds, teacher) not in self.teach:
            self.teach[ds, teacher] = _read(METRICS / "teach" / ds / f"{teacher}.json", TeachMetrics)
        return self.teach[ds, teacher]

    def inference(self, name: str) -> Optional[InferMetrics]:
        if name not in self.inferred:
            self.inferred[name] = _read(METRICS / "evaluate" / f"{name}.json", InferMetrics)
        return self.inferred[name]

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

    def value(self, metric: str, run: Run, mode: Mode = Mode("greedy")) -> Optional[float]:
        """A run metric of a table cell, read where it lives: the greedy accuracy in the evaluation metrics,
        a sampled mode's and its judge's in the infer metrics, the paper protocol's best-on-test in stage 2's
        training log, the verdict agreement in stage 1's, the cost in the teach, assemble and training files."""
        if mode.sampled and (metric == "accuracy" or metric.startswith(("judge_", "verify_", "oracle_", "sample_"))):
            return self._sampled(metric, run, mode)
        if metric == "accuracy":
            ev = self.run(run.name)
            return ev.accuracy if ev else None
        if metric in ("teacher_usd", "teacher_requests", "teacher_tokens"):
            return self._cost(metric, run)
        logs = self.logs(run)
        if metric == "train_minutes":
            return round(sum(log.seconds for log in logs) / 60, 4) if all(logs) else None
        if metric == "paper_protocol_accuracy":
            best = logs[-1].paper_protocol_best if logs[-1] else None
            return best.test_accuracy if best else None
        if metric == "verdict_agreement":
            return logs[0].verdict_agreement if run.two_stage and logs[0] else None
        raise ValueError(f"not a run metric: {metric}")

    def _sampled(self, metric: str, run: Run, mode: Mode) -> Optional[float]:
        inf = self.inference(Inference(run, mode.k).name)
        if inf is None:
            return None
        if metric == "oracle_accuracy":
            return inf.oracle_accuracy
        if metric == "sample_accuracy":
            return inf.sample_accuracy
        if mode.kind == "vote":
            return inf.vote_accuracy if metric == "accuracy" else None
        judge = inf.judges.get(mode.judge)
        if judge is None:
            return None
        if metric.startswith("judge_wrong_recall_"):
            return judge.wrong_recall_by_error.get(metric.removeprefix("judge_wrong_recall_"))
        return {"accuracy": judge.verify_accuracy, "judge_wrong_precision": judge.wrong_precision,
                "judge_wrong_recall": judge.wrong_recall, "judge_auroc": judge.auroc,
                "verify_pick_rate": judge.pick_rate}[metric]

    def _cost(self, metric: str, run: Run) -> Optional[float]:
        """The teacher's bill for the outputs a run's rows are built from: its train questions' first k CoTs
        (one, for teacher labels without CoTs) and their first m self-evaluations, prorated from the teach
        metrics' totals per kind of output. None: the teacher's cost is not known (a replayed teacher)."""
        if run.teacher == NO_TEACHER:
            return 0.0
        a = run.assembly.name
        if a not in self.assembled:
            self.assembled[a] = _read(METRICS / "assemble" / f"{a}.json", AssembleMetrics)
        teach = self.teach_metrics(run.dataset, run.teacher)
        usage = teach.usage if teach else None
        if self.assembled[a] is None or usage is None or not usage.by_kind:
            return None
        questions = self.assembled[a].questions
        used = {"cot": questions * (run.cots or 1), "self_eval": questions * run.cots * run.self_evals}
        total = 0.0
        for kind, n in used.items():
            u = usage.by_kind.get(kind)
            if u is None or not u.samples or not n:
                continue
            share = min(1.0, n / u.samples)
            total += share * {"teacher_usd": u.cost_usd, "teacher_requests": u.requests,
                              "teacher_tokens": u.prompt_tokens + u.completion_tokens}[metric]
        return round(total, 6)

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
        teach = self.teach_metrics(ds, teacher)
        v = teach.verdicts if teach else None
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
