"""ANLI: natural language inference; input = premise </s> hypothesis, answer = label name."""
from __future__ import annotations

import re
from typing import Optional

from ..core.records import Example
from .base import Task, normalize_text

LABELS = ("entailment", "neutral", "contradiction")


def _label_name(v) -> str:
    if isinstance(v, int) or (isinstance(v, str) and v.isdigit()):
        i = int(v)
        if not 0 <= i < 3:
            raise ValueError(f"label {v} out of range 0..2")
        return LABELS[i]
    if str(v) in LABELS:
        return str(v)
    raise ValueError(f"unknown label {v!r}")


class ANLI(Task):
    name = "anli"
    stop_markers = ("Premise:", "Q:")
    answer_pattern = r"So the answer is\s*"

    def from_hub_row(self, row: dict) -> dict:  # facebook/anli
        return {"id": str(row["uid"]), "question": row["hypothesis"], "premise": row["premise"],
                "label": _label_name(row["label"])}

    def from_local_row(self, row: dict, fmt: str) -> dict:
        if fmt != "dss":
            raise ValueError(f"unknown format {fmt}")
        return {"id": str(row["uid"]) if row.get("uid") else None,
                "question": row["hypothesis"], "premise": row["premise"], "label": _label_name(row["label"])}

    def model_input(self, ex: Example) -> str:
        return f"{ex.premise} </s> {ex.question}"

    def match_key(self, ex: Example) -> str:
        return normalize_text(ex.premise + " " + ex.question)

    def id_parts(self, row: dict) -> tuple[str, ...]:
        return row["premise"], row["question"]

    def _answer_from(self, rest: str, example: Optional[Example], mode: str = "strict") -> tuple[Optional[str], Optional[str]]:
        m = re.match(r"([A-Za-z]+)", rest)
        word = m.group(1).lower() if m else ""
        if word not in LABELS:
            return None, f"not a label: {rest[:30]!r}"
        return word, None

    def wrong_label(self, example: Example, rng) -> str:
        """Another of the three labels."""
        return rng.choice([x for x in LABELS if x != example.label.strip().lower()])

    def is_correct(self, prediction: Optional[str], gold: str) -> bool:
        return prediction is not None and prediction.strip().lower() == gold.strip().lower()
