"""Profiles: complete, checked-in alternatives to ``params.yaml`` (``profiles/<name>.yaml``).

``params.yaml`` is what DVC tracks; a profile is copied over it after validation, so every run is
still described by one file. ``paper`` is the default ``params.yaml``; ``offline`` runs everything
on this machine."""
from __future__ import annotations

import shutil
from pathlib import Path

from .errors import PipelineError
from .spec import load_params

PROFILES = Path("profiles")


def use_profile(name: str, dest: str | Path = "params.yaml") -> Path:
    src = PROFILES / f"{name}.yaml"
    if not src.exists():
        known = ", ".join(sorted(p.stem for p in PROFILES.glob("*.yaml")))
        raise PipelineError(f"{src}: no such profile (known: {known})")
    load_params(src)
    shutil.copyfile(src, dest)
    return Path(dest)
