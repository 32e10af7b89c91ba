"""Artifacts that pass between stages: JSON lines and JSON files, checked against the JSON Schemas
in ``schemas/`` when written and when read, and written atomically (temp file + rename) so that a
failing stage never leaves a half-written output behind.

Stages build and read the pydantic models of ``records.py``: ``write_records`` / ``read_records``
(JSON lines) and ``write_model`` / ``read_model`` (one JSON file). The JSON Schema generated from
each model (``schemas/<name>.schema.json``, the contract for other tools) is checked at the file
boundary, on the JSON written and on the JSON read, before the model parses it. ``write_jsonl`` /
``read_jsonl`` / ``write_json`` / ``read_json`` are the untyped layer underneath (``schema=None``
for files without a model, such as the live teacher's quarantine rows)."""
from __future__ import annotations

import json
import os
import secrets
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable, Iterator, TypeVar

import jsonschema
from pydantic import BaseModel, ValidationError

from .errors import PipelineError
from .records import artifact_models

M = TypeVar("M", bound=BaseModel)

SCHEMA_DIR = Path(__file__).resolve().parents[2] / "schemas"


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


def _create_temp(path: Path) -> Path:
    """A new empty file next to ``path``, with the mode ``open(path, "w")`` would give it (0666 less
    the umask; ``tempfile.mkstemp`` would make it 0600, and the rename would keep that)."""
    for _ in range(100):
        tmp = path.parent / f".{path.name}.{secrets.token_hex(4)}.tmp"
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            return tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"{path}: no free temporary name next to it")


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success rename it over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp_path = _create_temp(path)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def _write_lines(path: str | Path, rows: Iterable[tuple[Any, str | None]]) -> int:
    """Write (row, schema) pairs as JSON lines, each row checked against its schema; returns the count."""
    n = 0
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        for row, schema in rows:
            n += 1
            if schema:
                _check(row, schema, f"{path}:{n} (being written)")
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    return n


def write_jsonl(path: str | Path, rows: Iterable[dict], schema: str | None) -> int:
    return _write_lines(path, ((row, schema) for row in rows))


def _jsonl_rows(path: str | Path, schema: str | None) -> Iterator[tuple[int, Any]]:
    """(line number, row) of each non-blank line, checked against ``schema``."""
    path = Path(path)
    if not path.exists():
        raise PipelineError(f"{path}: file not found")
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
            yield lineno, row


def read_jsonl(path: str | Path, schema: str | None) -> list[dict]:
    return [row for _, row in _jsonl_rows(path, schema)]


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


# --------------------------------------------------------------------------- typed: the records.py models
@lru_cache(maxsize=None)
def schema_name(model: type[BaseModel]) -> str:
    """The name of ``model``'s schema file (``schemas/<name>.schema.json``): its key in ``artifact_models()``."""
    for name, cls in artifact_models().items():
        if cls is model:
            return name
    raise TypeError(f"{model.__name__} is not an artifact model (records.artifact_models())")


def parse_model(model: type[M], obj: Any, where: str) -> M:
    """``model`` from plain data, or a one-line ``PipelineError`` starting with ``where``."""
    try:
        return model.model_validate(obj)
    except ValidationError as e:
        err = e.errors()[0]
        loc = "/".join(str(p) for p in err["loc"]) or "<root>"
        raise PipelineError(f"{where}: not a valid {model.__name__} at {loc}: {err['msg']}") from None


def write_records(path: str | Path, records: Iterable[BaseModel]) -> int:
    """Write models as JSON lines, each checked against its model's schema; returns the row count."""
    return _write_lines(path, ((r.model_dump(mode="json"), schema_name(type(r))) for r in records))


def read_records(path: str | Path, model: type[M]) -> list[M]:
    """Read JSON lines checked against ``model``'s schema, as ``model`` instances."""
    return [parse_model(model, row, f"{path}:{lineno}") for lineno, row in _jsonl_rows(path, schema_name(model))]


def write_model(path: str | Path, model: BaseModel) -> None:
    """Write one model as a JSON file, checked against its schema."""
    write_json(path, model.model_dump(mode="json"), schema_name(type(model)))


def read_model(path: str | Path, model: type[M]) -> M:
    """Read a JSON file checked against ``model``'s schema, as a ``model`` instance."""
    return parse_model(model, read_json(path, schema_name(model)), str(path))
