"""Where a dataset's rows come from: a Hub dataset (``datasets.load_dataset``), local files or the
seeded synthetic generator (``synthetic.py``: SVAMP Hub rows), re-split by a split manifest when the
source has one. The rows become canonical examples through the task's
row hooks (``from_hub_row``, ``from_local_row``, ``id_parts``); tasks know nothing of sources.
"""
from __future__ import annotations

import random
from dataclasses import dataclass

from ..core.artifacts import parse_model
from ..core.errors import PipelineError
from ..core.paths import resolve_data_path
from ..core.records import Example
from ..core.spec import SPLITS, DatasetSpec, HubSource, LocalSource, SyntheticSource
from ..tasks import Task
from ..tasks.base import duplicate_questions, text_id
from .hub import load_hub
from .local import read_source_file
from .manifest import Loaded, apply_manifest
from .synthetic import generate

__all__ = ["Canonical", "Loaded", "assign_ids", "canonical", "load", "load_source", "load_splits"]

FIELDS = ("id", "question", "premise", "choices", "label")  # what a task's source row gives an Example


@dataclass
class Canonical:
    """A dataset's canonical examples per split (what ``prepare`` writes), and how they were made."""

    splits: dict[str, list[Example]]
    loaded: Loaded
    duplicates: int  # repeated questions among the source rows (after the manifest, before the carve)
    carved: bool  # the validation split was carved from train


def canonical(task: Task, spec: DatasetSpec, dataset: str) -> Canonical:
    """The dataset's examples per split: the source (re-split by its manifest), a seeded validation
    split carved by question from train when the source has none, and the split limits."""
    loaded = load_source(task, spec.source)
    splits: dict[str, list[Example]] = {s: [] for s in SPLITS}
    for origin, rows in loaded.splits.items():
        for i, r in enumerate(rows):
            row = {k: r[k] for k in FIELDS if k in r}
            splits[origin].append(parse_model(Example, {**row, "split": origin, "origin": origin, "index": i},
                                              f"{dataset}: source split {origin!r}, row {i}"))
    duplicates = duplicate_questions(task, splits)
    carved = bool(splits["train"]) and not splits["valid"]
    if carved:
        # by question: the copies of a repeated question stay on one side (without repeats, one
        # group per row, in row order: the same split as shuffling the rows)
        train = splits["train"]
        groups: dict[str, list[int]] = {}
        for i, ex in enumerate(train):
            groups.setdefault(task.match_key(ex), []).append(i)
        order = list(groups.values())
        random.Random(spec.valid.seed).shuffle(order)
        n_valid = max(1, round(len(order) * spec.valid.fraction))
        valid_idx = {i for group in order[:n_valid] for i in group}
        splits["valid"] = [ex.model_copy(update={"split": "valid"}) for i, ex in enumerate(train) if i in valid_idx]
        splits["train"] = [ex for i, ex in enumerate(train) if i not in valid_idx]
    for split, n in spec.limit.items():
        splits[split] = splits[split][:n]
    return Canonical(splits, loaded, duplicates, carved)


def load(task: Task, source: HubSource | LocalSource | SyntheticSource) -> dict[str, list[dict]]:
    """canonical split -> list of example dicts (``example.schema.json`` minus split/index)."""
    return load_source(task, source).splits


def load_source(task: Task, source: HubSource | LocalSource | SyntheticSource) -> Loaded:
    """The source's examples by canonical split, re-split by its manifest when it has one."""
    raw = load_splits(task, source)
    return apply_manifest(raw, source.manifest) if source.manifest else Loaded(raw)


def load_splits(task: Task, source: HubSource | LocalSource | SyntheticSource) -> dict[str, list[dict]]:
    """canonical split -> examples, as the source lists its splits (no manifest), each with a
    unique id (``assign_ids``)."""
    out: dict[str, list[dict]] = {}
    where: dict[str, list[str]] = {}  # split -> each row's place in the source, for error messages
    if isinstance(source, (HubSource, SyntheticSource)):  # the generator writes SVAMP Hub rows
        hub = isinstance(source, HubSource)
        for split, rows in (load_hub(source) if hub else generate(source)).items():
            out[split], where[split] = [], []
            for i, r in enumerate(rows):
                where[split].append(f"{source.id} split {source.splits[split]!r} row {i}" if hub
                                    else f"synthetic source, {split} row {i}")
                try:
                    out[split].append(task.from_hub_row(r))
                except (KeyError, TypeError, ValueError) as e:
                    raise PipelineError(f"{where[split][-1]}: not a {task.name} Hub row ({type(e).__name__}: {e})") from None
    else:
        for split, f in source.files.items():
            path = resolve_data_path(f)
            out[split], where[split] = [], []
            for lineno, r in read_source_file(path):
                where[split].append(f"{path}:{lineno}")
                try:
                    out[split].append(task.from_local_row(r, source.format))
                except (KeyError, TypeError, ValueError) as e:
                    raise PipelineError(f"{where[split][-1]}: not a {source.format}-format {task.name} row ({type(e).__name__}: {e})") from None
    assign_ids(task, out, where)
    return out


def assign_ids(task: Task, splits: dict[str, list[dict]], where: dict[str, list[str]]) -> None:
    """Give every row a unique ``id``, in place. A row without an id of its own (``id`` None) gets
    a hash of its text (``task.id_parts``); a repeat of the same text (a legitimate separate row, e.g.
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
                base = text_id(*task.id_parts(r))
                rid, k = base, 1
                while rid in seen:
                    k += 1
                    rid = f"{base}-{k}"
                r["id"] = rid
                seen[rid] = place
