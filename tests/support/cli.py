"""Running the CLI (``python -m pipeline``) in a temporary copy of the project, as the user does."""
from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

from ruamel.yaml import YAML


def rt_load(text: str):
    """Round-trip YAML (comments and line numbers kept), as the spec loader reads it."""
    return YAML(typ="rt").load(text)


def rt_dump(doc) -> str:
    buf = io.StringIO()
    YAML(typ="rt").dump(doc, buf)
    return buf.getvalue()


def edit_params(proj: Path, fn) -> None:
    """Apply ``fn`` to the project's params.yaml document (round-trip YAML: comments stay), and
    regenerate runs.yaml when the result is valid (as a user runs `python -m pipeline plan`)."""
    path = proj / "params.yaml"
    doc = rt_load(path.read_text(encoding="utf-8"))
    fn(doc)
    path.write_text(rt_dump(doc), encoding="utf-8")
    write_plan(proj)


def write_plan(proj: Path) -> None:
    """runs.yaml for the project's params.yaml (nothing when params.yaml is invalid)."""
    from pipeline.core.errors import PipelineError
    from pipeline.runs import write_plan as write
    from pipeline.core.spec import load_params

    try:
        write(load_params(proj / "params.yaml"), proj / "runs.yaml")
    except PipelineError:
        pass


def cli(proj: Path, *args: str) -> subprocess.CompletedProcess:
    """``python -m pipeline ARGS`` in ``proj``, without tracking, teacher or timing settings from the
    environment."""
    env = dict(os.environ)
    for k in ("MLFLOW_TRACKING_URI", "OPENAI_API_KEY", "OPENAI_BASE_URL", "MM_TIMING"):
        env.pop(k, None)
    env.update(DVC_ROOT=str(proj), TOKENIZERS_PARALLELISM="false", PYTHONDONTWRITEBYTECODE="1")
    return subprocess.run([sys.executable, "-m", "pipeline", *args], cwd=proj, env=env,
                          capture_output=True, text=True, timeout=120)


def ok(r: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert r.returncode == 0, f"exit {r.returncode}\nstdout: {r.stdout}\nstderr: {r.stderr}"
    return r
