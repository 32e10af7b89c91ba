"""The spec's ``students:`` and ``tables:`` sections: which student sizes exist, and which tables of
the paper to regenerate. A table is data: rows and columns over run dimensions, the fixed values of
the others, the seeds, the metric and how it is shown. The runs are derived from the tables
(``pipeline/runs.py``); cross-references (a method, dataset or student a table names) are checked by
``Params`` in ``pipeline/spec.py``.
"""
from __future__ import annotations

from typing import Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from .spec_errors import did_you_mean
from .spec_infer import parse_mode

# the dimensions a table's rows / columns / fixed values may name (the seed comes from ``seeds``): what a run
# trains, and `inference`, how its final model is evaluated (greedy, vote@k, verify@k: never retrains)
Dim = Literal["method", "dataset", "teacher", "student", "labels", "cots", "self_evals", "label_noise", "inference"]
DIMS: tuple[str, ...] = Dim.__args__

# what a cell shows
JudgeMetric = Literal["judge_wrong_precision", "judge_wrong_recall", "judge_auroc", "verify_pick_rate",
                      "judge_wrong_recall_arithmetic", "judge_wrong_recall_reasoning"]
SampleMetric = Literal["oracle_accuracy", "sample_accuracy"]
CostMetric = Literal["teacher_usd", "teacher_requests", "teacher_tokens", "train_minutes"]
RunMetric = Literal["accuracy", "paper_protocol_accuracy", "verdict_agreement", JudgeMetric, SampleMetric, CostMetric]
JUDGE_METRICS: tuple[str, ...] = JudgeMetric.__args__
SAMPLE_METRICS: tuple[str, ...] = JudgeMetric.__args__ + SampleMetric.__args__  # need a sampled inference mode
COST_METRICS: tuple[str, ...] = CostMetric.__args__
TeacherMetric = Literal["teacher_accuracy", "teacher_parse_rate", "teacher_cot_accuracy",
                        "se_agreement", "se_wrong_precision", "se_wrong_recall", "se_evaluations",
                        "se_correct_on_correct", "se_wrong_on_correct", "se_uncertain_on_correct",
                        "se_correct_on_wrong", "se_wrong_on_wrong", "se_uncertain_on_wrong", "se_unparsed"]
Metric = Union[RunMetric, TeacherMetric]
TEACHER_METRICS: tuple[str, ...] = TeacherMetric.__args__
COUNT_METRICS: tuple[str, ...] = tuple(m for m in TEACHER_METRICS if m == "se_evaluations" or "_on_" in m
                                       or m == "se_unparsed") + ("teacher_requests", "teacher_tokens")  # counts
PLAIN_METRICS: tuple[str, ...] = ("teacher_usd", "train_minutes")  # numbers with decimals, not percent
METRIC_HELP = (
    "accuracy: test accuracy of the checkpoint selected on the validation split (our protocol); "
    "paper_protocol_accuracy: the best test accuracy over all selection points (the official code's "
    "selection, optimistic); verdict_agreement: the stage-1 student's agreement with the teacher's "
    "verdicts on held-out self-evaluations (two-stage runs); teacher_accuracy / teacher_parse_rate / "
    "teacher_cot_accuracy: the teacher's first CoT per question / its CoTs, on the questions every teacher of "
    "the dataset answered (metrics/teachers); se_*: the teacher's self-evaluations judged against the gold "
    "correctness of the CoT each judges (agreement, precision and recall of 'wrong', counts of each verdict on "
    "correct and on wrong CoTs). Teacher metrics: rows and cols among dataset and teacher. With a sampled "
    "`inference` mode (vote@k, verify@k): oracle_accuracy (oracle@k: at least one of the k samples is right), "
    "sample_accuracy (share of right samples); with verify@k, the judge's: judge_wrong_precision / "
    "judge_wrong_recall (its 'wrong' verdicts against the samples' gold correctness; _arithmetic / _reasoning: "
    "recall on wrong samples with an arithmetic slip in a step, or without), judge_auroc (from P(correct)), "
    "verify_pick_rate (verify@k right where at least one sample is). Cost: teacher_usd / teacher_requests / "
    "teacher_tokens (the teacher's bill for the CoTs and evaluations the run's rows use), train_minutes"
)

Value = Union[int, float, str]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class StudentSpec(_Strict):
    """One student size a table may name (``small``, ``base``, ``large``)."""

    id: str = Field(description="Hub id or local directory of a pretrained T5 (or of its config, with from_config)")
    from_config: bool = Field(False, description="build a randomly initialised model from the config at `id` (offline)")
    config_overrides: dict[str, Union[int, float, str, bool]] = Field(
        default_factory=dict, description="T5Config fields set on the config at `id` (with from_config)")
    tokenizer: Optional[str] = Field(None, description="defaults to `id`")

    @field_validator("config_overrides")
    @classmethod
    def _t5_fields(cls, v: dict, info: ValidationInfo) -> dict:
        fields = (info.context or {}).get("t5_fields")
        for k in v if fields is not None else ():
            if k not in fields:
                raise ValueError(f"{k}: not a field of T5Config{did_you_mean(k, fields)}")
        return v

    @model_validator(mode="after")
    def _overrides_need_a_config(self) -> "StudentSpec":
        if self.config_overrides and not self.from_config:
            raise ValueError("config_overrides: only with from_config: true (a pretrained checkpoint keeps its "
                             "own config)")
        return self


class TableSpec(_Strict):
    """One table (or line figure) of the paper, as data. Each cell is one run per seed: its
    dimensions are the row value, the column value, ``fixed``, and for ``labels``/``cots``/
    ``self_evals`` the method's own values otherwise. Cells that two tables share are one run."""

    title: str
    paper: str = Field("", description="the section / table of the paper this regenerates")
    rows: Dim
    cols: Optional[Dim] = Field(None, description="none: one column per metric (`metric` is then a list)")
    values: dict[Dim, list[Value]] = Field(description="the values of the rows and cols dimensions, in order")
    fixed: dict[Dim, Value] = Field(default_factory=dict, description="values of other dimensions, for every cell")
    omit: list[dict[Dim, Union[Value, list[Value]]]] = Field(
        default_factory=list, description="cells not run, shown as '-': each entry matches the cells whose dimensions "
        "have all its values (a list: any of them), e.g. {method: cot5_se, dataset: cqa} where the teacher gave no "
        "self-evaluations, or {dataset: cqa, teacher: [gpt35, gpt4o]} for teachers a dataset does not have")
    seeds: Optional[list[int]] = Field(None, description="one run per seed per cell (mean +- std, n); default: [seed]")
    metric: Union[Metric, list[Metric]] = Field("accuracy", description=METRIC_HELP)
    show: Literal["table", "line", "cost"] = Field(
        "table", description="line: a line figure, x = cols, one line per row; cost: the first of two metrics (an "
        "accuracy) against the second (a cost, e.g. teacher_usd), one line per row through the cols' cells")

    @field_validator("seeds")
    @classmethod
    def _seeds(cls, v):
        if v is not None and not v:
            raise ValueError("list at least one seed (or leave `seeds` out for the top-level seed)")
        if v is not None and len(set(v)) != len(v):
            raise ValueError("a seed is listed twice")
        return v

    @model_validator(mode="after")
    def _shape(self) -> "TableSpec":
        axes = [self.rows] + ([self.cols] if self.cols else [])
        if self.cols == self.rows:
            raise ValueError("cols: must differ from rows")
        for d in axes:
            if not self.values.get(d):
                raise ValueError(f"values.{d}: list the values of the {d} axis")
            if len(set(map(str, self.values[d]))) != len(self.values[d]):
                raise ValueError(f"values.{d}: a value is listed twice")
        for d in self.values:
            if d not in axes:
                raise ValueError(f"values.{d}: {d} is not an axis of this table (put a single value in fixed)")
        for d in self.fixed:
            if d in axes:
                raise ValueError(f"fixed.{d}: {d} is already an axis of this table")
        metrics = self.metric if isinstance(self.metric, list) else [self.metric]
        if isinstance(self.metric, list) and len(set(metrics)) != len(metrics):
            raise ValueError("metric: a metric is listed twice")
        if not self.cols and not isinstance(self.metric, list):
            raise ValueError("cols: missing (or give `metric` as a list: one column per metric)")
        teacher = [m for m in metrics if m in TEACHER_METRICS]
        if teacher and (len(teacher) != len(metrics) or not set(axes) <= {"dataset", "teacher"}):
            raise ValueError("metric: teacher metrics need rows (and cols) among dataset and teacher, and only "
                             "teacher metrics")
        dims = {d: list(self.values.get(d, [])) + ([self.fixed[d]] if d in self.fixed else [])
                for d in ("inference", "label_noise")}
        for v in dims["inference"]:
            try:
                parse_mode(v)
            except ValueError as e:
                raise ValueError(f"{'values' if 'inference' in self.values else 'fixed'}.inference: {e}") from None
        for v in dims["label_noise"]:
            if isinstance(v, str) or not 0 <= v < 1:
                raise ValueError(f"{'values' if 'label_noise' in self.values else 'fixed'}.label_noise: {v!r} is not a "
                                 "share in [0, 1) (of training answers replaced by a wrong one)")
        sampled = [m for m in metrics if m in SAMPLE_METRICS]
        if sampled and not any(parse_mode(v).sampled for v in dims["inference"]):
            raise ValueError(f"metric: {sampled[0]} needs a sampled inference mode (vote@k or verify@k) as rows, cols "
                             "or fixed.inference")
        if self.show == "cost" and (not self.cols or len(metrics) != 2 or metrics[1] not in COST_METRICS
                                    or metrics[0] in COUNT_METRICS + PLAIN_METRICS):
            raise ValueError("show: a cost figure needs cols and two metrics: an accuracy, then a cost ("
                             + ", ".join(COST_METRICS) + ")")
        if self.show == "line" and (not self.cols or len(metrics) > 1):
            raise ValueError("show: a line figure needs cols (its x axis) and one metric")
        return self

    @property
    def metrics(self) -> list[str]:
        return list(self.metric) if isinstance(self.metric, list) else [self.metric]

    @property
    def teacher_only(self) -> bool:
        return all(m in TEACHER_METRICS for m in self.metrics)


def table_cells(t: TableSpec, omitted: bool = False):
    """(row value, col value or None, the cell's dimensions) of every cell, rows first; the
    dimensions are ``fixed`` plus the row and column values (method defaults are not filled in).
    Cells matched by ``omit`` are left out (``omitted=True``: only those)."""
    for r in t.values[t.rows]:
        for c in (t.values[t.cols] if t.cols else [None]):
            dims = dict(t.fixed)
            dims[t.rows] = r
            if t.cols:
                dims[t.cols] = c
            hit = any(all(str(dims.get(k)) in (map(str, v) if isinstance(v, list) else [str(v)]) for k, v in o.items())
                      for o in t.omit)
            if hit == omitted:
                yield r, c, dims
