"""spec: ``params.yaml`` checked as a whole, beyond what its schema checks alone (every student's
``config_overrides`` against the fields of ``T5Config``), and ``runs.yaml`` checked in sync with its
tables (``validate``) or written from them (``plan``).

The ``spec`` stage of ``dvc.yaml`` depends on the whole ``params.yaml`` and writes the stamp
``metrics/spec.json``, whose bytes are the same for every valid spec; ``prepare`` depends on it,
so every stage is downstream. A typo in a section no stage reads (``trian:``) therefore fails
``dvc repro``, while a valid edit re-runs only the stages that read the edited keys."""
from __future__ import annotations

from pathlib import Path
from ..core.artifacts import write_model
from ..core.records import SpecCheck
from ..core.spec import Params, load_params
from ..core.stageio import METRICS
from ..runs import RUNS_FILE, Plan, write_plan
from ..student.config import t5_config_fields


def load(path: str, tasks) -> Params:
    """The spec, with the student overrides checked against ``T5Config`` (one line naming the key)."""
    return load_params(path, tasks=tasks, t5_fields=t5_config_fields())


STAMP = METRICS / "spec.json"


def validate(params: Params, params_path: str, stamp: bool = False) -> str:
    """``runs.yaml`` checked in sync; with ``stamp``, the stage's stamp written (the same bytes for
    every valid spec)."""
    p = Plan.checked(params)
    if stamp:
        write_model(STAMP, SpecCheck(params=params_path, runs=str(RUNS_FILE), valid=True))
    return f"{params_path}: ok (profile {params.profile}, {len(params.tables)} tables, {len(p.runs)} runs)"


def write(params: Params) -> str:
    p = Plan(params)
    path: Path = write_plan(params, plan=p)
    runs = p.runs.values()
    return (f"{path}: {len(p.runs)} runs ({sum(r.two_stage for r in runs)} two-stage) over {len(params.tables)} "
            f"tables, {len({r.assembly.name for r in runs})} assemblies, {len(p.inferences)} sample sets")
