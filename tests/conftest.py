"""Fixtures shared by several test modules; shared helpers are in ``tests/support/``.

The ``slow`` marker (the fast loop is ``pytest -m "not slow"``) is set here on every ``e2e`` test (a
real ``dvc repro``) and every test of the live teacher's CLI (``teacher_project``: a ``teach``
process against a local server); test_resume.py and test_ddp.py mark themselves (SIGKILL, torchrun).

- ``cli_project``: a copy of the project for the CLI's tests (error contract, resume, DDP), its
  params.yaml the offline profile pointed at ../shared (absolute paths);
- ``base_project`` (per module) and ``teacher_project``: a project whose svamp teacher is the live
  ``openai`` backend, with svamp prepared, for the live-teacher tests;
- ``server`` (per module) and ``srv``: the fake OpenAI-compatible server (tests/fake_openai.py),
  ``srv`` reset to its defaults (and 20 ms latency) for each test.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from fake_openai import FakeOpenAI
from support import DATA, ROOT, SHARED
from support.cli import write_plan
from support.teacher import write_params


# --------------------------------------------------------------------------- the CLI's project
@pytest.fixture
def cli_project(tmp_path) -> Path:
    """A copy of the project (code, schemas, profiles, prompts) whose params.yaml is the offline profile
    reading ../shared in place."""
    if not DATA.is_dir():
        pytest.fail(f"{DATA} is missing: these tests read the shared reference data in place")
    p = tmp_path / "proj"
    p.mkdir()
    for d in ("pipeline", "schemas", "profiles", "prompts"):
        shutil.copytree(ROOT / d, p / d, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    text = (ROOT / "profiles" / "offline.yaml").read_text(encoding="utf-8")
    assert "../shared/" in text
    (p / "params.yaml").write_text(text.replace("../shared/", f"{SHARED}/"), encoding="utf-8")
    write_plan(p)
    return p


# --------------------------------------------------------------------------- the live teacher's project
@pytest.fixture(scope="module")
def base_project(tmp_path_factory) -> Path:
    """A project whose svamp teacher is the live ``openai`` backend, svamp prepared (once per module)."""
    proj = tmp_path_factory.mktemp("base") / "proj"
    proj.mkdir()
    for d in ("pipeline", "schemas", "prompts"):
        shutil.copytree(ROOT / d, proj / d, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", proj)
    write_params(proj)
    r = subprocess.run([sys.executable, "-m", "pipeline", "prepare", "--dataset", "svamp"], cwd=proj,
                       env={**os.environ, "DVC_ROOT": str(proj), "PYTHONPATH": str(proj)},
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return proj


@pytest.fixture
def teacher_project(base_project, tmp_path) -> Path:
    """A fresh copy of ``base_project`` for one live-teacher test."""
    p = tmp_path / "proj"
    shutil.copytree(base_project, p)
    return p


# --------------------------------------------------------------------------- the fake OpenAI server
@pytest.fixture(scope="module")
def server():
    """The fake OpenAI-compatible server on 127.0.0.1 (once per module)."""
    with FakeOpenAI() as srv:
        yield srv


@pytest.fixture
def srv(server) -> FakeOpenAI:
    """``server``, reset (faults off, stats cleared, 20 ms latency) for one test."""
    server.reset(latency=0.02)
    return server


def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.get_closest_marker("e2e") or "teacher_project" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.slow)
