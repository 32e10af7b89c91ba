"""The end-to-end tests' project copy (as a fresh clone) and their ``dvc`` runs."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from support import ROOT, SHARED


def e2e_env(proj: Path) -> dict:
    """The environment of a ``dvc`` run in ``proj``: this venv's tools first, git identity set, no
    MLflow, DVC root or OpenAI settings from the caller."""
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.update(DVC_NO_ANALYTICS="1", TOKENIZERS_PARALLELISM="false", GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@t",
               GIT_COMMITTER_NAME="t", GIT_COMMITTER_EMAIL="t@t", PYTHONUNBUFFERED="1")
    for k in ("MLFLOW_TRACKING_URI", "DVC_ROOT", "OPENAI_API_KEY", "OPENAI_BASE_URL"):
        env.pop(k, None)
    return env


def sh(cmd: list[str], proj: Path, timeout: int = 900) -> subprocess.CompletedProcess:
    r = subprocess.run(cmd, cwd=proj, env=e2e_env(proj), capture_output=True, text=True, timeout=timeout)
    if r.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} exited {r.returncode}\n--- stdout\n{r.stdout[-4000:]}\n--- stderr\n{r.stderr[-4000:]}")
    return r


def ran_stages(out: str) -> list[str]:
    return re.findall(r"Running stage '([^']+)'", out)


def copy_project(base: Path) -> Path:
    """The project's files (tracked or not ignored, no generated results) in ``base/proj``, with
    ``base/shared`` pointing at the shared data, as in a fresh clone."""
    if not SHARED.exists():
        pytest.fail(f"{SHARED} is missing: the tests read the shared data in place")
    proj = base / "proj"
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True,
                           text=True, check=True).stdout.split("\n")
    for f in filter(None, files):
        src = ROOT / f
        if src.is_file() and not f.startswith(("metrics/", "reports/tables/", "reports/figures/", "dvc.lock", "tests/")):
            (proj / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, proj / f)
    os.symlink(SHARED, base / "shared")
    return proj
