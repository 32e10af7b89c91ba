"""Turning raw teacher text into teacher-record entries (``teacher.schema.json``), shared by backends."""
from __future__ import annotations

from typing import Optional

from ..core.records import Example
from ..tasks import Task, parse_self_evaluation


def make_evaluation(text: str) -> dict:
    explanation, verdict = parse_self_evaluation(text or "")
    return {"text": text or "", "explanation": explanation, "verdict": verdict,
            "status": "ok" if verdict else "no_verdict"}


def make_cot(task: Task, text: str, example: Example, source: str, mode: str = "strict",
             evaluations: Optional[list[str]] = None) -> dict:
    p = task.parse_answer(text or "", example, mode=mode)
    return {
        "text": text or "",
        "rationale": p.rationale,
        "answer": p.answer,
        "status": p.status,
        "reason": p.reason,
        "correct": task.is_correct(p.answer, example.label) if p.ok else None,
        "source": source,
        "evaluations": [make_evaluation(e) for e in (evaluations or [])],
    }


def empty_record(example: Example) -> dict:
    return {"id": example.id, "split": example.split, "label": example.label, "cots": []}
