"""CommonsenseQA: five answer choices; the answer is the choice text, scored by exact match."""
from __future__ import annotations

import re
from typing import Optional

from .base import Parsed, Task, cut_run_on, text_id

LETTERS = "abcde"
_ANSWER = {"strict": re.compile(r"So the answer is"), "lenient": re.compile(r"so the answer is", re.IGNORECASE)}


class CQA(Task):
    name = "cqa"
    stop_markers = ("Q:",)

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
        return {"id": str(row.get("id") or text_id(row["question"])), "question": row["question"],
                "choices": choices, "label": row["answer"]}

    def model_input(self, ex: dict) -> str:
        lines = [ex["question"], "Answer Choices:"]
        lines += [f"({LETTERS[i]}) {c}" for i, c in enumerate(ex["choices"])]
        return "\n".join(lines)

    def parse_answer(self, text: str, example: Optional[dict] = None, mode: str = "strict") -> Parsed:
        if not text or not text.strip():
            return Parsed(None, None, "empty", "empty output")
        body = cut_run_on(text, self.stop_markers)
        hit = _ANSWER[mode].search(body)
        if hit is None:
            return Parsed(None, None, "no_answer", "no 'So the answer is' sentence")
        rationale = body[: hit.start()].rstrip()
        rest = body[hit.end():].split("\n", 1)[0].strip()
        m = re.match(r"\(?([a-eA-E])\)\s*(.*)$", rest)
        if not m:
            return Parsed(rationale, None, "bad_answer", f"no '(letter) choice' after the answer phrase: {rest[:60]!r}")
        answer = m.group(2).strip()
        answer = answer[:-1] if answer.endswith(".") else answer
        if not answer and example and example.get("choices"):
            answer = example["choices"][LETTERS.index(m.group(1).lower())]
        if not answer:
            return Parsed(rationale, None, "bad_answer", "empty choice text")
        return Parsed(rationale, answer, "ok")

    def is_correct(self, prediction: Optional[str], gold: str) -> bool:
        return prediction is not None and prediction.strip() == gold.strip()
