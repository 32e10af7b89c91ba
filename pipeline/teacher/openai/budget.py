"""Cost, and ``budget_usd``: a cap on the TOTAL spend on one endpoint and model, across runs.

What earlier runs spent is read from the journal (every request's cost is recorded there), so a rerun
can only spend what is left. A request reserves its worst case while it is in flight (its prompt,
plus ``max_tokens`` for each sample it asks for) and, when it is answered, the reservation is replaced
by what it really cost. A request that does not fit in what is left waits for the requests in flight
to settle; with nothing in flight it asks for fewer samples, down to one; and when not even one
sample fits, the run stops. So concurrency shrinks only as the cap gets close, the run gets within
one sample's worst case of the cap, and it never goes over it (as long as the endpoint counts prompt
tokens no higher than we do: when it counts higher, later prompts are scaled up by the largest ratio
seen).
"""
from __future__ import annotations

import math
from typing import Optional

from ...core.spec import OpenAITeacher


def cost_usd(teacher: OpenAITeacher, prompt_tokens: float, completion_tokens: float) -> float:
    return (prompt_tokens * teacher.price_per_1m_input + completion_tokens * teacher.price_per_1m_output) / 1e6


class Budget:
    """The spend of one run against ``budget_usd`` (None: no cap; everything is still counted)."""

    def __init__(self, teacher: OpenAITeacher, spent_before: float = 0.0):
        self.teacher = teacher
        self.cap: Optional[float] = teacher.budget_usd
        self.spent_before = spent_before  # by earlier runs, on this endpoint and model (journal)
        self.spent = 0.0  # by this run
        self.reserved = 0.0  # worst cases of the requests in flight
        self.peak_reserved = 0.0
        self.prompt_scale = 1.0  # >= 1: how much higher the endpoint has counted prompts than we do

    # ------------------------------------------------------------------ what fits
    def worst_case(self, prompt_tokens: int, samples: int) -> float:
        """The most a request for ``samples`` samples of a prompt can cost."""
        return cost_usd(self.teacher, prompt_tokens * self.prompt_scale, self.teacher.max_tokens * samples)

    def left(self) -> float:
        """What may still be committed: the cap less everything spent and reserved (inf: no cap)."""
        if self.cap is None:
            return math.inf
        return self.cap - self.spent_before - self.spent - self.reserved

    def fit(self, prompt_tokens: int, samples: int) -> int:
        """How many of ``samples`` samples of a prompt fit in what is left now (0 to ``samples``)."""
        if self.cap is None:
            return samples
        room = self.left() - cost_usd(self.teacher, prompt_tokens * self.prompt_scale, 0)
        per_sample = cost_usd(self.teacher, 0, self.teacher.max_tokens)
        if room < 0:
            return 0
        if per_sample <= 0:
            return samples
        return min(samples, int(room // per_sample))

    # ------------------------------------------------------------------ bookkeeping
    def reserve(self, amount: float) -> None:
        self.reserved += amount
        self.peak_reserved = max(self.peak_reserved, self.reserved)

    def release(self, amount: float) -> None:
        self.reserved = max(0.0, self.reserved - amount)

    def spend(self, amount: float, prompt_tokens_counted: Optional[int] = None, prompt_tokens_ours: int = 0) -> None:
        """A request's real cost; with the endpoint's prompt count, to learn how much ours is off."""
        self.spent += amount
        if prompt_tokens_counted and prompt_tokens_ours > 0:
            self.prompt_scale = max(self.prompt_scale, prompt_tokens_counted / prompt_tokens_ours)

    @property
    def total(self) -> float:
        return self.spent_before + self.spent

    def metrics(self) -> dict:
        """The ``usage.budget`` entry of the teach metrics."""
        return {
            "budget_usd": self.cap,
            "spent_before_usd": round(self.spent_before, 6),
            "spent_usd": round(self.spent, 6),
            "reserved_peak_usd": round(self.peak_reserved, 6),
            "left_usd": None if self.cap is None else round(max(0.0, self.cap - self.total), 6),
        }
