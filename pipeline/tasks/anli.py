"""ANLI: natural language inference; input = premise </s> hypothesis, answer = label name."""
from __future__ import annotations

import re
from typing import Optional

from .base import Parsed, Task, cut_run_on, normalize_text, text_id

LABELS = ("entailment", "neutral", "contradiction")
_ANSWER = {"strict": re.compile(r"So the answer is\s*"), "lenient": re.compile(r"so the answer is\s*", re.IGNORECASE)}


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

    def from_hub_row(self, row: dict) -> dict:  # facebook/anli
        return {"id": str(row["uid"]), "question": row["hypothesis"], "premise": row["premise"],
                "label": _label_name(row["label"])}

    def from_local_row(self, row: dict, fmt: str) -> dict:
        if fmt != "dss":
            raise ValueError(f"unknown format {fmt}")
        return {"id": str(row.get("uid") or text_id(row["premise"], row["hypothesis"])),
                "question": row["hypothesis"], "premise": row["premise"], "label": _label_name(row["label"])}

    def model_input(self, ex: dict) -> str:
        return f"{ex['premise']} </s> {ex['question']}"

    def match_key(self, ex: dict) -> str:
        return normalize_text(ex["premise"] + " " + ex["question"])

    def parse_answer(self, text: str, example: Optional[dict] = None, mode: str = "strict") -> Parsed:
        if not text or not text.strip():
            return Parsed(None, None, "empty", "empty output")
        body = cut_run_on(text, self.stop_markers)
        hit = _ANSWER[mode].search(body)
        if hit is None:
            return Parsed(None, None, "no_answer", "no 'So the answer is' sentence")
        rationale = body[: hit.start()].rstrip()
        m = re.match(r"([A-Za-z]+)", body[hit.end():])
        word = m.group(1).lower() if m else ""
        if word not in LABELS:
            return Parsed(rationale, None, "bad_answer", f"not a label: {body[hit.end():hit.end() + 30]!r}")
        return Parsed(rationale, word, "ok")

    def is_correct(self, prediction: Optional[str], gold: str) -> bool:
        return prediction is not None and prediction.strip().lower() == gold.strip().lower()
