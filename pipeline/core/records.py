"""Pydantic models of every artifact that passes between stages. ``schemas/*.schema.json`` are
generated from these (``python -m pipeline schemas``; a test keeps them in sync). The stages build
and read these models through ``artifacts.write_records`` / ``read_records`` (JSON lines) and
``write_model`` / ``read_model`` (JSON files), which check every artifact against its schema when
written and when read."""
from __future__ import annotations

from typing import Literal, Optional

from pydantic import BaseModel, ConfigDict, Field

from .spec import Split, params_json_schema


class Record(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Example(Record):
    """One canonical question (``data/prepared/<dataset>/<split>.jsonl``)."""

    id: str = Field(description="stable id: the source's own id, or a hash of the question text")
    split: Split
    origin: Split = Field(description="the source split the example came from (valid may be carved from train)")
    index: int = Field(ge=0, description="row position in the source split (aligns DSS teacher files)")
    question: str = Field(description="question text (SVAMP: body + question; ANLI: the hypothesis)")
    premise: Optional[str] = Field(None, description="ANLI premise")
    choices: Optional[list[str]] = Field(None, description="CQA answer choices (a..e)")
    label: str = Field(description="gold answer: SVAMP equation or number, CQA choice text, ANLI label name")


ParseStatus = Literal["ok", "no_answer", "bad_answer", "empty"]
Verdict = Literal["correct", "wrong", "uncertain"]


class Evaluation(Record):
    text: str = Field(description="raw self-evaluation text from the teacher")
    explanation: Optional[str] = Field(description="evaluation text without its verdict line")
    verdict: Optional[Verdict]
    status: Literal["ok", "no_verdict"]


class CoT(Record):
    text: str = Field(description="raw teacher completion")
    rationale: Optional[str] = Field(description="text before the answer sentence")
    answer: Optional[str] = Field(description="parsed answer (None when unparseable)")
    status: ParseStatus
    reason: Optional[str] = Field(None, description="why parsing failed")
    correct: Optional[bool] = Field(description="answer scored against gold (None when unparseable)")
    source: str = Field(description="where the CoT came from (file or endpoint/model)")
    evaluations: list[Evaluation] = Field(default_factory=list)


class TeacherRecord(Record):
    """All teacher outputs for one question (``data/teacher/<dataset>/<split>.jsonl``)."""

    id: str
    split: Split
    label: str = Field(description="gold label (copied from the example)")
    cots: list[CoT]


class TrainRow(Record):
    """One training example of a method (``data/assembled/<dataset>/<method>/stage{1,2}.jsonl``).

    The student sees ``predict: <input>`` -> ``label`` and, when ``rationale`` is set,
    ``explain: <input>`` -> ``rationale``."""

    id: str = Field(description="question id (validation split is by question)")
    cot_index: Optional[int] = Field(description="which teacher CoT the row came from")
    eval_index: Optional[int] = Field(None, description="which self-evaluation (stage 1 rows)")
    input: str
    label: str
    rationale: Optional[str]


class Prediction(Record):
    id: str
    input: str
    gold: str
    prediction: str
    correct: bool
    rationale: Optional[str] = Field(None, description="the student's `explain:` output, if kept")


class SplitCounts(Record):
    train: int = Field(ge=0)
    valid: int = Field(ge=0)
    test: int = Field(ge=0)


class PrepareMetrics(Record):
    dataset: str
    rows: SplitCounts
    source_rows: dict[str, int] = Field(description="rows per split in the source (after its split manifest, if any), before carving and limits (aligns DSS teacher files)")
    valid_carved_from_train: bool
    manifest: Optional[str] = Field(None, description="the split manifest the source rows were assigned by, if any")
    manifest_loaded_rows: Optional[dict[str, int]] = Field(None, description="with a manifest: rows per split as the source lists them, before the manifest re-split them")
    manifest_dropped: int = Field(0, ge=0, description="source rows whose id is in no split of the manifest (dropped)")
    duplicate_questions: int = Field(0, ge=0, description="source rows (after the manifest) whose question repeats an earlier row's, case- and whitespace-insensitive: each kept as a row of its own, with an id of its own")


class TeachSplitMetrics(Record):
    questions: int
    questions_with_cots: int = Field(description="questions the teacher answered at least once")
    cots: int
    parsed: int
    parse_rate: Optional[float]
    accuracy: Optional[float] = Field(description="fraction of the questions with CoTs whose FIRST CoT is correct (unparseable = wrong)")
    correct: int
    cot_accuracy: Optional[float] = Field(description="fraction of all CoTs that are correct")
    evaluations: int = 0
    verdicts: dict[str, int] = Field(default_factory=dict)
    verdict_agreement: Optional[float] = Field(None, description="how often 'correct'/'wrong' verdicts agree with the CoT's gold correctness")
    unmatched_source_rows: int = 0


class VerdictCounts(Record):
    """The teacher's self-evaluations judged against the gold correctness of the CoT each one judges
    (CoTs without a parseable answer are not counted: their correctness is unknown)."""

    on_correct: dict[str, int] = Field(description="verdict (correct / wrong / uncertain / unparsed) -> evaluations of CoTs that reached the gold answer")
    on_wrong: dict[str, int] = Field(description="the same, for CoTs that did not")
    wrong_precision: Optional[float] = Field(description="of the 'wrong' verdicts, the share on wrong CoTs")
    wrong_recall: Optional[float] = Field(description="of the evaluations of wrong CoTs, the share saying 'wrong'")
    agreement: Optional[float] = Field(description="of the 'correct'/'wrong' verdicts, the share matching gold")


# the live teacher's usage (TeacherUsage and its parts) lives in records_usage.py; built on Record above
from .records_usage import KindUsage, TeacherBatch, TeacherBudget, TeacherSnapshot, TeacherUsage  # noqa: E402,F401


class TeachMetrics(Record):
    dataset: str
    teacher: str = Field(description="the teacher's name (params.yaml: teachers.<name>)")
    description: str = ""
    backend: str
    selected_by_gold: bool = Field(False, description="the recorded files hold only CoTs that reached the gold answer: "
                                   "their accuracy is not the teacher's")
    splits: dict[str, TeachSplitMetrics]
    verdicts: Optional[VerdictCounts] = Field(None, description="all splits' self-evaluations against gold (None: none)")
    stopped: Optional[str] = Field(None, description="why the teacher stopped before every output was in (the stage failed)")
    usage: Optional[TeacherUsage] = Field(None, description="live or simulated teacher: requests, tokens, cost (simulated: "
                                          "words of a notional prompt and completion as tokens)")
    error_kinds: Optional[dict[str, int]] = Field(None, description="simulated teacher only: its CoTs by the error they "
                                                  "were given (none, operand, operator, arithmetic), every split")


class RunDims(Record):
    """What a run trains: its name says all of it (``pipeline/runs.py``)."""

    run: str = Field(description="e.g. svamp-gpt35-cot5_se-base-teacher-k5-m5-s42")
    dataset: str
    teacher: str = Field(description="the teacher's name; `none` for runs that use no teacher output")
    method: str
    student: str
    labels: Literal["gold", "teacher"]
    cots: int = Field(ge=0)
    self_evals: int = Field(ge=0)
    seed: int
    label_noise: float = Field(0.0, ge=0, lt=1, description="share of training answers replaced by a wrong one")


class AssembleMetrics(Record):
    assembly: str = Field(description="e.g. svamp-gpt35-teacher-k5-m5: dataset, teacher, labels, #CoTs, #self-evaluations")
    dataset: str
    teacher: str
    labels: Literal["gold", "teacher"]
    cots: int = Field(ge=0)
    self_evals: int = Field(ge=0)
    questions: int
    stage2_rows: int
    stage1_rows: int
    valid_rows: int
    stage1_valid_rows: int = 0
    excluded_unparseable: int
    excluded_unparseable_evaluations: int
    questions_without_cots: int
    label_noise: float = Field(0.0, ge=0, lt=1, description="the share of training questions whose answers were replaced")
    noised_questions: int = Field(0, ge=0, description="training questions whose answer was replaced by a wrong one")
    noised_rows: int = Field(0, ge=0, description="stage-2 rows with a replaced answer")


class EvalMetrics(RunDims):
    split: Split
    accuracy: float = Field(description="test accuracy of the checkpoint selected on the validation split (our protocol)")
    correct: int
    total: int
    started_at: float = Field(description="evaluation start (Unix time, s)")
    finished_at: float = Field(description="evaluation end (Unix time, s)")


class TrainStep(Record):
    """One logged optimiser step (``train.log_every``): losses averaged over the step's micro-batches."""

    step: int = Field(ge=1)
    epoch: float = Field(ge=0, description="epochs done after this step")
    loss: float = Field(description="the multi-task loss: alpha * pred_loss + (1 - alpha) * expl_loss")
    pred_loss: float = Field(description="`predict:` (label) loss")
    expl_loss: Optional[float] = Field(description="`explain:` (rationale) loss (None: no row of the step had a rationale)")
    lr: float
    examples: int = Field(ge=0, description="rows trained on in this step (all ranks)")


class SelectionPoint(Record):
    """One checkpoint-selection evaluation: accuracy on the validation split (and test, paper protocol)."""

    step: int = Field(ge=0)
    epoch: float = Field(ge=0)
    valid_accuracy: float = Field(ge=0, le=1)
    test_accuracy: Optional[float] = Field(ge=0, le=1, description="paper protocol only (None: not scored on test)")


class TrainSummary(RunDims):
    """One training stage of a run: what ran, where, how long, and the selected checkpoint."""

    stage: Literal["stage1", "stage2"]
    device: str
    precision: Literal["bf16", "fp32"]
    forward: Literal["separate", "joint"]
    parameters: int = Field(ge=0, description="student parameters")
    init: str = Field(description="'base' or the stage-1 checkpoint the stage started from")
    world_size: int = Field(ge=1, description="data-parallel processes")
    rows: int = Field(ge=0, description="training rows")
    epochs: float = Field(ge=0, description="epochs trained: the budget's, or those its steps make (a budget in steps)")
    budget_steps: Optional[int] = Field(None, ge=1, description="the budget in optimiser steps (None: in epochs)")
    steps: int = Field(ge=0, description="optimiser steps")
    seconds: float = Field(ge=0, description="training time of this run (not counting steps before a resume)")
    selection_seconds: float = Field(0.0, ge=0, description="of `seconds`, the time spent decoding the selection points")
    started_at: float = Field(description="stage start (Unix time, s): model loading, training, selection, saving")
    finished_at: float = Field(description="stage end (Unix time, s)")
    examples_per_s: Optional[float] = Field(ge=0)
    resumed_from_step: int = Field(ge=0)
    verdict_agreement: Optional[float] = Field(ge=0, le=1, description="stage 1: the student's verdicts vs the teacher's on held-out self-evaluations")
    verdict_rows: int = Field(ge=0, description="stage 1: held-out self-evaluation rows behind verdict_agreement")
    selected: Optional[SelectionPoint] = Field(description="the checkpoint saved: best validation accuracy (None: no selection)")
    paper_protocol_best: Optional[SelectionPoint] = Field(description="the best test accuracy over the selection points (the official code's protocol)")


class TrainingLog(TrainSummary):
    """A training stage's log, written once as its metrics file ``metrics/train/<run>/stage{1,2}.json``:
    the one home of the run's curves, selection points and stage-1 verdict agreement (the report stage
    reads it for the tables and logs it to MLflow)."""

    history: list[TrainStep]
    evals: list[SelectionPoint]


class TeacherOnCommon(Record):
    """One teacher on the questions every teacher of the dataset answered."""

    accuracy: Optional[float] = Field(description="share of those questions whose first CoT reached the gold answer (unparseable = wrong)")
    parse_rate: Optional[float] = Field(description="share of the teacher's CoTs of those questions with a parseable answer")
    cot_accuracy: Optional[float] = Field(description="share of all its CoTs of those questions that reached the gold answer")
    cots: int = Field(ge=0, description="its CoTs of those questions")
    answered: int = Field(ge=0, description="questions of the split it answered (the common ones are a subset)")
    selected_by_gold: bool = Field(description="its files hold only CoTs that reached the gold answer: accuracy is not the teacher's")


class TeacherComparison(Record):
    """``metrics/teachers/<dataset>.json``: a dataset's teachers on the same questions."""

    dataset: str
    split: Optional[str] = Field(description="the split with the most questions that every teacher answered (None: no such question)")
    questions: int = Field(ge=0, description="questions of that split every teacher answered")
    split_questions: int = Field(ge=0, description="questions in that split")
    teachers: dict[str, TeacherOnCommon]


class SpecCheck(Record):
    """``metrics/spec.json``: the stamp of the ``spec`` stage, written when the whole ``params.yaml``
    validated and ``runs.yaml`` is in sync. Its content never depends on the spec, so a valid edit
    leaves it byte-identical and re-runs only the stages that read the edited keys."""

    params: str = Field(description="the spec file that was checked")
    runs: str = Field(description="the run list checked in sync with its tables")
    valid: Literal[True]


def artifact_models() -> dict[str, type[BaseModel]]:
    return {
        "spec_check": SpecCheck,
        "example": Example,
        "teacher": TeacherRecord,
        "train_row": TrainRow,
        "prediction": Prediction,
        "prepare_metrics": PrepareMetrics,
        "teach_metrics": TeachMetrics,
        "teacher_comparison": TeacherComparison,
        "assemble_metrics": AssembleMetrics,
        "eval_metrics": EvalMetrics,
        "training_log": TrainingLog,
        "sample_set": SampleSet,
        "infer_metrics": InferMetrics,
        "throughput": Throughput,
        "forecast": Forecast,
    }


from .records_infer import InferMetrics, SampleSet  # noqa: E402  (they build on Record and RunDims above)
from .records_forecast import Forecast, Throughput  # noqa: E402


def all_schemas() -> dict[str, dict]:
    out = {"params": params_json_schema()}
    for name, model in artifact_models().items():
        s = model.model_json_schema()
        s["$schema"] = "https://json-schema.org/draft/2020-12/schema"
        out[name] = s
    return out

