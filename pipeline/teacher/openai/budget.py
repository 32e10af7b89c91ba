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

Requests that may have been billed without an answer we could read (an attempt the client abandoned
at ``timeout_s`` while the server went on; requests in flight when a process died) are *uncertain*:
their worst case is counted as spent, in this run (``abandon``) and, through the journal's pending
rows, in every later one (``from_journal``), so the cap holds counting them too.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Optional

from ...core.spec import OpenAITeacher

if TYPE_CHECKING:
    from ..journal import Journal


def cost_usd(teacher: OpenAITeacher, prompt_tokens: float, completion_tokens: float) -> float:
    """At the prices in params; in batch mode (``mode: batch``), at ``batch_price_factor`` of them."""
    factor = teacher.batch_price_factor if teacher.mode == "batch" else 1.0
    return factor * (prompt_tokens * teacher.price_per_1m_input + completion_tokens * teacher.price_per_1m_output) / 1e6


class Budget:
    """The spend of one run against ``budget_usd`` (None: no cap; everything is still counted)."""

    def __init__(self, teacher: OpenAITeacher, spent_before: float = 0.0, uncertain_before: float = 0.0,
                 uncertain_requests_before: int = 0):
        self.teacher = teacher
        self.cap: Optional[float] = teacher.budget_usd
        # by earlier runs, on this endpoint and model (journal): answered, plus uncertain worst cases
        self.spent_before = spent_before + uncertain_before
        self.uncertain_before, self.uncertain_requests_before = uncertain_before, uncertain_requests_before
        self.spent = 0.0  # answered in this run
        self.uncertain = 0.0  # worst cases of this run's attempts that may have been billed unseen
        self.uncertain_requests = 0
        self.reserved = 0.0  # worst cases of the requests in flight
        self.peak_reserved = 0.0
        self.prompt_scale = 1.0  # >= 1: how much higher the endpoint has counted prompts than we do

    @classmethod
    def from_journal(cls, teacher: OpenAITeacher, journal: "Journal", endpoint: str) -> "Budget":
        """What earlier runs spent on the endpoint and model, the pending (uncertain) requests included."""
        u = journal.uncertain(endpoint, teacher.model)
        return cls(teacher, journal.spent(endpoint, teacher.model)["cost_usd"], u["cost_usd"], u["requests"])

    # ------------------------------------------------------------------ what fits
    def worst_case(self, prompt_tokens: int, samples: int) -> float:
        """The most a request for ``samples`` samples of a prompt can cost."""
        return cost_usd(self.teacher, prompt_tokens * self.prompt_scale, self.teacher.max_tokens * samples)

    def left(self) -> float:
        """What may still be committed: the cap less everything spent and reserved (inf: no cap)."""
        if self.cap is None:
            return math.inf
        return self.cap - self.total - self.reserved

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

    def abandon(self, amount: float, attempts: int) -> None:
        """``attempts`` HTTP attempts that may have been billed unseen, at most ``amount`` in all."""
        self.uncertain += amount
        self.uncertain_requests += attempts

    @property
    def total(self) -> float:
        """Everything counted against the cap: earlier runs, this run, the uncertain worst cases."""
        return self.spent_before + self.spent + self.uncertain

    @property
    def uncertain_all(self) -> float:
        return self.uncertain_before + self.uncertain

    def metrics(self) -> dict:
        """The ``usage.budget`` entry of the teach metrics: spent_before + spent + uncertain + left = cap."""
        return {
            "budget_usd": self.cap,
            "spent_before_usd": round(self.spent_before - self.uncertain_before, 6),
            "spent_usd": round(self.spent, 6),
            "uncertain_usd": round(self.uncertain_all, 6),
            "uncertain_requests": self.uncertain_requests_before + self.uncertain_requests,
            "reserved_peak_usd": round(self.peak_reserved, 6),
            "left_usd": None if self.cap is None else round(max(0.0, self.cap - self.total), 6),
        }


def usd_pair(a: float, b: float, digits: int = 4) -> tuple[str, str]:
    """``$a`` and ``$b`` with enough decimals (4 to 10) that they read differently when they differ."""
    for d in range(digits, 11):
        x, y = f"${a:.{d}f}", f"${b:.{d}f}"
        if x != y:
            return x, y
    return f"${a!r}", f"${b!r}"
