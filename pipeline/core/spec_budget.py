"""Training budgets: how long each stage of a method trains, and how often stage 2 selects, per dataset.

A method's ``epochs`` / ``se_epochs`` are its defaults (the paper's official SVAMP commands). A method
may override them for a dataset, per stage, in epochs or in optimiser steps::

    methods:
      cot5_se:
        epochs: 80
        se_epochs: 50
        datasets:
          cqa:
            stage1: {steps: 125000}
            stage2: {steps: 40000, select_every_steps: 2000}

The run's name does not change: a budget is a param of its stages, like ``epochs``. ``runs.yaml``
names, for each run, the params keys its stages' budgets come from (``budget_keys``), so that
``dvc.yaml`` lists exactly those: a change to one dataset's budget re-runs that dataset's stages only.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

from pydantic import Field, model_validator

from .spec_base import Strict


def _not_both(model, a: str, b: str):
    if getattr(model, a) is not None and getattr(model, b) is not None:
        raise ValueError(f"set {a} or {b}, not both")
    return model


class StageBudget(Strict):
    """One stage's training length on one dataset: epochs or optimiser steps (``train.max_steps`` still caps it)."""

    epochs: Optional[float] = Field(None, gt=0, description="epochs over this stage's rows")
    steps: Optional[int] = Field(None, ge=1, description="optimiser steps (at train.batch_size x grad_accum rows per step)")

    @model_validator(mode="after")
    def _one_length(self) -> "StageBudget":
        return _not_both(self, "epochs", "steps")

    @property
    def sets_length(self) -> bool:
        return self.epochs is not None or self.steps is not None


class SelectingBudget(StageBudget):
    """Stage 2's length and its selection cadence on one dataset (default: ``train.select_every``)."""

    select_every: Optional[float] = Field(None, ge=0, description="epochs between selection points (0: only at the end)")
    select_every_steps: Optional[int] = Field(None, ge=1, description="optimiser steps between selection points")

    @model_validator(mode="after")
    def _one_cadence(self) -> "SelectingBudget":
        return _not_both(self, "select_every", "select_every_steps")


class DatasetBudget(Strict):
    """A method's budgets on one dataset; a stage not named keeps the method's default."""

    stage1: Optional[StageBudget] = Field(None, description="the self-evaluation stage (two-stage methods)")
    stage2: Optional[SelectingBudget] = Field(None, description="the CoT / label stage (every method)")


@dataclass(frozen=True)
class Budget:
    """A stage's resolved budget: its length (epochs or steps) and, for stage 2, its selection cadence."""

    epochs: Optional[float]
    steps: Optional[int]
    select_every: Optional[float] = None  # epochs between selection points (None: steps, or stage 1)
    select_every_steps: Optional[int] = None

    def total_steps(self, n_batches: int, grad_accum: int, max_steps: Optional[int]) -> int:
        """Optimiser steps of the stage over ``n_batches`` global batches per epoch (the loop's rule)."""
        total = self.steps if self.steps is not None else max(1, math.ceil(n_batches * self.epochs / grad_accum))
        return min(total, max_steps) if max_steps else total


def resolve_budget(method, dataset: str, stage: str, default_select_every: float) -> Budget:
    """The budget of ``method``'s ``stage`` (stage1 | stage2) on ``dataset``: its override, else its defaults."""
    o = method.datasets.get(dataset)
    over = getattr(o, stage) if o else None
    default_epochs = method.se_epochs if stage == "stage1" else method.epochs
    epochs, steps = (over.epochs, over.steps) if over is not None and over.sets_length else (default_epochs, None)
    if stage == "stage1":
        return Budget(epochs, steps)
    if over is not None and over.select_every_steps is not None:
        return Budget(epochs, steps, None, over.select_every_steps)
    every = over.select_every if over is not None and over.select_every is not None else default_select_every
    return Budget(epochs, steps, every)


def budget_keys(method, method_name: str, dataset: str, two_stage: bool) -> dict[str, str]:
    """The params keys each stage's budget reads (runs.yaml carries them for dvc.yaml's ``params:``). Two per
    stage: the override (or the default, named again) and where the length comes from (the default when the
    override sets none); stage 1's only for two-stage runs."""
    o = method.datasets.get(dataset)
    out = {}
    for stage, default in (("stage1", "se_epochs"), ("stage2", "epochs"))[0 if two_stage else 1:]:
        over = getattr(o, stage) if o else None
        default_key = f"methods.{method_name}.{default}"
        override_key = f"methods.{method_name}.datasets.{dataset}.{stage}"
        out[f"{stage}_budget"] = override_key if over is not None else default_key
        out[f"{stage}_length"] = override_key if over is not None and over.sets_length else default_key
    return out
