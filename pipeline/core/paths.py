"""Where things are: the project root (also inside DVC's temporary experiment copies)."""
from __future__ import annotations

import os
import subprocess
from functools import lru_cache
from pathlib import Path

# Where the stages' artifacts live, relative to the stage's working directory (the project, or DVC's
# copy of it). Backends under pipeline/teacher write none of them: the stages do.
PREPARED = Path("data/prepared")
TEACHER = Path("data/teacher")
ASSEMBLED = Path("data/assembled")
MODELS = Path("models")
RESULTS = Path("results")
METRICS = Path("metrics")
QUARANTINE = "quarantine.jsonl"  # in TEACHER/<dataset>/: live-teacher outputs without an answer or verdict


@lru_cache(maxsize=1)
def project_root() -> Path:
    """The real project root.

    ``dvc exp run --temp``/queued experiments run in ``.dvc/tmp/exps/tmpXXXX`` and set ``DVC_ROOT``
    to the real project; data outside the repository (``../shared``) is resolved from there.
    """
    env = os.environ.get("DVC_ROOT")
    if env:
        return Path(env).resolve()
    try:
        top = subprocess.run(
            ["git", "rev-parse", "--show-toplevel"], capture_output=True, text=True, check=True
        ).stdout.strip()
        if top:
            return Path(top).resolve()
    except (OSError, subprocess.CalledProcessError):
        pass
    return Path.cwd().resolve()


def resolve_data_path(p: str | Path) -> Path:
    """Resolve a path from params: absolute as is; relative to the cwd if it exists there
    (the stage's working copy), else relative to the project root (for ``../shared`` data seen
    from a DVC temp experiment)."""
    p = Path(p).expanduser()
    if p.is_absolute():
        return p
    here = Path.cwd() / p
    if here.exists():
        return here
    return project_root() / p


@lru_cache(maxsize=1)
def git_commit() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
