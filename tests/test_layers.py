"""Layers point down: the CLI and the stages use the building blocks, never the other way round.

Every module under pipeline/ is parsed with ``ast``; every import is resolved to an absolute module
name (relative imports, ``from . import sub``, imports inside functions, and
``importlib.import_module("literal")`` included) and checked against the floors, top to bottom:

- ``__main__`` (the CLI) and ``profiles``, ``schemas`` (its small commands);
- ``stages``: one module per dvc.yaml stage;
- ``tracking`` (MLflow), ``teacher``, ``sources``, ``training``;
- ``runs`` (the plan), ``tasks``, ``student``;
- ``core``: errors, paths, spec, records, artifacts, stage I/O. It imports nothing else.

Each package may import only what ``ALLOWED`` names for it (besides itself).
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "pipeline"
ALLOWED = {  # importer (module or package under pipeline) -> the other parts of pipeline it may import
    "core": (),
    "tasks": ("core",),
    "student": ("core",),
    "runs": ("core",),
    "sources": ("core", "tasks"),
    "training": ("core", "student"),
    "teacher": ("core", "tasks"),
    "tracking": ("core", "runs"),
    "stages": ("core", "tasks", "sources", "student", "training", "teacher", "runs", "tracking"),
}
TOPS = ("__main__", "profiles", "schemas", *ALLOWED)
RULES = {layer: tuple(t for t in TOPS if t != layer and t not in allowed) for layer, allowed in ALLOWED.items()}


def module_name(path: Path, root: Path) -> str:
    rel = path.relative_to(root).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports(source: str, name: str, is_package: bool) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in ``source`` (module ``name``), anywhere in it.
    ``from X import y`` yields ``X.y`` too (y may be a submodule)."""
    own = name if is_package else name.rpartition(".")[0]
    out = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = own
                for _ in range(node.level - 1):
                    base = base.rpartition(".")[0]
                base = f"{base}.{node.module}" if node.module else base
            else:
                base = node.module or ""
            out.append((node.lineno, base))
            out += [(node.lineno, f"{base}.{a.name}") for a in node.names if a.name != "*"]
        elif (isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant)
              and isinstance(node.args[0].value, str)
              and getattr(node.func, "attr", getattr(node.func, "id", None)) == "import_module"):
            out.append((node.lineno, node.args[0].value))
    return out


def _within(module: str, top: str) -> bool:
    """Whether ``module`` is ``pipeline.<top>`` or inside it."""
    prefix = f"{PACKAGE}.{top}"
    return module == prefix or module.startswith(prefix + ".")


def violations(root: Path) -> list[str]:
    found = []
    for path in sorted((root / PACKAGE).rglob("*.py")):
        name = module_name(path, root)
        rule = next((banned for layer, banned in RULES.items() if _within(name, layer)), None)
        if rule is None:
            continue
        lines = set()
        for line, target in imports(path.read_text(encoding="utf-8"), name, path.name == "__init__.py"):
            if line not in lines and any(_within(target, top) for top in rule):
                lines.add(line)  # one report per import statement
                found.append(f"{path.relative_to(root)}:{line}: {name} imports {target}")
    return found


def test_layers_point_down():
    assert violations(ROOT) == []


def test_every_module_is_covered():
    names = {module_name(p, ROOT) for p in (ROOT / PACKAGE).rglob("*.py")}
    for layer in RULES:
        assert any(_within(n, layer) for n in names), f"{PACKAGE}.{layer} not found: update RULES"


@pytest.mark.parametrize("where,code,bad", [
    ("teacher/x.py", "from ..stages.teach import run\n", "pipeline.stages.teach"),
    ("teacher/x.py", "def f():\n    from ..stages import teach\n", "pipeline.stages"),
    ("teacher/sub/__init__.py", "from ...stages import teach\n", "pipeline.stages"),
    ("teacher/sub/mod.py", "def f():\n    from ... import stages\n", "pipeline.stages"),
    ("student/x.py", "import pipeline.stages.train\n", "pipeline.stages.train"),
    ("tasks/x.py", "from pipeline.__main__ import main\n", "pipeline.__main__"),
    ("tasks/x.py", "import importlib\nimportlib.import_module('pipeline.stages.teach')\n", "pipeline.stages.teach"),
    ("core/spec.py", "def f():\n    from ..tasks import get_task\n", "pipeline.tasks"),
    ("core/artifacts.py", "from ..teacher import journal\n", "pipeline.teacher"),
    ("core/paths.py", "from .. import stages\n", "pipeline.stages"),
    ("core/errors.py", "from ..student.model import x\n", "pipeline.student.model"),
    ("tasks/base.py", "from ..sources import load\n", "pipeline.sources"),
    ("student/model.py", "from ..training.loop import train\n", "pipeline.training.loop"),
    ("runs.py", "from .tasks import get_task\n", "pipeline.tasks"),
    ("core/stageio.py", "from ..runs import Plan\n", "pipeline.runs"),
])
def test_the_check_catches_relative_and_function_level_imports(tmp_path, where, code, bad):
    path = tmp_path / PACKAGE / where
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(code)
    found = violations(tmp_path)
    assert found and any(f"imports {bad}" in v for v in found), found


@pytest.mark.parametrize("where,code", [
    ("teacher/x.py", "from ..tasks import Task\nfrom ..core.paths import TEACHER\nimport openai\n"),
    ("stages/teach.py", "from ..teacher.openai import generate\n"),
    ("core/spec.py", "from .errors import PipelineError\n"),
    ("sources/hub.py", "from ..tasks import Task\nfrom ..core.spec import HubSource\n"),
    ("student/x.py", "from ..stagesque import x\n"),  # a name that only starts like a layer
])
def test_the_check_allows_downward_imports(tmp_path, where, code):
    path = tmp_path / PACKAGE / where
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(code)
    assert violations(tmp_path) == []
