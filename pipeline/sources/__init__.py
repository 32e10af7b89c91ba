"""Where a dataset's rows come from: a Hub dataset (``datasets.load_dataset``), local files or the
seeded synthetic generator (``synthetic.py``: SVAMP Hub rows), re-split by a split manifest when the
source has one. The rows become canonical examples through the task's
row hooks (``from_hub_row``, ``from_local_row``, ``id_parts``); tasks know nothing of sources.
"""
from __future__ import annotations

from ..core.errors import PipelineError
from ..core.paths import resolve_data_path
from ..core.spec import HubSource, LocalSource, SyntheticSource
from ..tasks import Task
from ..tasks.base import text_id
from .hub import load_hub
from .local import read_source_file
from .manifest import Loaded, apply_manifest
from .synthetic import generate

__all__ = ["Loaded", "assign_ids", "load", "load_source", "load_splits"]


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
