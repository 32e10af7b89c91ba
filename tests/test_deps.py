"""Each dvc.yaml stage's `deps` cover exactly the project code the stage runs, so that `dvc repro`
never serves a result computed by older code, and never re-runs a stage for code it does not run.

The code a stage runs is derived, never listed by hand: the stage's `cmd` is
`python -m pipeline <subcommand> ...`; `pipeline.__main__.COMMANDS` (the registry the CLI itself
dispatches through) names the module that runs that subcommand; the test then follows, with `ast`,
every import of a `pipeline` module, transitively: top-level and function-level imports, relative
imports, `from . import submodule`, and the `__init__.py` of every package on the way.
`pipeline/__main__.py` (and what it imports) is code run by every stage.
"""
from __future__ import annotations

import ast
import shlex
from functools import lru_cache
from pathlib import Path

import pytest

from support import ROOT
from support.deps import covers, load_stages

PACKAGE = "pipeline"
CLI_MODULE = f"{PACKAGE}.__main__"


# ----------------------------------------------------------------------------- import analysis

def module_path(name: str, root: Path = ROOT) -> Path | None:
    """The file of module ``name`` (``a.b`` -> ``a/b.py`` or ``a/b/__init__.py``), or None."""
    base = root.joinpath(*name.split("."))
    if (base / "__init__.py").is_file():
        return base / "__init__.py"
    if base.with_suffix(".py").is_file():
        return base.with_suffix(".py")
    return None


def _ours(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def _own_package(name: str, path: Path) -> str:
    """The package a relative import in module ``name`` (at ``path``) is relative to."""
    return name if path.name == "__init__.py" else name.rpartition(".")[0]


def direct_imports(name: str, root: Path = ROOT, package: str = PACKAGE) -> set[str]:
    """Modules of ``package`` that module ``name`` imports anywhere in its source (function bodies
    included), plus the packages they sit in; ``from X import y`` adds ``X.y`` when that is a
    module. ``importlib.import_module("literal")`` counts too."""
    path = module_path(name, root)
    assert path is not None, f"no module {name} under {root}"
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = _own_package(name, path)
                for _ in range(node.level - 1):
                    base = base.rpartition(".")[0]
                base = f"{base}.{node.module}" if node.module else base
            else:
                base = node.module or ""
            found.add(base)
            for a in node.names:  # `from . import sub` / `from .pkg import sub` imports a submodule
                if a.name != "*" and module_path(f"{base}.{a.name}", root) is not None:
                    found.add(f"{base}.{a.name}")
        elif (isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant)
              and isinstance(node.args[0].value, str)
              and ((isinstance(node.func, ast.Attribute) and node.func.attr == "import_module")
                   or (isinstance(node.func, ast.Name) and node.func.id == "import_module"))):
            found.add(node.args[0].value)
    return {m for m in found if _ours(m, package) and module_path(m, root) is not None}


def import_closure(roots, root: Path = ROOT, package: str = PACKAGE) -> set[str]:
    """``roots`` and every ``package`` module they import, transitively, with all enclosing
    packages (importing ``a.b.c`` runs ``a/__init__.py`` and ``a/b/__init__.py``)."""
    seen: set[str] = set()
    todo = list(roots)
    while todo:
        m = todo.pop()
        if m in seen:
            continue
        seen.add(m)
        parts = m.split(".")
        todo.extend(".".join(parts[:i]) for i in range(1, len(parts)))
        todo.extend(direct_imports(m, root, package))
    return seen


def is_code(path: Path) -> bool:
    """Whether a module holds code: anything but a docstring and ``from __future__`` imports. A
    docstring-only ``__init__.py`` runs nothing, so no stage needs to list it."""
    body = ast.parse(path.read_text(encoding="utf-8")).body
    return any(not ((isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant) and isinstance(n.value.value, str))
                    or (isinstance(n, ast.ImportFrom) and n.module == "__future__")) for n in body)


def files_of(modules, root: Path = ROOT) -> set[str]:
    """The files of ``modules`` that hold code (``is_code``)."""
    paths = (module_path(m, root) for m in modules)
    return {p.relative_to(root).as_posix() for p in paths if is_code(p)}


# ----------------------------------------------------------------------------- dvc.yaml

def subcommands(cmds: list[str]) -> list[str]:
    subs = []
    for cmd in cmds:
        argv = shlex.split(cmd)
        for i in range(len(argv) - 2):
            if argv[i] == "-m" and argv[i + 1] == PACKAGE:
                subs.append(argv[i + 2])
    return subs


def commands() -> dict:
    from pipeline.__main__ import COMMANDS

    return COMMANDS


def code_run_by(stage: dict, root: Path = ROOT) -> set[str]:
    """Files of the package that the stage's command runs."""
    reg = commands()
    roots = {CLI_MODULE} | {reg[s].module for s in subcommands(stage["cmd"])}
    return files_of(import_closure(roots, root), root)


def code_deps(stage: dict) -> list[str]:
    return [d.rstrip("/") for d in stage["deps"] if isinstance(d, str) and _ours(d.split("/")[0], PACKAGE)]


def files_under(dep: str, root: Path = ROOT) -> set[str]:
    p = root / dep
    if p.is_file():
        return {dep} if p.suffix == ".py" and is_code(p) else set()
    return {f.relative_to(root).as_posix() for f in p.rglob("*.py") if "__pycache__" not in f.parts and is_code(f)}


@lru_cache(maxsize=None)
def stages() -> dict[str, dict]:
    return load_stages()


STAGES = list(load_stages())


def suggested(files: set[str], root: Path = ROOT) -> list[str]:
    """The dep entries that cover ``files`` exactly: the largest package directory (below the top
    package) all of whose modules are run, or else the file itself."""
    out = []
    for f in sorted(files):
        entry, d = f, f.rpartition("/")[0]
        while "/" in d:  # stop at the top package
            if files_under(d, root) <= files:
                entry = d
            d = d.rpartition("/")[0]
        if entry not in out:
            out.append(entry)
    return out


# ----------------------------------------------------------------------------- tests

def test_every_stage_runs_a_registered_command():
    reg = commands()
    for name, st in stages().items():
        subs = subcommands(st["cmd"])
        assert subs, f"stage {name!r}: cmd {st['cmd']} is not `python -m {PACKAGE} <subcommand> ...`"
        for s in subs:
            assert s in reg, f"stage {name!r}: subcommand {s!r} is not in {CLI_MODULE}.COMMANDS"
            assert module_path(reg[s].module) is not None, f"COMMANDS[{s!r}].module {reg[s].module!r} does not exist"


def test_every_command_module_exists():
    missing = {n: c.module for n, c in commands().items() if module_path(c.module) is None}
    assert not missing, f"{CLI_MODULE}.COMMANDS names modules that do not exist: {missing}"


@pytest.mark.parametrize("name", STAGES)
def test_deps_cover_the_code_the_stage_runs(name):
    st = stages()[name]
    deps = code_deps(st)
    missing = sorted(f for f in code_run_by(st) if not any(covers(d, f) for d in deps))
    assert not missing, (f"stage {name!r} runs code its deps in dvc.yaml do not list: {', '.join(missing)} "
                         f"(its code deps should be: {', '.join(suggested(code_run_by(st)))})")


@pytest.mark.parametrize("name", STAGES)
def test_deps_list_no_code_the_stage_never_runs(name):
    """A code dep that covers a module the stage never imports re-runs the stage for nothing (and,
    for `teach`, may re-run the paid teacher)."""
    st = stages()[name]
    run = code_run_by(st)
    problems = []
    for d in code_deps(st):
        if "${" in d:
            problems.append(f"{d!r} is templated (code deps are the same for every instance)")
        elif not (ROOT / d).exists():
            problems.append(f"{d!r} does not exist")
        else:
            extra = sorted(files_under(d) - run)
            if extra:
                problems.append(f"{d!r} covers {', '.join(extra)}, which the stage never imports")
    assert not problems, (f"stage {name!r}: " + "; ".join(problems)
                          + f" (its code deps should be: {', '.join(suggested(run))})")


def test_teach_never_depends_on_student_code():
    """A training change must never re-run the (paid) teacher stage."""
    st = stages()["teach"]
    student = files_under(f"{PACKAGE}/student")
    assert student, "pipeline/student is gone: update this test"
    imported = sorted(code_run_by(st) & student)
    assert not imported, f"the teach stage imports student code: {', '.join(imported)}"
    listed = sorted(d for d in code_deps(st) if any(covers(d, f) or covers(f, d) for f in student))
    assert not listed, f"the teach stage lists student code in its deps: {', '.join(listed)}"


def test_cli_imports_no_stage_code():
    """The CLI module imports each command's module only when that command runs, so that it does not
    make every stage depend on every other stage's code. (It does import the task registry: every
    command checks each dataset's ``task`` against it.)"""
    cli = files_of(import_closure({CLI_MODULE}))
    for c in commands().values():
        own = module_path(c.module).relative_to(ROOT).as_posix()
        if own.startswith(f"{PACKAGE}/stages/") or own.startswith(f"{PACKAGE}/teacher/"):
            assert own not in cli, f"{CLI_MODULE} imports {own} itself; import it through COMMANDS instead"
    for pkg in ("stages/", "student/", "training/", "sources/", "teacher/", "tracking/"):
        dragged = sorted(f for f in cli if f.startswith(f"{PACKAGE}/{pkg}") and not f.endswith("/__init__.py"))
        assert not dragged, f"{CLI_MODULE} drags {', '.join(dragged)} into every stage"


def test_import_analysis_on_a_synthetic_package(tmp_path):
    """The analysis itself: relative and absolute imports, imports inside functions, `from . import
    submodule`, importlib with a literal, and package __init__ files."""
    files = {
        "pkg/__init__.py": '"""A docstring only: no code, so in no deps."""\nfrom __future__ import annotations\n',
        "pkg/main.py": "from .a import f\nimport os\n",
        "pkg/a.py": "def f():\n    from .sub import g\n    from . import b\n    return g, b\n",
        "pkg/b.py": "from pkg.c import x\n",
        "pkg/c.py": "x = 1\n",
        "pkg/sub/__init__.py": "from .inner import g\n",
        "pkg/sub/inner.py": "from ..d import *\ng = 1\n",
        "pkg/sub/other.py": "",
        "pkg/d.py": "import importlib\ndef h():\n    return importlib.import_module('pkg.e')\n",
        "pkg/e.py": "y = 2\n",
        "pkg/unused.py": "",
    }
    for rel, text in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    got = files_of(import_closure({"pkg.main"}, tmp_path, "pkg"), tmp_path)
    assert got == {"pkg/main.py", "pkg/a.py", "pkg/b.py", "pkg/c.py", "pkg/sub/__init__.py",
                   "pkg/sub/inner.py", "pkg/d.py", "pkg/e.py"}


def test_code_deps_stay_a_few_directories_per_stage():
    """Each stage lists the CLI, pipeline/core and the few packages it runs: dvc.yaml stays a table of
    contents (47 code-dep lines for 8 stages when this was written; the budget is 7 a stage)."""
    lines = sum(len(code_deps(st)) for st in stages().values())
    per_stage = {name: len(code_deps(st)) for name, st in stages().items()}
    assert lines <= 7 * len(per_stage) and max(per_stage.values()) <= 8, per_stage
    for name, st in stages().items():
        assert {f"{PACKAGE}/__main__.py", f"{PACKAGE}/core"} <= set(code_deps(st)), name
