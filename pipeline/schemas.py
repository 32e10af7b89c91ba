"""Write ``schemas/*.schema.json`` from the pydantic models (the models are the source of truth)."""
from __future__ import annotations

import json
from pathlib import Path

from .core.artifacts import SCHEMA_DIR
from .core.records import all_schemas


def render(schema: dict) -> str:
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"


def write_schemas(directory: Path = SCHEMA_DIR) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    out = []
    for name, schema in all_schemas().items():
        p = directory / f"{name}.schema.json"
        p.write_text(render(schema))
        out.append(p)
    return out
