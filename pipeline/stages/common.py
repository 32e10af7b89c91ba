"""Small helpers shared by stages: where each artifact lives."""
from __future__ import annotations

from pathlib import Path

from ..artifacts import read_jsonl
from ..errors import PipelineError
from ..spec import SPLITS, DatasetSpec, Params

PREPARED = Path("data/prepared")
TEACHER = Path("data/teacher")
ASSEMBLED = Path("data/assembled")
MODELS = Path("models")
RESULTS = Path("results")
METRICS = Path("metrics")


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


def read_prepared(dataset: str, splits=SPLITS) -> dict[str, list[dict]]:
    out = {}
    for split in splits:
        p = PREPARED / dataset / f"{split}.jsonl"
        out[split] = read_jsonl(p, "example") if p.exists() else []
    return out
