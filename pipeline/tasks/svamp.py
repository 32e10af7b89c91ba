"""SVAMP: math word problems; the answer is an arithmetic equation, scored by its numeric value."""
from __future__ import annotations

import re
from typing import Optional

from .arith import safe_eval, same_value
from ..core.records import Example
from .base import Parsed, Task

_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")
_NUM = r"(-?\d+(?:\.\d+)?)"
_STEP = re.compile(_NUM + r"\s*([-+*/x×÷])\s*" + _NUM + r"\s*=\s*" + _NUM)


class SVAMP(Task):
    name = "svamp"
    stop_markers = ("Q:",)
    answer_phrase = "The answer is"

    def from_hub_row(self, row: dict) -> dict:  # ChilleD/SVAMP columns
        body, q = row.get("Body", ""), row.get("Question", "")
        question = row.get("question_concat") or f"{body.strip()} {q.strip()}".strip()
        label = str(row.get("Equation") or row["Answer"]).strip()
        return {"id": str(row["ID"]) if row.get("ID") else None, "question": question, "label": label}

    def from_local_row(self, row: dict, fmt: str) -> dict:
        if fmt == "dss":
            question, label = row["input"], str(row["label"])
        elif fmt == "mcckd":
            question, label = row["instruction"].strip(), str(row["label"])
        else:
            raise ValueError(f"unknown format {fmt}")
        if not question.strip():
            raise ValueError("empty question")
        return {"id": None, "question": question, "label": label}  # DSS and MCC-KD rows have no id

    def _without_answer_sentence(self, body: str, mode: str) -> Optional[Parsed]:
        if mode == "lenient":  # e.g. MCC-KD CoTs, sampled without an answer template: the last number
            nums = _NUMBER.findall(body)
            if nums:
                return Parsed(body.strip(), nums[-1].replace(",", ""), "ok")
        return None

    def _answer_from(self, rest: str, example: Optional[Example], mode: str = "strict") -> tuple[Optional[str], Optional[str]]:
        line = rest.split("\n", 1)[0]
        paren = re.search(r"\(.*\)", line)
        if paren:
            answer = paren.group(0).strip()
        else:
            m = re.match(r"\s*:?\s*([-\d.,\s+*/x×÷()]+?)\s*\.?\s*$", line.replace("$", ""))
            answer = m.group(1).strip() if m else line.strip().rstrip(".")
        if safe_eval(answer) is None:
            return None, f"not an arithmetic expression: {answer[:60]!r}"
        return answer, None

    def wrong_label(self, example: Example, rng) -> str:
        """A nearby wrong number: gold +- 1..max(3, 20% of gold), kept >= 0 for a non-negative gold."""
        v = safe_eval(example.label) or 0.0
        spread = max(3, int(abs(v) * 0.2))
        while True:
            w = v + rng.choice([-1, 1]) * rng.randint(1, spread)
            if not (v >= 0 > w) and not same_value(w, v):
                return f"{round(w, 6):g}"

    def answer_key(self, answer: str) -> str:
        v = safe_eval(answer)
        return f"{round(v, 6):g}" if v is not None else super().answer_key(answer)

    def error_kind(self, rationale: str) -> Optional[str]:
        """``arithmetic``: a step ``a op b = c`` whose result is false; ``reasoning``: every step's
        arithmetic is right (a wrong operand, operator or step), or no step to check."""
        for a, op, b, c in _STEP.findall(rationale or ""):
            if not same_value(safe_eval(f"{a} {'*' if op == 'x' else op} {b}"), safe_eval(c)):
                return "arithmetic"
        return "reasoning"

    def is_correct(self, prediction: Optional[str], gold: str) -> bool:
        if prediction is None:
            return False
        return same_value(safe_eval(prediction), safe_eval(gold))
