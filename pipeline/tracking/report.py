"""The report in MLflow (end of ``report``, after :func:`.sync.sync_runs`): a run named ``report``
(``[<experiment>] report`` inside ``dvc exp run``) with the tables and figures, which also refreshes the ``table.<name>`` tags of the runs (tables change
without the runs re-running).
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

from ..core.spec import Params
from .store import _client, _experiment_id, _log_batch, _ms, _params, flatten
from .tags import _clean, _dvc_env_tags, _retag_tables, _run_name, _source_tags


def _artifact_dir(p: Path) -> Optional[str]:
    """The folder under reports/ a report file goes to in MLflow (tables/, figures/), else its parent's name."""
    for base in (Path.cwd() / "reports", Path("reports")):
        try:
            rel = p.relative_to(base)
        except ValueError:
            continue
        parent = rel.parent.as_posix()
        return None if parent == "." else parent
    name = p.parent.name
    return None if name in ("", "reports") or p.parent.resolve() == Path.cwd().resolve() else name


def log_report(params: Params, artifacts: list[Path], run_tables: dict[str, list[str]],
               mlflow_run_ids: dict[str, str], started_at: Optional[float] = None) -> str:
    """One MLflow run ``report`` with every report file (kept in its folder: tables/, figures/), and the
    ``table.<name>`` tags of the logged runs brought up to date; returns the report run's id. Runs whose id
    is no longer in the store are skipped."""
    from mlflow.exceptions import MlflowException

    started = started_at if started_at is not None else time.time()
    client = _client()
    exp_id = _experiment_id(client)
    env = _dvc_env_tags()
    linked, missing = {}, []
    for name, rid in mlflow_run_ids.items():
        try:
            _retag_tables(client, rid, list(run_tables.get(name, [])))
            linked[name] = rid
        except MlflowException:
            missing.append(name)
    lines = [f"The tables and figures of profile **{params.profile}** ({len(params.tables)} tables).", ""]
    lines += [f"- [{n}](#/experiments/{exp_id}/runs/{rid}): {', '.join(run_tables.get(n, [])) or '(no table)'}"
              for n, rid in sorted(linked.items())]
    if missing:
        lines += ["", f"Not in this store: {', '.join(sorted(missing))}."]
    name = _run_name("report")
    tags = _clean({"profile": params.profile, "seed": str(params.seed), **env,
                   **_source_tags(env["dvc_stage"] or "report"), "tables": ",".join(params.tables),
                   "mlflow.runName": name, "mlflow.note.content": "\n".join(lines)[:5000]})
    rid = client.create_run(exp_id, start_time=_ms(started), tags=tags, run_name=name).info.run_id
    try:
        from mlflow.entities import Metric

        p = params.model_dump(mode="json")
        _log_batch(client, rid, params=_params(flatten({"profile": params.profile, "seed": params.seed,
                                                          "tables": p["tables"]})),
                   metrics=[Metric("runs_linked", float(len(linked)), _ms(time.time()), 0),
                            Metric("runs_missing", float(len(missing)), _ms(time.time()), 0)])
        for a in artifacts:
            a = Path(a)
            if a.is_file():
                client.log_artifact(rid, str(a), artifact_path=_artifact_dir(a))
    except BaseException:
        client.set_terminated(rid, "FAILED")
        raise
    client.set_terminated(rid, "FINISHED", end_time=_ms(time.time()))
    return rid
