"""The infer stage's artifacts: each question's k sampled rationales and answers with the judges'
verdicts (``SampleSet``, ``results/samples/<run>-sample<k>/samples.jsonl``), and the metrics of the
sampled modes and of the run's own judges (``InferMetrics``, ``metrics/evaluate/<run>-sample<k>.json``)."""
from __future__ import annotations

from typing import Literal, Optional

from pydantic import Field

from .records import Record, RunDims
from .spec_base import Split


class Sample(Record):
    """One sampled CoT: an ``explain:`` rationale and a ``predict:`` answer, drawn together (sample i of each)."""

    rationale: str
    answer: str
    correct: bool = Field(description="the answer against gold, by the task's scorer")
    error: Optional[Literal["arithmetic", "reasoning"]] = Field(
        None, description="a wrong sample's error: a false `a op b = c` step in its rationale (arithmetic), or "
        "none found (reasoning: wrong operand, operator or step); None for right samples and tasks without steps")
    p_correct: dict[str, float] = Field(default_factory=dict, description="judge (final, stage1) -> P(correct)")


class SampleSet(Record):
    id: str
    gold: str
    samples: list[Sample]
    vote: Optional[str] = Field(description="the majority answer (ties: the first drawn)")
    verify: dict[str, Optional[str]] = Field(default_factory=dict,
                                             description="judge -> the answer with the most P(correct) in all")


class JudgeMetrics(Record):
    """One judge (the run's final model or its stage-1 checkpoint) on the run's own samples, against the
    gold correctness of each sample. Verdict: 'wrong' when P(correct) < 1/2."""

    verify_accuracy: float = Field(ge=0, le=1, description="verify@k: votes weighted by P(correct)")
    wrong_precision: Optional[float] = Field(ge=0, le=1, description="of its 'wrong' verdicts, the share on wrong samples")
    wrong_recall: Optional[float] = Field(ge=0, le=1, description="of the wrong samples, the share it calls wrong")
    wrong_recall_by_error: dict[str, Optional[float]] = Field(description="the same, per kind of error")
    auroc: Optional[float] = Field(ge=0, le=1, description="P(correct) ranking right samples above wrong ones "
                                   "(None: all samples right, or all wrong)")
    pick_rate: Optional[float] = Field(ge=0, le=1, description="verify@k right, of the questions where a sample is")
    mean_p_correct: float = Field(ge=0, le=1)


class InferMetrics(RunDims):
    k: int = Field(ge=1, description="samples per question")
    split: Split
    questions: int = Field(ge=0)
    temperature: float
    top_p: float
    vote_accuracy: float = Field(ge=0, le=1, description="vote@k: majority answer (self-consistency)")
    vote_pick_rate: Optional[float] = Field(ge=0, le=1, description="vote@k right, of the questions where a sample is")
    oracle_accuracy: float = Field(ge=0, le=1, description="oracle@k: at least one sample right (any reranker's bound)")
    sample_accuracy: float = Field(ge=0, le=1, description="share of right samples")
    wrong_samples: dict[str, int] = Field(description="wrong samples, per kind of error")
    judges: dict[Literal["final", "stage1"], JudgeMetrics] = Field(
        description="two-stage runs: the final model and the stage-1 checkpoint; one-stage runs: none (no trained judge)")
    started_at: float
    finished_at: float
