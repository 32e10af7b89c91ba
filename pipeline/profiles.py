"""Profiles: complete, checked-in alternatives to ``params.yaml`` (``profiles/<name>.yaml``).

``params.yaml`` is what DVC tracks; a profile is copied over it after validation, so every run is
still described by one file. ``paper`` is the default ``params.yaml``; ``offline`` runs everything
on this machine."""
from __future__ import annotations

import shutil
from pathlib import Path

from .core.errors import PipelineError
from .core.spec import load_params
from .runs import write_plan
from .tasks import TASKS

PROFILES = Path("profiles")


def use_profile(name: str, dest: str | Path = "params.yaml") -> Path:
    """Copy ``profiles/<name>.yaml`` over ``dest`` (validated first), and regenerate runs.yaml from it."""
    src = PROFILES / f"{name}.yaml"
    if not src.exists():
        known = ", ".join(sorted(p.stem for p in PROFILES.glob("*.yaml")))
        raise PipelineError(f"{src}: no such profile (known: {known})")
    load_params(src, tasks=TASKS)
    shutil.copyfile(src, dest)
    write_plan(load_params(dest, tasks=TASKS))
    return Path(dest)
