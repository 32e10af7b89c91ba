"""SVAMP: math word problems; the answer is an arithmetic equation, scored by its numeric value."""
from __future__ import annotations

import re
from typing import Optional

from .arith import safe_eval, same_value
from ..core.records import Example
from .base import Parsed, Task

_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")


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

    def is_correct(self, prediction: Optional[str], gold: str) -> bool:
        if prediction is None:
            return False
        return same_value(safe_eval(prediction), safe_eval(gold))
