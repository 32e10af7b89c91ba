"""When the loop evaluates: its selection points as optimiser steps (torch-free, so the compute plan
``pipeline/stages/forecast.py`` counts them without loading torch)."""
from __future__ import annotations

import math
from typing import Optional

__all__ = ["selection_steps"]


def selection_steps(eval_every: float, n_batches: int, grad_accum: int, total_steps: int,
                    every_steps: Optional[int] = None) -> list[int]:
    """The optimiser steps after which the loop evaluates: the first step reaching each selection
    point ``k * eval_every`` epochs (``step * grad_accum / n_batches`` epochs are done after
    ``step``), none beyond ``total_steps``, and ``total_steps`` itself, once. With ``every_steps``:
    every ``every_steps``-th step instead (and ``total_steps``)."""
    steps = {total_steps}
    if every_steps:
        steps.update(range(every_steps, total_steps + 1, every_steps))
    elif eval_every > 0:
        per = eval_every * n_batches  # global batches between selection points
        points = lambda s: math.floor(s * grad_accum / per + 1e-9)  # noqa: E731  (points reached after step s)
        steps.update(s for s in range(1, total_steps + 1) if points(s) > points(s - 1))
    return sorted(steps)
