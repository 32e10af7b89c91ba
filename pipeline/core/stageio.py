"""Small helpers shared by stages: where each artifact lives."""
from __future__ import annotations

from .artifacts import read_records
from .errors import PipelineError
from .paths import ASSEMBLED, METRICS, MODELS, PREPARED, QUARANTINE, RESULTS, TEACHER
from .records import Example
from .spec import SPLITS, DatasetSpec, Params

# the artifact locations are defined once, in pipeline/paths.py; stages may import them from here
__all__ = ["ASSEMBLED", "METRICS", "MODELS", "PREPARED", "QUARANTINE", "RESULTS", "TEACHER",
           "by_origin", "dataset_spec", "method_spec", "read_prepared"]


def dataset_spec(params: Params, name: str) -> DatasetSpec:
    try:
        return params.datasets[name]
    except KeyError:
        raise PipelineError(f"dataset {name!r} is not a key of `datasets` in params.yaml (known: {', '.join(params.datasets)})") from None


def method_spec(params: Params, name: str):
    try:
        return params.methods[name]
    except KeyError:
        raise PipelineError(f"method {name!r} is not a key of `methods` in params.yaml (known: {', '.join(params.methods)})") from None


def read_prepared(dataset: str, splits=SPLITS) -> dict[str, list[Example]]:
    out = {}
    for split in splits:
        p = PREPARED / dataset / f"{split}.jsonl"
        out[split] = read_records(p, Example) if p.exists() else []
    return out


def by_origin(prepared: dict[str, list[Example]]) -> dict[str, list[Example]]:
    """Examples grouped by their source split, in source order (the order the teacher plans in)."""
    out: dict[str, list[Example]] = {}
    for split in SPLITS:
        for ex in prepared[split]:
            out.setdefault(ex.origin, []).append(ex)
    return {origin: sorted(exs, key=lambda e: e.index) for origin, exs in out.items()}
