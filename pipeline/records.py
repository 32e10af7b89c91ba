"""Pydantic models of every artifact that passes between stages. ``schemas/*.schema.json`` are
generated from these (``python -m pipeline schemas``; a test keeps them in sync), and every
artifact is checked against its schema when written and when read."""
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
    source_rows: dict[str, int] = Field(description="rows per split in the source, before carving and limits (aligns DSS teacher files)")
    valid_carved_from_train: bool


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


class TeacherUsage(Record):
    """Requests, tokens and cost of the live teacher (``openai`` backend)."""

    model: str
    endpoint: str = Field(description="base URL of the endpoint, without credentials")
    prompts: dict[str, str] = Field(description="prompt template -> its version")
    n_per_request: Optional[bool] = Field(description="samples asked with `n` in one request (False: one request per sample; None: not needed yet)")
    samples: int = Field(ge=0, description="teacher outputs in the records: CoTs + self-evaluations")
    cached_samples: int = Field(ge=0, description="of those, already in the journal before this run")
    requests: int = Field(ge=0, description="requests this run sent that returned samples")
    http_attempts: int = Field(ge=0, description="HTTP requests this run made, the client's retries included")
    rate_limited: int = Field(ge=0, description="429 answers this run received (retried by the client)")
    prompt_tokens: int = Field(ge=0, description="this run")
    completion_tokens: int = Field(ge=0, description="this run")
    cost_usd: float = Field(ge=0, description="this run, at the prices in params")
    total_requests: int = Field(ge=0, description="journal requests behind the records (this run and earlier ones)")
    total_prompt_tokens: int = Field(ge=0)
    total_completion_tokens: int = Field(ge=0)
    total_cost_usd: float = Field(ge=0)
    quarantined: dict[str, int] = Field(description="outputs without a parseable answer/verdict, kept in quarantine.jsonl: cot, self_eval")
    skipped_self_evals: int = Field(0, ge=0, description="unparseable CoTs that were not self-evaluated")


class TeachMetrics(Record):
    dataset: str
    backend: str
    splits: dict[str, TeachSplitMetrics]
    usage: Optional[TeacherUsage] = Field(None, description="live teacher only: requests, tokens, cost")


class AssembleMetrics(Record):
    dataset: str
    method: str
    questions: int
    stage2_rows: int
    stage1_rows: int
    valid_rows: int
    stage1_valid_rows: int = 0
    excluded_unparseable: int
    excluded_unparseable_evaluations: int
    questions_without_cots: int


class EvalMetrics(Record):
    dataset: str
    method: str
    split: Split
    accuracy: float = Field(description="test accuracy of the checkpoint selected on the validation split (our protocol)")
    correct: int
    total: int
    selected_step: Optional[int] = Field(description="step of the checkpoint selected on validation")
    valid_accuracy: Optional[float] = Field(description="its validation accuracy")
    paper_protocol_accuracy: Optional[float] = Field(description="best test accuracy over the selection points: the official code's protocol (selection on test)")
    paper_protocol_step: Optional[int]
    stage1_verdict_agreement: Optional[float] = Field(None, description="two-stage methods: stage-1 student's verdicts vs the teacher's on held-out self-evaluations")
    mlflow_run_id: Optional[str] = None


def artifact_models() -> dict[str, type[BaseModel]]:
    return {
        "example": Example,
        "teacher": TeacherRecord,
        "train_row": TrainRow,
        "prediction": Prediction,
        "prepare_metrics": PrepareMetrics,
        "teach_metrics": TeachMetrics,
        "assemble_metrics": AssembleMetrics,
        "eval_metrics": EvalMetrics,
    }


def all_schemas() -> dict[str, dict]:
    out = {"params": params_json_schema()}
    for name, model in artifact_models().items():
        s = model.model_json_schema()
        s["$schema"] = "https://json-schema.org/draft/2020-12/schema"
        out[name] = s
    return out
