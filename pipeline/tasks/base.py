"""The task protocol: the only place where datasets differ.

A task loads a dataset (Hub id or local files) into canonical examples, formats the student's
input, parses an answer out of teacher text, and scores a prediction against gold.
"""
from __future__ import annotations

import hashlib
import re
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Optional

from ..errors import PipelineError
from ..spec import HubSource, LocalSource


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

    # ---------------------------------------------------------------- loading
    def load(self, source: HubSource | LocalSource) -> dict[str, list[dict]]:
        """canonical split -> list of example dicts (``example.schema.json`` minus split/index)."""
        if isinstance(source, HubSource):
            return {split: [self.from_hub_row(r) for r in rows] for split, rows in _load_hub(source).items()}
        from ..paths import resolve_data_path

        out = {}
        for split, f in source.files.items():
            path = resolve_data_path(f)
            rows = read_source_file(path)
            out[split] = []
            for i, (lineno, r) in enumerate(rows):
                try:
                    out[split].append(self.from_local_row(r, source.format))
                except (KeyError, TypeError, ValueError) as e:
                    raise PipelineError(f"{path}:{lineno}: not a {source.format}-format {self.name} row ({type(e).__name__}: {e})") from None
        return out

    @abstractmethod
    def from_hub_row(self, row: dict) -> dict: ...

    @abstractmethod
    def from_local_row(self, row: dict, fmt: str) -> dict: ...

    # ---------------------------------------------------------------- protocol
    def model_input(self, ex: dict) -> str:
        return ex["question"]

    def match_key(self, ex: dict) -> str:
        """Key that recorded teacher files are matched on when matched by text."""
        return normalize_text(ex["question"])

    #: parse modes: "strict" = the answer sentence exactly as the prompt templates (and the reference
    #: code) write it, capitalised; "lenient" = case-insensitive, and SVAMP falls back to the last
    #: number for CoTs sampled without an answer template.
    @abstractmethod
    def parse_answer(self, text: str, example: Optional[dict] = None, mode: str = "strict") -> Parsed: ...

    @abstractmethod
    def is_correct(self, prediction: Optional[str], gold: str) -> bool: ...


def _load_hub(source: HubSource) -> dict[str, list[dict]]:
    import datasets

    out = {}
    for split, hub_split in source.splits.items():
        try:
            ds = datasets.load_dataset(source.id, source.config, split=hub_split)
        except Exception as e:  # offline, unknown id, unknown split...
            raise PipelineError(f"cannot load Hub dataset {source.id!r} split {hub_split!r}: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}") from None
        out[split] = list(ds)
    return out


def read_source_file(path) -> list[tuple[int, Any]]:
    """Rows of a local data file with their 1-based line numbers: JSON lines, or one JSON array."""
    import json

    if not path.exists():
        raise PipelineError(f"{path}: data file not found")
    text = path.read_text(encoding="utf-8")
    stripped = text.lstrip()
    if stripped.startswith("["):
        try:
            arr = json.loads(text)
        except json.JSONDecodeError as e:
            raise PipelineError(f"{path}:{e.lineno}: corrupt JSON ({e.msg})") from None
        return [(i + 1, r) for i, r in enumerate(arr)]
    rows = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            rows.append((lineno, json.loads(line)))
        except json.JSONDecodeError as e:
            raise PipelineError(f"{path}:{lineno}: corrupt JSON line ({e.msg})") from None
    return rows
