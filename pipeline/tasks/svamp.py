"""SVAMP: math word problems; the answer is an arithmetic equation, scored by its numeric value."""
from __future__ import annotations

import re
from typing import Optional

from .arith import safe_eval, same_value
from .base import Parsed, Task, cut_run_on, text_id

_ANSWER = {"strict": re.compile(r"The answer is"), "lenient": re.compile(r"the answer is", re.IGNORECASE)}
_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")


class SVAMP(Task):
    name = "svamp"
    stop_markers = ("Q:",)

    def from_hub_row(self, row: dict) -> dict:  # ChilleD/SVAMP columns
        body, q = row.get("Body", ""), row.get("Question", "")
        question = row.get("question_concat") or f"{body.strip()} {q.strip()}".strip()
        label = str(row.get("Equation") or row["Answer"]).strip()
        return {"id": str(row.get("ID") or text_id(question)), "question": question, "label": label}

    def from_local_row(self, row: dict, fmt: str) -> dict:
        if fmt == "dss":
            question, label = row["input"], str(row["label"])
        elif fmt == "mcckd":
            question, label = row["instruction"].strip(), str(row["label"])
        else:
            raise ValueError(f"unknown format {fmt}")
        if not question.strip():
            raise ValueError("empty question")
        return {"id": text_id(question), "question": question, "label": label}

    def parse_answer(self, text: str, example: Optional[dict] = None, mode: str = "strict") -> Parsed:
        if not text or not text.strip():
            return Parsed(None, None, "empty", "empty output")
        body = cut_run_on(text, self.stop_markers)
        hit = _ANSWER[mode].search(body)
        if hit is None:
            if mode == "lenient":  # e.g. MCC-KD CoTs, sampled without an answer template
                nums = _NUMBER.findall(body)
                if nums:
                    return Parsed(body.strip(), nums[-1].replace(",", ""), "ok")
            return Parsed(None, None, "no_answer", "no 'The answer is' sentence")
        rationale = body[: hit.start()].rstrip()
        rest = body[hit.end():].split("\n", 1)[0]
        paren = re.search(r"\(.*\)", rest)
        if paren:
            answer = paren.group(0).strip()
        else:
            m = re.match(r"\s*:?\s*([-\d.,\s+*/x×÷()]+?)\s*\.?\s*$", rest.replace("$", ""))
            answer = m.group(1).strip() if m else rest.strip().rstrip(".")
        if safe_eval(answer) is None:
            return Parsed(rationale, None, "bad_answer", f"not an arithmetic expression: {answer[:60]!r}")
        return Parsed(rationale, answer, "ok")

    def is_correct(self, prediction: Optional[str], gold: str) -> bool:
        if prediction is None:
            return False
        return same_value(safe_eval(prediction), safe_eval(gold))
