"""Artifacts that pass between stages: JSON lines and JSON files, checked against the JSON Schemas
in ``schemas/`` when written and when read, and written atomically (temp file + rename) so that a
failing stage never leaves a half-written output behind."""
from __future__ import annotations

import json
import os
import tempfile
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable, Iterator

import jsonschema

from .errors import PipelineError

SCHEMA_DIR = Path(__file__).resolve().parent.parent / "schemas"


@lru_cache(maxsize=None)
def validator(name: str) -> jsonschema.protocols.Validator:
    path = SCHEMA_DIR / f"{name}.schema.json"
    if not path.exists():
        raise PipelineError(f"{path}: schema file missing (run `python -m pipeline schemas`)")
    schema = json.loads(path.read_text())
    cls = jsonschema.validators.validator_for(schema)
    return cls(schema)


def _check(obj: Any, schema: str, where: str) -> None:
    err = jsonschema.exceptions.best_match(validator(schema).iter_errors(obj))
    if err is not None:
        loc = "/".join(str(p) for p in err.absolute_path) or "<root>"
        raise PipelineError(f"{where}: does not match {schema}.schema.json at {loc}: {err.message}")


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success rename it over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_jsonl(path: str | Path, rows: Iterable[dict], schema: str | None) -> int:
    n = 0
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        for row in rows:
            n += 1
            if schema:
                _check(row, schema, f"{path}:{n} (being written)")
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    return n


def read_jsonl(path: str | Path, schema: str | None) -> list[dict]:
    path = Path(path)
    if not path.exists():
        raise PipelineError(f"{path}: file not found")
    rows = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise PipelineError(f"{path}:{lineno}: corrupt JSON line ({e.msg})") from None
            if schema:
                _check(row, schema, f"{path}:{lineno}")
            rows.append(row)
    return rows


def write_json(path: str | Path, obj: Any, schema: str | None = None) -> None:
    if schema:
        _check(obj, schema, f"{path} (being written)")
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, ensure_ascii=False, sort_keys=False) + "\n")


def read_json(path: str | Path, schema: str | None = None) -> Any:
    path = Path(path)
    if not path.exists():
        raise PipelineError(f"{path}: file not found")
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise PipelineError(f"{path}:{e.lineno}: corrupt JSON ({e.msg})") from None
    if schema:
        _check(obj, schema, str(path))
    return obj
