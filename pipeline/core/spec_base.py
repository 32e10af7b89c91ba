"""The spec's shared building blocks: the splits, and the strict base model (unknown keys are errors)."""
from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

Split = Literal["train", "valid", "test"]
SPLITS: tuple[str, ...] = ("train", "valid", "test")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
