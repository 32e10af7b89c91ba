"""Local sources: JSON-lines files, or one JSON array, in a dataset's original format."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from ..core.artifacts import _jsonl_rows, read_json
from ..core.errors import PipelineError


def read_source_file(path: Path) -> list[tuple[int, Any]]:
    """Rows of a local data file with their 1-based line numbers (for one JSON array: positions),
    read by the artifact readers: JSON lines, or one JSON array."""
    if not path.exists():
        raise PipelineError(f"{path}: data file not found")
    with open(path, encoding="utf-8") as f:
        is_array = f.read(4096).lstrip().startswith("[")
    if is_array:
        return list(enumerate(read_json(path), 1))
    return list(_jsonl_rows(path, None))
