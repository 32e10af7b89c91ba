"""The task protocol: the only place where datasets differ.

A task turns one source row into a canonical example (its row hooks, called by ``pipeline.sources``,
which knows where rows come from), formats the student's input, parses an answer out of teacher
text, and scores a prediction against gold.
"""
from __future__ import annotations

import hashlib
import re
from abc import ABC, abstractmethod
from dataclasses import dataclass
from functools import lru_cache
from typing import Optional

from ..core.records import Example



@dataclass(frozen=True)
class Parsed:
    rationale: Optional[str]
    answer: Optional[str]
    status: str  # ok | no_answer | bad_answer | empty
    reason: Optional[str] = None

    @property
    def ok(self) -> bool:
        return self.status == "ok"


def text_id(*parts: str) -> str:
    return hashlib.sha1("\x1f".join(parts).encode("utf-8")).hexdigest()[:16]


def normalize_text(s: str) -> str:
    """For matching questions across files: case- and whitespace-insensitive."""
    return " ".join(s.lower().split())


def cut_run_on(text: str, markers: tuple[str, ...]) -> str:
    """Cut a few-shot completion where the model starts a new exemplar (``Q:``, ``Premise:``)."""
    cut = len(text)
    for m in markers:
        hit = re.search(r"(?:^|\n)\s*" + re.escape(m), text)
        if hit:
            cut = min(cut, hit.start())
    return text[:cut]


_VERDICT = re.compile(
    r"evaluation result\s*:?\s*(?:the given answer is\s*)?\**\s*(correct|wrong|incorrect|uncertain)\b",
    re.IGNORECASE,
)


def parse_self_evaluation(text: str) -> tuple[Optional[str], Optional[str]]:
    """(explanation, verdict) of a self-evaluation ending ``Evaluation result: the given answer is
    correct|wrong|uncertain.``; the explanation is the text before the verdict line. Returns
    (None, None) when there is no verdict."""
    hits = list(_VERDICT.finditer(text))
    if not hits:
        return None, None
    hit = hits[-1]
    verdict = hit.group(1).lower()
    if verdict == "incorrect":
        verdict = "wrong"
    line_start = text.rfind("\n", 0, hit.start()) + 1
    explanation = text[:line_start].strip() or text[: hit.start()].strip()
    return explanation, verdict


class Task(ABC):
    name: str
    #: where a run-on few-shot continuation starts
    stop_markers: tuple[str, ...] = ("Q:",)

    # ---------------------------------------------------------------- rows of a source (pipeline.sources calls these)
    @abstractmethod
    def from_hub_row(self, row: dict) -> dict:
        """One Hub row -> an example; ``id`` None when the row has no id of its own."""

    @abstractmethod
    def from_local_row(self, row: dict, fmt: str) -> dict:
        """One row of a local file -> an example; ``id`` None when the row has no id of its own."""

    def id_parts(self, row: dict) -> tuple[str, ...]:
        """The text of a source row (a ``from_*_row`` result) that its id is a hash of, when the source
        gives it none."""
        return (row["question"],)

    # ---------------------------------------------------------------- protocol (typed examples)
    def model_input(self, ex: Example) -> str:
        return ex.question

    def match_key(self, ex: Example) -> str:
        """Key that recorded teacher files are matched on when matched by text."""
        return normalize_text(ex.question)

    def recorded_key(self, question: str) -> str:
        """The same key, from the question text of a recorded teacher file (``match_key``'s counterpart)."""
        return normalize_text(question)

    def format_choices(self, choices: list[str]) -> str:
        """Answer choices one per line, as the student's input and the teacher's prompts show them."""
        raise NotImplementedError(f"{self.name} examples have no answer choices")

    # ---------------------------------------------------------------- parsing teacher text
    #: the answer sentence, as the prompt templates (and the reference code) write it
    answer_phrase: str = "So the answer is"
    #: the regular expression of the answer sentence (default: ``answer_phrase`` literally)
    answer_pattern: Optional[str] = None
    #: the same in lenient mode, where it differs (default: the strict one, case-insensitive)
    lenient_pattern: Optional[str] = None

    #: parse modes: "strict" = the answer sentence exactly as the prompt templates (and the reference
    #: code) write it, capitalised; "lenient" = case-insensitive, and SVAMP falls back to the last
    #: number for CoTs sampled without an answer template.
    def parse_answer(self, text: str, example: Optional[Example] = None, mode: str = "strict") -> Parsed:
        """Rationale and answer of a teacher completion: cut where a run-on new exemplar starts, find
        the first answer sentence (``mode``); the rationale is the text before it, and the task reads
        the answer from the text after it (``_answer_from``)."""
        if not text or not text.strip():
            return Parsed(None, None, "empty", "empty output")
        body = cut_run_on(text, self.stop_markers)
        strict = self.answer_pattern or re.escape(self.answer_phrase)
        hit = _sentence_re(self.lenient_pattern or strict if mode == "lenient" else strict, mode).search(body)
        if hit is None:
            return (self._without_answer_sentence(body, mode)
                    or Parsed(None, None, "no_answer", f"no '{self.answer_phrase}' sentence"))
        rationale = body[: hit.start()].rstrip()
        answer, problem = self._answer_from(body[hit.end():], example, mode)
        if answer is None:
            return Parsed(rationale, None, "bad_answer", problem)
        return Parsed(rationale, answer, "ok")

    @abstractmethod
    def _answer_from(self, rest: str, example: Optional[Example], mode: str = "strict") -> tuple[Optional[str], Optional[str]]:
        """The answer in ``rest``, the text after the answer sentence: (answer, None), or (None, why not)."""

    def _without_answer_sentence(self, body: str, mode: str) -> Optional[Parsed]:
        """A parse of a completion without the answer sentence, or None (``no_answer``)."""
        return None

    @abstractmethod
    def is_correct(self, prediction: Optional[str], gold: str) -> bool: ...

    def wrong_label(self, example: Example, rng) -> str:
        """A wrong answer of the same kind as ``example``'s gold one, drawn with ``rng`` (``random.Random``):
        what ``label_noise`` puts in place of a training answer."""
        raise NotImplementedError(f"{self.name}: no wrong answers to draw (label_noise)")

    # ---------------------------------------------------------------- the student's sampled CoTs (infer stage)
    def answer_key(self, answer: str) -> str:
        """What votes are counted on: answers with the same key are the same answer."""
        return normalize_text(answer)

    def cot_text(self, rationale: str, answer: str) -> str:
        """A rationale and an answer as one CoT, in the answer sentence of the teacher's CoTs."""
        return f"{rationale.strip()} {self.answer_phrase} {answer.strip()}.".strip()

    def error_kind(self, rationale: str) -> Optional[str]:
        """The kind of error of a wrong CoT, for tasks whose rationales have checkable steps (None: no kinds)."""
        return None


@lru_cache(maxsize=None)
def _sentence_re(pattern: str, mode: str) -> re.Pattern:
    return re.compile(pattern, {"strict": 0, "lenient": re.IGNORECASE}[mode])


def duplicate_questions(task: Task, splits: dict[str, list[Example]]) -> int:
    """Rows whose input (``model_input``, case- and whitespace-insensitive) repeats an earlier row's,
    across all splits: each is kept as a row of its own, with an id of its own."""
    seen: set[str] = set()
    n = 0
    for rows in splits.values():
        for r in rows:
            key = normalize_text(task.model_input(r))
            n += key in seen
            seen.add(key)
    return n


def se_input(mode: str, question_input: str, cot_text: str) -> str:
    """The stage-1 (self-evaluation) input of one CoT, as ``assemble.se_input`` sets it: the CoT text
    alone (``cot``), or the question's model input and the CoT (``question_cot``). Assemble writes it
    for the teacher's CoTs, and infer for the student's own sampled ones."""
    if mode == "question_cot":
        return f"Question: {question_input}\nAnswer: {cot_text.strip()}"
    return cot_text.strip()
