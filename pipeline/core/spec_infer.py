"""Inference as a dimension of evaluation: the modes a table's ``inference`` axis names, and the
``infer:`` section (how the k samples of the sampled modes are drawn).

A mode is written ``greedy`` (the paper's: the greedy ``predict:`` answer), ``vote@k`` (k sampled
rationales and answers, majority vote: self-consistency) or ``verify@k`` (the same k samples, each
sampled CoT judged by the student's own self-evaluation, votes weighted by its probability of
``correct``; the judge is the run's final model, or with ``verify@k/stage1`` its stage-1
checkpoint). The mode and k are evaluation settings: they never change what a run trains."""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional

from pydantic import Field

from .spec_base import Strict

MODES_HELP = "greedy, vote@k, verify@k (the final model judges) or verify@k/stage1 (the stage-1 checkpoint judges)"
_MODE = re.compile(r"^(greedy|vote|verify)(?:@(-?\d+))?(?:/(final|stage1))?$")
JUDGES = ("final", "stage1")


@dataclass(frozen=True)
class Mode:
    kind: str  # greedy | vote | verify
    k: int = 1
    judge: Optional[str] = None  # verify only: final | stage1

    @property
    def sampled(self) -> bool:
        return self.kind != "greedy"


def parse_mode(text: object) -> Mode:
    """A mode's name -> Mode; ValueError with the reason (one line) when it is not one."""
    m = _MODE.match(str(text))
    if not m:
        raise ValueError(f"{text!r} is not an inference mode ({MODES_HELP})")
    kind, k, judge = m.group(1), m.group(2), m.group(3)
    if kind == "greedy":
        if k is not None or judge:
            raise ValueError(f"{text!r}: greedy takes no @k or judge (it is one greedy decode)")
        return Mode("greedy")
    if k is None:
        raise ValueError(f"{text!r}: give the number of samples, e.g. {kind}@5")
    if int(k) < 1:
        raise ValueError(f"{text!r}: k must be at least 1 (the number of sampled rationales)")
    if judge and kind != "verify":
        raise ValueError(f"{text!r}: only verify@k has a judge (/final or /stage1)")
    return Mode(kind, int(k), (judge or "final") if kind == "verify" else None)


class InferSpec(Strict):
    """How the sampled modes draw their k rationales and answers per question (the ``infer`` stage)."""

    temperature: float = Field(1.0, gt=0, description="sampling temperature of the k rationales and answers")
    top_p: float = Field(1.0, gt=0, le=1, description="nucleus sampling (1: the full distribution)")
    seed: int = Field(0, description="sampling seed: the same seed gives the same samples")
    batch_size: int = Field(32, ge=1, description="questions per generate call (x k samples)")
    max_new_tokens: int = Field(64, ge=1, description="for each sampled predict: answer")
    rationale_max_new_tokens: int = Field(256, ge=1, description="for each sampled explain: rationale")
    verdicts: list[str] = Field(["correct", "wrong", "uncertain"], min_length=2,
                                description="the verdict words the judge's predict: output is scored over; "
                                "P(correct) is the first's share")
