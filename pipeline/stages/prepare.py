"""prepare: canonical examples per split (``Example``, ``example.schema.json``), re-split by the
source's split manifest if it has one, a seeded validation split carved by question from train when
the source has none, and row counts as DVC metrics (``PrepareMetrics``)."""
from __future__ import annotations

import random

from ..core.artifacts import parse_model, write_model, write_records
from ..core.records import Example, PrepareMetrics
from ..core.spec import SPLITS, Params
from ..sources import load_source
from ..tasks import get_task
from ..tasks.base import duplicate_questions
from ..core.stageio import METRICS, PREPARED, dataset_spec

FIELDS = ("id", "question", "premise", "choices", "label")  # what a task's source row gives an Example


def run(params: Params, dataset: str) -> PrepareMetrics:
    spec = dataset_spec(params, dataset)
    task = get_task(spec.task)
    loaded = load_source(task, spec.source)  # re-split by the source's manifest, if it has one
    raw = loaded.splits
    splits: dict[str, list[Example]] = {s: [] for s in SPLITS}
    for origin, rows in raw.items():
        for i, r in enumerate(rows):
            row = {k: r[k] for k in FIELDS if k in r}
            splits[origin].append(parse_model(Example, {**row, "split": origin, "origin": origin, "index": i},
                                              f"{dataset}: source split {origin!r}, row {i}"))
    duplicates = duplicate_questions(task, splits)  # every source row (after the manifest), before the carve
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
    counts = {split: write_records(PREPARED / dataset / f"{split}.jsonl", splits[split]) for split in SPLITS}
    metrics = PrepareMetrics(dataset=dataset, rows=counts, source_rows={k: len(v) for k, v in raw.items()},
                             valid_carved_from_train=carved, manifest=spec.source.manifest,
                             manifest_loaded_rows=loaded.loaded_rows, manifest_dropped=loaded.manifest_dropped,
                             duplicate_questions=duplicates)
    write_model(METRICS / "prepare" / f"{dataset}.json", metrics)
    return metrics
