"""dvc.yaml's stages and their dependency entries (tests/test_deps.py checks them against the code each
stage runs; tests/test_e2e.py changes code and checks which stages re-run)."""
from __future__ import annotations

from pathlib import Path

from ruamel.yaml import YAML

from support import ROOT


def load_stages(root: Path = ROOT) -> dict[str, dict]:
    """``{stage name: {"cmd": [...], "deps": [...]}}`` for every stage of dvc.yaml, before
    foreach/matrix expansion (anchors resolved); a ``foreach`` stage's body is its ``do``."""
    doc = YAML(typ="safe").load((root / "dvc.yaml").read_text(encoding="utf-8"))
    out = {}
    for name, st in doc["stages"].items():
        body = st.get("do", st) if "foreach" in st else st
        cmd = body["cmd"]
        out[name] = {"cmd": [cmd] if isinstance(cmd, str) else list(cmd), "deps": list(body.get("deps") or [])}
    return out


def covers(dep: str, path: str) -> bool:
    """Whether the dep entry ``dep`` (a file or a folder, no trailing slash) covers the file ``path``."""
    return path == dep or path.startswith(dep + "/")
