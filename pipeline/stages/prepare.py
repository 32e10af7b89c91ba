"""prepare: canonical examples per split (``Example``, ``example.schema.json``), re-split by the
source's split manifest if it has one, a seeded validation split carved by question from train when
the source has none (``pipeline/sources``), and row counts as DVC metrics (``PrepareMetrics``)."""
from __future__ import annotations

from ..core.artifacts import write_model, write_records
from ..core.records import PrepareMetrics
from ..core.spec import SPLITS, Params
from ..sources import canonical
from ..tasks import get_task
from ..core.stageio import METRICS, PREPARED, dataset_spec


def run(params: Params, dataset: str) -> PrepareMetrics:
    spec = dataset_spec(params, dataset)
    c = canonical(get_task(spec.task), spec, dataset)
    counts = {split: write_records(PREPARED / dataset / f"{split}.jsonl", c.splits[split]) for split in SPLITS}
    metrics = PrepareMetrics(dataset=dataset, rows=counts, source_rows={k: len(v) for k, v in c.loaded.splits.items()},
                             valid_carved_from_train=c.carved, manifest=spec.source.manifest,
                             manifest_loaded_rows=c.loaded.loaded_rows, manifest_dropped=c.loaded.manifest_dropped,
                             duplicate_questions=c.duplicates)
    write_model(METRICS / "prepare" / f"{dataset}.json", metrics)
    return metrics
