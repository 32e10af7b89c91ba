"""Schema-checked, atomic JSONL/JSON artifact I/O (pipeline/artifacts.py)."""
from __future__ import annotations

import json

import pytest

from pipeline.artifacts import read_json, read_jsonl, write_json, write_jsonl
from pipeline.errors import PipelineError

EXAMPLES = [
    {"id": "a1", "split": "train", "origin": "train", "index": 0, "question": "Luke scored 84 points. Per round?",
     "premise": None, "choices": None, "label": "( 84.0 / 2.0 )"},
    {"id": "c1", "split": "valid", "origin": "train", "index": 7, "question": "Where do trees grow? — ünïcode",
     "premise": None, "choices": ["ocean", "desert", "wooded area", "city", "sky"], "label": "wooded area"},
    {"id": "n1", "split": "test", "origin": "test", "index": 3, "question": "A person makes music.",
     "premise": "A man plays guitar.", "choices": None, "label": "entailment"},
]


def _bad_row():
    return {**EXAMPLES[0], "index": -1}  # index must be >= 0


def test_jsonl_round_trip(tmp_path):
    path = tmp_path / "sub" / "train.jsonl"  # parent folders are created
    assert write_jsonl(path, iter(EXAMPLES), "example") == 3
    assert read_jsonl(path, "example") == EXAMPLES
    lines = path.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 3 and json.loads(lines[1]) == EXAMPLES[1]
    assert "ünïcode" in lines[1]  # written as UTF-8, not \u escapes
    assert [p.name for p in path.parent.iterdir()] == ["train.jsonl"]  # no temp files left


def test_jsonl_empty(tmp_path):
    path = tmp_path / "empty.jsonl"
    assert write_jsonl(path, [], "example") == 0
    assert path.exists() and read_jsonl(path, "example") == []


def test_read_corrupt_line_names_path_and_line(tmp_path):
    path = tmp_path / "train.jsonl"
    write_jsonl(path, EXAMPLES, "example")
    lines = path.read_text(encoding="utf-8").splitlines()
    lines[1] = lines[1][:-7]  # truncated line 2
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(PipelineError) as ei:
        read_jsonl(path, "example")
    assert f"{path}:2:" in str(ei.value)
    assert "corrupt" in str(ei.value)


def test_read_schema_violation_names_line(tmp_path):
    path = tmp_path / "train.jsonl"
    rows = [json.dumps(r) for r in EXAMPLES]
    rows[2] = json.dumps({**EXAMPLES[2], "split": "dev"})
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    with pytest.raises(PipelineError) as ei:
        read_jsonl(path, "example")
    msg = str(ei.value)
    assert f"{path}:3:" in msg
    assert "example.schema.json" in msg
    assert "split" in msg
    # without a schema the row is read as is
    assert read_jsonl(path, None)[2]["split"] == "dev"


def test_read_unknown_field_rejected(tmp_path):
    path = tmp_path / "train.jsonl"
    path.write_text(json.dumps({**EXAMPLES[0], "extra": 1}) + "\n", encoding="utf-8")
    with pytest.raises(PipelineError, match=rf"{path.name}:1:"):
        read_jsonl(path, "example")


def test_read_missing_file(tmp_path):
    with pytest.raises(PipelineError, match="not found"):
        read_jsonl(tmp_path / "nope.jsonl", "example")


def test_write_schema_violation_is_atomic(tmp_path):
    path = tmp_path / "train.jsonl"
    write_jsonl(path, EXAMPLES, "example")
    before = path.read_bytes()
    mtime = path.stat().st_mtime_ns
    with pytest.raises(PipelineError) as ei:
        write_jsonl(path, [EXAMPLES[1], EXAMPLES[2], _bad_row()], "example")
    msg = str(ei.value)
    assert f"{path}:3" in msg and "being written" in msg
    assert path.read_bytes() == before
    assert path.stat().st_mtime_ns == mtime
    assert [p.name for p in tmp_path.iterdir()] == ["train.jsonl"]  # temp file removed


def test_write_schema_violation_creates_nothing(tmp_path):
    path = tmp_path / "new.jsonl"
    with pytest.raises(PipelineError):
        write_jsonl(path, [EXAMPLES[0], _bad_row()], "example")
    assert not path.exists()
    assert list(tmp_path.iterdir()) == []


def test_write_failure_in_generator_is_atomic(tmp_path):
    path = tmp_path / "train.jsonl"
    write_jsonl(path, EXAMPLES, "example")
    before = path.read_bytes()

    def rows():
        yield EXAMPLES[0]
        raise RuntimeError("stage crashed mid-write")

    with pytest.raises(RuntimeError):
        write_jsonl(path, rows(), "example")
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["train.jsonl"]


def test_json_round_trip_and_atomic(tmp_path):
    path = tmp_path / "m.json"
    metrics = {"dataset": "svamp", "rows": {"train": 3, "valid": 1, "test": 2},
               "source_rows": {"train": 4, "test": 2}, "valid_carved_from_train": True}
    write_json(path, metrics, "prepare_metrics")
    assert read_json(path, "prepare_metrics") == metrics
    before = path.read_bytes()
    with pytest.raises(PipelineError, match="prepare_metrics"):
        write_json(path, {**metrics, "rows": {"train": -1, "valid": 1, "test": 2}}, "prepare_metrics")
    assert path.read_bytes() == before


def test_read_json_corrupt(tmp_path):
    path = tmp_path / "m.json"
    path.write_text('{\n  "dataset": "svamp",\n  "rows": \n}\n', encoding="utf-8")
    with pytest.raises(PipelineError, match=rf"{path.name}:4: corrupt JSON"):
        read_json(path)
