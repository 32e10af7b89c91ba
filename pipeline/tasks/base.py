"""The task protocol: the only place where datasets differ.

A task loads a dataset (Hub id or local files) into canonical examples, formats the student's
input, parses an answer out of teacher text, and scores a prediction against gold.
"""
from __future__ import annotations

import hashlib
import re
from abc import ABC, abstractmethod
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Optional

from ..artifacts import _jsonl_rows, read_json
from ..errors import PipelineError
from ..paths import resolve_data_path
from ..spec import SPLITS, HubSource, LocalSource


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
        return self.load_source(source).splits

    def load_source(self, source: HubSource | LocalSource) -> Loaded:
        """The source's examples by canonical split, re-split by its manifest when it has one."""
        raw = self._load_splits(source)
        return apply_manifest(raw, source.manifest) if source.manifest else Loaded(raw)

    def _load_splits(self, source: HubSource | LocalSource) -> dict[str, list[dict]]:
        """canonical split -> examples, as the source lists its splits (no manifest), each with a
        unique id (``_assign_ids``)."""
        out: dict[str, list[dict]] = {}
        where: dict[str, list[str]] = {}  # split -> each row's place in the source, for error messages
        if isinstance(source, HubSource):
            for split, rows in _load_hub(source).items():
                out[split], where[split] = [], []
                for i, r in enumerate(rows):
                    where[split].append(f"{source.id} split {source.splits[split]!r} row {i}")
                    try:
                        out[split].append(self.from_hub_row(r))
                    except (KeyError, TypeError, ValueError) as e:
                        raise PipelineError(f"{where[split][-1]}: not a {self.name} Hub row ({type(e).__name__}: {e})") from None
        else:
            for split, f in source.files.items():
                path = resolve_data_path(f)
                out[split], where[split] = [], []
                for lineno, r in read_source_file(path):
                    where[split].append(f"{path}:{lineno}")
                    try:
                        out[split].append(self.from_local_row(r, source.format))
                    except (KeyError, TypeError, ValueError) as e:
                        raise PipelineError(f"{where[split][-1]}: not a {source.format}-format {self.name} row ({type(e).__name__}: {e})") from None
        self._assign_ids(out, where)
        return out

    def _assign_ids(self, splits: dict[str, list[dict]], where: dict[str, list[str]]) -> None:
        """Give every row a unique ``id``, in place. A row without an id of its own (``id`` None) gets
        a hash of its text (``id_parts``); a repeat of the same text (a legitimate separate row, e.g.
        in DSS's files) gets that hash plus ``-2``, ``-3``... in source order, so the first copy keeps
        the id it always had. The same id given by the source to two rows is an error naming both."""
        seen: dict[str, str] = {}  # id -> where
        for split, rows in splits.items():
            for r, place in zip(rows, where[split]):
                if r["id"] is not None:
                    if r["id"] in seen:
                        raise PipelineError(f"{place}: id {r['id']!r} is also the id of {seen[r['id']]}: "
                                            "every row of the source needs its own id")
                    seen[r["id"]] = place
        for split, rows in splits.items():
            for r, place in zip(rows, where[split]):
                if r["id"] is None:
                    base = text_id(*self.id_parts(r))
                    rid, k = base, 1
                    while rid in seen:
                        k += 1
                        rid = f"{base}-{k}"
                    r["id"] = rid
                    seen[rid] = place

    @abstractmethod
    def from_hub_row(self, row: dict) -> dict:
        """One Hub row -> an example; ``id`` None when the row has no id of its own."""

    @abstractmethod
    def from_local_row(self, row: dict, fmt: str) -> dict:
        """One row of a local file -> an example; ``id`` None when the row has no id of its own."""

    def id_parts(self, ex: dict) -> tuple[str, ...]:
        """The text an example's id is a hash of, when the source gives it none."""
        return (ex["question"],)

    # ---------------------------------------------------------------- protocol
    def model_input(self, ex: dict) -> str:
        return ex["question"]

    def match_key(self, ex: dict) -> str:
        """Key that recorded teacher files are matched on when matched by text."""
        return normalize_text(ex["question"])

    def format_choices(self, choices: list[str]) -> str:
        """Answer choices one per line, as the student's input and the teacher's prompts show them."""
        raise NotImplementedError(f"{self.name} examples have no answer choices")

    # ---------------------------------------------------------------- parsing teacher text
    #: the answer sentence, as the prompt templates (and the reference code) write it
    answer_phrase: str = "So the answer is"
    #: the regular expression of the answer sentence (default: ``answer_phrase`` literally)
    answer_pattern: Optional[str] = None

    #: parse modes: "strict" = the answer sentence exactly as the prompt templates (and the reference
    #: code) write it, capitalised; "lenient" = case-insensitive, and SVAMP falls back to the last
    #: number for CoTs sampled without an answer template.
    def parse_answer(self, text: str, example: Optional[dict] = None, mode: str = "strict") -> Parsed:
        """Rationale and answer of a teacher completion: cut where a run-on new exemplar starts, find
        the first answer sentence (``mode``); the rationale is the text before it, and the task reads
        the answer from the text after it (``_answer_from``)."""
        if not text or not text.strip():
            return Parsed(None, None, "empty", "empty output")
        body = cut_run_on(text, self.stop_markers)
        hit = _sentence_re(self.answer_pattern or re.escape(self.answer_phrase), mode).search(body)
        if hit is None:
            return (self._without_answer_sentence(body, mode)
                    or Parsed(None, None, "no_answer", f"no '{self.answer_phrase}' sentence"))
        rationale = body[: hit.start()].rstrip()
        answer, problem = self._answer_from(body[hit.end():], example)
        if answer is None:
            return Parsed(rationale, None, "bad_answer", problem)
        return Parsed(rationale, answer, "ok")

    @abstractmethod
    def _answer_from(self, rest: str, example: Optional[dict]) -> tuple[Optional[str], Optional[str]]:
        """The answer in ``rest``, the text after the answer sentence: (answer, None), or (None, why not)."""

    def _without_answer_sentence(self, body: str, mode: str) -> Optional[Parsed]:
        """A parse of a completion without the answer sentence, or None (``no_answer``)."""
        return None

    @abstractmethod
    def is_correct(self, prediction: Optional[str], gold: str) -> bool: ...


@lru_cache(maxsize=None)
def _sentence_re(pattern: str, mode: str) -> re.Pattern:
    return re.compile(pattern, {"strict": 0, "lenient": re.IGNORECASE}[mode])


def duplicate_questions(task: Task, splits: dict[str, list[dict]]) -> int:
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


def hub_path(dataset_id: str) -> str:
    """A relative ``id`` that names an existing local folder (e.g. ``local_hub/ChilleD/SVAMP``) ->
    that folder, resolved like every data path; a Hub id passes through unchanged."""
    p = resolve_data_path(dataset_id)
    return str(p) if p.is_dir() else dataset_id


def _load_hub(source: HubSource) -> dict[str, list[dict]]:
    import datasets

    name = hub_path(source.id)
    out = {}
    for split, hub_split in source.splits.items():
        try:
            ds = datasets.load_dataset(name, source.config, split=hub_split)
        except Exception as e:  # offline, unknown id, unknown split...
            raise PipelineError(f"cannot load Hub dataset {source.id!r} split {hub_split!r}: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}") from None
        out[split] = list(ds)
    return out


# --------------------------------------------------------------------------- split manifests
@dataclass(frozen=True)
class Loaded:
    """A source's examples by canonical split; with a split manifest, also the rows per split as
    loaded (before it) and how many rows it dropped."""

    splits: dict[str, list[dict]]
    loaded_rows: Optional[dict[str, int]] = None
    manifest_dropped: int = 0


def read_manifest(manifest: str) -> dict[str, list[str]]:
    """The ``splits`` of a split manifest (canonical split -> example ids), checked: one line
    naming the file (as written in params) for a missing or corrupt file, or an id listed twice."""
    import json

    path = resolve_data_path(manifest)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PipelineError(f"{manifest}: split manifest not found") from None
    except (OSError, UnicodeDecodeError) as e:
        raise PipelineError(f"{manifest}: cannot read split manifest ({type(e).__name__})") from None
    except json.JSONDecodeError as e:
        raise PipelineError(f"{manifest}:{e.lineno}: corrupt split manifest ({e.msg})") from None
    splits = doc.get("splits") if isinstance(doc, dict) else None
    if not isinstance(splits, dict) or not splits:
        raise PipelineError(f"{manifest}: not a split manifest (expected {{\"splits\": {{split: [ids]}}}})")
    seen: dict[str, str] = {}
    for split, ids in splits.items():
        if split not in SPLITS:
            raise PipelineError(f"{manifest}: unknown split {split!r} (expected {', '.join(SPLITS)})")
        if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
            raise PipelineError(f"{manifest}: splits.{split}: expected a list of id strings")
        for i in ids:
            if i in seen:
                where = f"listed twice in {split}" if seen[i] == split else f"in both {seen[i]} and {split}"
                raise PipelineError(f"{manifest}: ID {i!r} is {where}")
            seen[i] = split
    return splits


def apply_manifest(raw: dict[str, list[dict]], manifest: str) -> Loaded:
    """Pool the rows of every loaded split and re-split them by example ``id`` as ``manifest``
    says, each split in the manifest's order. Rows whose id is in no split are dropped and counted;
    an id of the manifest that no row has, or that several rows have, is an error."""
    splits = read_manifest(manifest)
    wanted = {i for ids in splits.values() for i in ids}
    by_id: dict[str, dict] = {}
    dropped = 0
    for rows in raw.values():
        for r in rows:
            if r["id"] not in wanted:
                dropped += 1
            elif r["id"] in by_id:
                raise PipelineError(f"{manifest}: ID {r['id']!r} matches several rows of the dataset")
            else:
                by_id[r["id"]] = r
    for split, ids in splits.items():
        for i in ids:
            if i not in by_id:
                raise PipelineError(f"{manifest}: ID {i!r} ({split}) is not in the dataset "
                                    f"(loaded splits: {', '.join(raw)}; {sum(map(len, raw.values()))} rows)")
    return Loaded({split: [by_id[i] for i in ids] for split, ids in splits.items()},
                  {split: len(rows) for split, rows in raw.items()}, dropped)


def read_source_file(path: Path) -> list[tuple[int, Any]]:
    """Rows of a local data file with their 1-based line numbers (for one JSON array: positions),
    read by the artifact readers: JSON lines, or one JSON array."""
    if not path.exists():
        raise PipelineError(f"{path}: data file not found")
    with open(path, encoding="utf-8") as f:
        is_array = f.read(4096).lstrip().startswith("[")
    if is_array:
        return list(enumerate(read_json(path), 1))
    return list(_jsonl_rows(path, None))
