"""The live (openai) teacher's test project: its params (the real SVAMP files, a small limit, an
``openai`` teacher), CLI runs against the fake OpenAI server (tests/fake_openai.py) and its journal."""
from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

from fake_openai import FakeOpenAI
from pipeline.core.records import Example
from support import DATA

SVAMP = DATA / "svamp"
LIMIT = {"train": 6, "valid": 2, "test": 3}
TRAIN_Q, TEST_Q = LIMIT["train"], LIMIT["test"]

NAME = "live"  # the teacher's name in the test params: records in data/teacher/svamp/live/
TEACHER = {"backend": "openai", "model": "fake-model", "cots": 2, "self_evals": 2, "concurrency": 2,
           "max_tokens": 64, "max_retries": 2, "timeout_s": 5}


def params_doc(**teacher) -> dict:
    return {
        "profile": "openai-teacher-test",
        "seed": 0,
        "teachers": {NAME: {**TEACHER, **teacher}},
        "datasets": {"svamp": {
            "task": "svamp",
            "source": {"kind": "local", "format": "dss",
                       "files": {"train": str(SVAMP / "svamp_train.json"), "test": str(SVAMP / "svamp_test.json")}},
            "limit": LIMIT,
            "teacher": NAME,
            "teachers": {NAME: {}},
        }},
        "methods": {"std": {"labels": "gold", "cots": 0, "epochs": 1}},
        "students": {"tiny": {"id": "t5-small"}},
        "tables": {"main": {"title": "standard fine-tuning", "rows": "method", "cols": "dataset",
                            "values": {"method": ["std"], "dataset": ["svamp"]}, "fixed": {"student": "tiny"}}},
        "train": {"lr": 0.001, "batch_size": 2, "alpha": 0.5,
                  "max_input_length": 64, "max_target_length": 16},
    }


def write_params(proj: Path, **teacher) -> None:
    (proj / "params.yaml").write_text(json.dumps(params_doc(**teacher), indent=1))  # JSON is YAML


def teacher_cli(proj: Path, srv: FakeOpenAI, *args, key: str = "sk-test-local", timeout: float = 60,
                **popen) -> subprocess.CompletedProcess:
    """``python -m pipeline ARGS`` in ``proj`` with the teacher pointed at ``srv`` and API key ``key``."""
    return subprocess.run([sys.executable, "-m", "pipeline", *args], cwd=proj, env=env_for(proj, srv, key),
                          capture_output=True, text=True, timeout=timeout, **popen)


def env_for(proj: Path, srv: FakeOpenAI, key: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "DVC_"))}
    env.update(OPENAI_API_KEY=key, OPENAI_BASE_URL=srv.base_url, DVC_ROOT=str(proj), PYTHONPATH=str(proj))
    return env


def records_dir(proj: Path) -> Path:
    """Where the teach stage writes the test teacher's records."""
    return proj / "data" / "teacher" / "svamp" / NAME


def journal_file(proj: Path) -> Path:
    return proj / "data" / "teacher_journal.sqlite"


def journal_rows(proj: Path, sql: str) -> list:
    con = sqlite3.connect(journal_file(proj))
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def error_line(r: subprocess.CompletedProcess) -> str:
    lines = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, r.stderr
    return lines[0]


def made_up_examples(train: int = 6, test: int = 3) -> dict[str, list[Example]]:
    """SVAMP-like questions made up here ("Tom has a apples and buys b more"), by origin split: the
    in-process live-teacher tests need no shared data."""
    def make(split: str, n: int) -> list[Example]:
        a = 3 if split == "train" else 103
        return [Example(id=f"{split}{i}", split=split, origin=split, index=i, label=f"{i + a} + {2 * i + 1}",
                        question=f"Tom has {i + a} apples and buys {2 * i + 1} more. How many apples does he have?")
                for i in range(n)]
    return {"train": make("train", train), "test": make("test", test)}


@contextmanager
def isolated_key(monkeypatch, key_env: str, key: str):
    """One in-process live-teacher test's environment: no OPENAI_* setting of the caller's, the test key in
    ``key_env``, and the endpoints' model checks forgotten before and after."""
    from pipeline.teacher.openai.models import forget_checks

    for name in list(os.environ):
        if name.startswith("OPENAI_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv(key_env, key)
    forget_checks()
    try:
        yield monkeypatch
    finally:
        forget_checks()
