"""The data of a run as MLflow dataset inputs: the DVC outputs it reads, their digest DVC's hash from
dvc.lock (else an md5 of their content), their size, file and row counts, and their records' schema.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Optional

from ..core.paths import ASSEMBLED, PREPARED, project_root
from ..core.records import Example, TrainRow
from ..runs import Run

LOCK = Path("dvc.lock")
ROW_COUNT_LIMIT = 256 * 2**20  # count the rows of data folders up to this size


def _read_lock() -> dict:
    if not LOCK.is_file():
        return {}
    try:
        from ruamel.yaml import YAML

        return YAML(typ="safe").load(LOCK.read_text(encoding="utf-8")) or {}
    except Exception:  # an unreadable lock is a missing lock here: the content hash stands in
        return {}


def _lock_out(lock: dict, stage: str, path: str) -> Optional[dict]:
    st = (lock.get("stages") or {}).get(stage) or {}
    for out in st.get("outs") or []:
        if isinstance(out, dict) and str(out.get("path", "")).rstrip("/") == path and out.get("md5"):
            return out
    return None


def _files(p: Path) -> list[Path]:
    if p.is_file():
        return [p]
    return sorted(f for f in p.rglob("*") if f.is_file()) if p.is_dir() else []


def content_md5(p: Path) -> str:
    """md5 over the sorted relative paths and bytes of the files under ``p`` (a stand-in for DVC's hash)."""
    h = hashlib.md5()
    base = p if p.is_dir() else p.parent
    for f in _files(p):
        h.update(f.relative_to(base).as_posix().encode() + b"\0")
        with f.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
        h.update(b"\0")
    return h.hexdigest()


def _row_counts(p: Path) -> dict[str, int]:
    files = [f for f in _files(p) if f.suffix == ".jsonl"]
    if sum(f.stat().st_size for f in files) > ROW_COUNT_LIMIT:
        return {}
    out = {}
    for f in files:
        with f.open("rb") as fh:
            out[f"{f.relative_to(p).as_posix() if p.is_dir() else f.name} rows"] = sum(1 for line in fh if line.strip())
    return out


def _colspec(model) -> str:
    """An MLflow column spec (what the UI's dataset drawer shows as the schema) of a records model."""
    schema = model.model_json_schema()
    cols = []
    for name, f in schema.get("properties", {}).items():
        options = f.get("anyOf", [f])
        types = [o.get("type") for o in options if o.get("type") not in (None, "null")]
        t = types[0] if types else "string"
        col: dict[str, Any] = {"name": name,
                               "type": {"integer": "long", "number": "double", "boolean": "boolean",
                                        "array": "array"}.get(t, "string"),
                               "required": name in schema.get("required", []) and len(options) == len(types)}
        if t == "array":
            col["items"] = {"type": "string"}
        cols.append(col)
    return json.dumps({"mlflow_colspec": cols})


class _Data:
    """One DVC output used as an MLflow dataset input: its hash from dvc.lock, else a content md5."""

    def __init__(self, lock: dict, name: str, path: Path, stage: str, model) -> None:
        self.name, self.path, self.stage, self.model = name, path, stage, model
        out = _lock_out(lock, stage, path.as_posix())
        self.from_lock = out is not None
        if out is not None:
            self.digest = str(out["md5"])
            self.digest_from = f"dvc.lock:{stage}"
            self.profile: dict[str, Any] = {k: out[k] for k in ("nfiles", "size") if k in out}
        elif path.exists():
            self.digest = content_md5(path)
            self.digest_from = f"content md5 (no {stage} out in dvc.lock: stage run by hand?)"
            fs = _files(path)
            self.profile = {"nfiles": len(fs), "size": sum(f.stat().st_size for f in fs)}
        else:
            self.digest = "missing"
            self.digest_from = f"missing ({path} absent and no {stage} out in dvc.lock)"
            self.profile = {}
        self.profile.update(_row_counts(path) if path.exists() else {})

    def dataset(self):
        from mlflow.entities import Dataset

        source = {"uri": str(project_root() / self.path), "path": self.path.as_posix(), "dvc_stage": self.stage,
                  "digest_from": self.digest_from}
        return Dataset(name=self.name, digest=self.digest[:36], source_type="local", source=json.dumps(source),
                       schema=_colspec(self.model), profile=json.dumps(self.profile))

    def input(self, context: str):
        from mlflow.entities import DatasetInput, InputTag

        return DatasetInput(self.dataset(), tags=[InputTag("mlflow.data.context", context)])


def _run_data(run: Run, lock: Optional[dict] = None) -> tuple[_Data, _Data]:
    """(training rows, test data) of a run, as the DVC outputs they are (``lock``: dvc.lock, read when None)."""
    lock = _read_lock() if lock is None else lock
    a = run.assembly.name
    train = _Data(lock, f"{a} (train)", ASSEMBLED / a, f"assemble@{a}", TrainRow)
    test = _Data(lock, f"{run.dataset} (prepared)", PREPARED / run.dataset, f"prepare@{run.dataset}", Example)
    return train, test
