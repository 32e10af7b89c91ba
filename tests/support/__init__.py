"""Helpers shared by the test modules; the shared fixtures are in ``tests/conftest.py``.

Test modules import from here (and from ``tests/fake_openai.py``), never from one another:

- ``support`` (this module): where the project and the shared reference data are;
- ``support.cli``: running ``python -m pipeline`` in a copy of the project, editing its params.yaml;
- ``support.tiny``: a tiny T5 built from a config, short encoded rows, a loop config, a stub evaluator
  (light: the torchrun worker of tests/test_ddp.py imports it too);
- ``support.teacher``: the live-teacher project's params, CLI runs against the fake OpenAI server,
  the teacher journal;
- ``support.e2e``: the fresh-clone copy of the project and the ``dvc`` runs of the end-to-end tests;
- ``support.deps``: dvc.yaml's stages and their dependency entries.

``load_script`` imports one of the project's ``scripts/*.py`` (not a package) as a module.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[2]  # the project
SHARED = ROOT.parent / "shared"  # the shared models and data, read in place
DATA = SHARED / "data"


def load_script(name: str) -> ModuleType:
    """``scripts/<name>.py`` imported as a module (the scripts folder is no package)."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod
