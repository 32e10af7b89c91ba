"""shard: worker I's share of the runs, as ``dvc repro`` targets (``python -m pipeline shard --workers N --index I``).

The runs of params.yaml go to N workers, balanced by the forecast's estimated time (longest first, each
to the least loaded worker: LPT). A run's targets are ``evaluate@<run>`` and its sample sets
``infer@<run>-sample<k>``; ``dvc repro`` runs what they need upstream (assemble, stage1, stage2). The
workers share one DVC cache (``dvc cache dir --local``) or remote. (Gathering their stages in one clone
through DVC's run-cache needs the stages' ``cache: false`` metrics files declared as ``metrics:``:
docs/sharing-and-parallel-runs.md.)

The teacher runs first, once, and is pushed: ``dvc repro teach compare``, commit ``dvc.lock`` and
``metrics/``, ``dvc push --run-cache``. A worker never calls it. Before printing anything, ``shard``
checks that the teach stages its runs need are in ``dvc.lock``, restores their outputs (and the
prepared data they read) from the cache or remote with ``dvc checkout`` / ``dvc pull``, and checks with
``dvc status`` that none of them would re-run; otherwise one line says to run and push ``teach`` first.

Targets go to stdout (one line, for ``targets=$(python -m pipeline shard ...) && dvc repro $targets``),
the summary to stderr.
"""
from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from ..core.artifacts import read_model
from ..core.errors import PipelineError
from ..core.paths import project_root
from ..core.records import PrepareMetrics
from ..core.spec import Params
from ..runs import Plan, Run, teaching_name
from .forecast import load_throughputs, run_forecast

TEACH_FIRST = ("run and push `teach` first (dvc repro teach compare; git commit dvc.lock metrics; "
               "dvc push --run-cache): a worker never calls the teacher")


@dataclass(frozen=True)
class Share:
    index: int
    runs: list[str]
    cost: float
    targets: list[str]


# ----------------------------------------------------------------------------------------------- balancing
def balance(costs: dict[str, float], workers: int) -> list[list[str]]:
    """LPT: the runs, costliest first (ties by name), each to the least loaded worker (ties: the one with
    fewer runs, then the lowest index). Deterministic, so every worker computes the same split on its own."""
    loads = [0.0] * workers
    shares: list[list[str]] = [[] for _ in range(workers)]
    for name in sorted(costs, key=lambda n: (-costs[n], n)):
        i = min(range(workers), key=lambda w: (loads[w], len(shares[w]), w))
        shares[i].append(name)
        loads[i] += costs[name]
    return shares


def run_costs(params: Params, plan: Plan, device: str, calibration: Optional[Path]) -> tuple[dict[str, float], str]:
    """Each run's estimated accelerator hours (the forecast's, from the prepared split sizes); without a
    throughput for every student, the rows trained on plus the decodes, and the unit says so."""
    ths = load_throughputs(params, device, calibration)
    questions = {}
    for ds in {r.dataset for r in plan.runs.values()}:
        path = project_root() / "metrics" / "prepare" / f"{ds}.json"
        if not path.exists():
            raise PipelineError(f"shard: {path.relative_to(project_root())} is missing: {TEACH_FIRST}")
        questions[ds] = dict(read_model(path, PrepareMetrics).rows)
    fcs = {name: run_forecast(params, plan, r, questions[r.dataset], ths[r.student]) for name, r in plan.runs.items()}
    if all(f.hours is not None for f in fcs.values()):
        return {n: f.hours for n, f in fcs.items()}, f"{device} hours"
    return ({n: float(sum(s.examples for s in f.stages) + f.answer_decodes + f.rationale_decodes) for n, f in fcs.items()},
            f"rows + decodes (no {device} throughput for every student)")


def targets_of(plan: Plan, run: Run) -> list[str]:
    return [f"evaluate@{run.name}"] + [f"infer@{i.name}" for i in plan.inferences.values() if i.run == run]


# ----------------------------------------------------------------------------------------------- the teacher
def _dvc(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dvc", *args], cwd=project_root(), capture_output=True, text=True)


def teach_stages(plan: Plan, runs: list[str]) -> list[str]:
    """The stages of the teacher step that the runs read: their datasets' prepare stages and the teach
    stages of their teachers (a run with no teacher reads the prepared examples only)."""
    rs = [plan.runs[n] for n in runs]
    return (sorted({f"prepare@{r.dataset}" for r in rs})
            + sorted({f"teach@{teaching_name(r.dataset, r.teacher)}" for r in rs if r.teacher != "none"}))


def ensure_teacher(stages: list[str]) -> None:
    """The stages are locked in ``dvc.lock``, their outputs are in the workspace (restored from the cache or
    the default remote), and ``dvc status`` says that none of them, nor what they read, would re-run.
    Otherwise one line: run and push ``teach`` first."""
    if not stages:
        return
    from ruamel.yaml import YAML

    lock = project_root() / "dvc.lock"
    locked = (YAML(typ="safe").load(lock.read_text(encoding="utf-8")) or {}).get("stages", {}) if lock.exists() else {}
    missing = [s for s in stages if s not in locked]
    if missing:
        raise PipelineError(f"shard: {', '.join(missing)} not in dvc.lock: {TEACH_FIRST}")
    pulled = None
    if _dvc("checkout", "--with-deps", *stages).returncode != 0:  # not all in the cache: the default remote
        pulled = _dvc("pull", "--with-deps", *stages)
    st = _dvc("status", "--json", "--with-deps", *stages)
    if st.returncode != 0:
        raise PipelineError(f"shard: dvc status {' '.join(stages)} failed: "
                            f"{(st.stderr.strip().splitlines() or ['?'])[-1]}")
    changed = {k: v for k, v in json.loads(st.stdout or "{}").items() if k != "spec"}  # spec re-stamps the same bytes
    if changed:
        pick = next((k for k in changed if k.startswith("teach@")), next(iter(changed)))
        detail = "; ".join(f"{kind} {', '.join(f'{p} {s}' for p, s in v.items())}" if isinstance(v, dict) else str(kind)
                           for c in changed[pick] for kind, v in (c.items() if isinstance(c, dict) else [(c, None)]))
        why = ""
        if pulled is not None and pulled.returncode != 0:
            why = f"; dvc pull: {(pulled.stderr.strip().splitlines() or ['failed'])[0].removeprefix('ERROR: ')}"
        raise PipelineError(f"shard: {', '.join(changed)} would re-run ({pick}: {detail}{why}): their outputs are in "
                            f"neither the cache nor the remote, or what they read changed: {TEACH_FIRST}")


# ----------------------------------------------------------------------------------------------- the command
def run(params: Params, plan: Plan, workers: int, index: int, device: Optional[str] = None,
        calibration: Optional[Path] = None, check_teacher: bool = True) -> tuple[Share, list[float], str]:
    if workers < 1:
        raise PipelineError(f"shard: --workers {workers}: must be at least 1")
    if not 0 <= index < workers:
        raise PipelineError(f"shard: --index {index}: must be in 0..{workers - 1} for --workers {workers}")
    if workers > len(plan.runs):
        raise PipelineError(f"shard: --workers {workers}: the profile has {len(plan.runs)} runs, so a worker would "
                            f"have none (and `dvc repro` with no targets runs everything): use at most {len(plan.runs)}")
    device = device or ("cpu" if params.train.device == "cpu" else "cuda")
    costs, unit = run_costs(params, plan, device, calibration)
    shares = balance(costs, workers)
    mine = shares[index]
    if not mine:  # runs of no estimated cost all land on worker 0; an empty share would make `dvc repro` run everything
        raise PipelineError(f"shard: worker {index} of {workers} has no runs ({unit}: {', '.join(f'{c:g}' for c in costs.values())}); "
                            "use fewer workers")
    if check_teacher:
        ensure_teacher(teach_stages(plan, mine))
    loads = [sum(costs[n] for n in s) for s in shares]
    targets = [t for n in mine for t in targets_of(plan, plan.runs[n])]
    return Share(index=index, runs=mine, cost=loads[index], targets=targets), loads, unit
