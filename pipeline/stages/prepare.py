"""prepare: canonical examples per split (``example.schema.json``), a seeded validation split carved
by question from train when the source has none, and row counts as DVC metrics."""
from __future__ import annotations

import random

from ..artifacts import write_json, write_jsonl
from ..spec import SPLITS, Params
from ..tasks import get_task
from .common import METRICS, PREPARED, dataset_spec


def run(params: Params, dataset: str) -> dict:
    spec = dataset_spec(params, dataset)
    task = get_task(spec.task)
    raw = task.load(spec.source)
    splits: dict[str, list[dict]] = {s: [] for s in SPLITS}
    for origin, rows in raw.items():
        for i, r in enumerate(rows):
            splits[origin].append({**r, "split": origin, "origin": origin, "index": i})
    carved = bool(splits["train"]) and not splits["valid"]
    if carved:
        # by question: every row is one question here, so no question sits on both sides
        order = list(range(len(splits["train"])))
        random.Random(spec.valid.seed).shuffle(order)
        n_valid = max(1, round(len(order) * spec.valid.fraction))
        valid_idx = set(order[:n_valid])
        train = splits["train"]
        splits["valid"] = [{**r, "split": "valid"} for i, r in enumerate(train) if i in valid_idx]
        splits["train"] = [r for i, r in enumerate(train) if i not in valid_idx]
    for split, n in spec.limit.items():
        splits[split] = splits[split][:n]
    counts = {}
    for split in SPLITS:
        counts[split] = write_jsonl(PREPARED / dataset / f"{split}.jsonl", _ordered(splits[split]), "example")
    metrics = {"dataset": dataset, "rows": counts, "source_rows": {k: len(v) for k, v in raw.items()},
               "valid_carved_from_train": carved}
    write_json(METRICS / "prepare" / f"{dataset}.json", metrics, "prepare_metrics")
    return metrics


def _ordered(rows):
    keys = ("id", "split", "origin", "index", "question", "premise", "choices", "label")
    for r in rows:
        yield {k: r.get(k) for k in keys if k in r or k in ("premise", "choices")}
