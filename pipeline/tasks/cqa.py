"""CommonsenseQA: five answer choices; the answer is the choice text, scored by exact match."""
from __future__ import annotations

import re
from typing import Optional

from ..core.records import Example
from .base import Task, normalize_text

LETTERS = "abcde"  # the choices' letters, as the student's input and the teacher's prompts show them


class CQA(Task):
    name = "cqa"
    stop_markers = ("Q:",)
    # lenient: "The answer is B" as well (the multi-teacher-eitnlp CoTs), and a bare letter after it
    lenient_pattern = r"(?:so )?the answer is:?"

    def from_hub_row(self, row: dict) -> dict:  # tau/commonsense_qa
        texts = list(row["choices"]["text"])
        labels = [l.upper() for l in row["choices"]["label"]]
        key = (row.get("answerKey") or "").upper()
        if key not in labels:
            raise ValueError(f"row {row.get('id')}: answerKey {key!r} not among choices")
        return {"id": str(row["id"]), "question": row["question"], "choices": texts, "label": texts[labels.index(key)]}

    def from_local_row(self, row: dict, fmt: str) -> dict:
        if fmt != "dss":
            raise ValueError(f"unknown format {fmt}")
        choices = list(row["choices"])
        if len(choices) != 5:
            raise ValueError(f"expected 5 choices, got {len(choices)}")
        return {"id": str(row["id"]) if row.get("id") else None, "question": row["question"],
                "choices": choices, "label": row["answer"]}

    def model_input(self, ex: Example) -> str:
        return "\n".join([ex.question, "Answer Choices:", self.format_choices(ex.choices)])

    def format_choices(self, choices: list[str]) -> str:
        return "\n".join(f"({LETTERS[i]}) {c}" for i, c in enumerate(choices))

    def recorded_key(self, question: str) -> str:
        """A recorded file's question may carry its choices (``Q: ... Answer choices: A: ..., B: ...``)."""
        q = re.sub(r"^\s*Q:\s*", "", question)
        return normalize_text(re.split(r"\s+Answer choices:", q, maxsplit=1, flags=re.IGNORECASE)[0])

    def _answer_from(self, rest: str, example: Optional[Example], mode: str = "strict") -> tuple[Optional[str], Optional[str]]:
        line = rest.split("\n", 1)[0].strip()
        m = re.match(r"\(?([a-eA-E])\)\s*(.*)$", line)
        if not m and mode == "lenient":  # a bare letter: "The answer is B" / "B."
            m = re.match(r"\(?([a-eA-E])\)?(?:[.:]?\s*$)()", line)
        if not m:
            return None, f"no '(letter) choice' after the answer phrase: {line[:60]!r}"
        answer = m.group(2).strip()
        answer = answer[:-1] if answer.endswith(".") else answer
        if not answer and example and example.choices:
            answer = example.choices[LETTERS.index(m.group(1).lower())]
        if not answer:
            return None, "empty choice text"
        return answer, None

    def wrong_label(self, example: Example, rng) -> str:
        """Another of the question's choices."""
        return rng.choice([c for c in example.choices or [] if c.strip() != example.label.strip()])

    def is_correct(self, prediction: Optional[str], gold: str) -> bool:
        return prediction is not None and prediction.strip() == gold.strip()
