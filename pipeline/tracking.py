"""MLflow: the one place that knows the store, run names and tags.

The default store is a SQLite file at the project root (``mlflow.db``; artifacts in ``mlruns/``),
absolute so that DVC's temporary experiment copies log to the same place; ``MLFLOW_TRACKING_URI``
overrides it. Secrets never reach MLflow: only params.yaml values and metrics are logged.
"""
from __future__ import annotations

import os
import time
import warnings
from pathlib import Path
from typing import Any

from .paths import git_commit, project_root

EXPERIMENT = "mindsmirror"


def tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{project_root() / 'mlflow.db'}"


def flatten(d: Any, prefix: str = "") -> dict[str, str]:
    out: dict[str, str] = {}
    if isinstance(d, dict):
        for k, v in d.items():
            out.update(flatten(v, f"{prefix}{k}."))
    elif isinstance(d, list) and any(isinstance(v, (dict, list)) for v in d):
        for i, v in enumerate(d):
            out.update(flatten(v, f"{prefix}{i}."))
    else:
        out[prefix[:-1]] = str(d)[:6000]
    return out


def log_run(*, dataset: str, method: str, seed: int, params: dict, step_metrics: list[tuple[str, float, int]],
            metrics: dict[str, float], artifacts: list[Path], extra_tags: dict[str, str] | None = None) -> str:
    """One MLflow run for one train+evaluate: flattened params, per-step loss, final metrics, tags."""
    warnings.filterwarnings("ignore", module="sqlalchemy")
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    import mlflow
    from mlflow.entities import Metric, Param
    from mlflow.tracking import MlflowClient

    uri = tracking_uri()
    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(EXPERIMENT)
    if exp is None:
        art = (project_root() / "mlruns").as_uri() if uri.startswith("sqlite:") else None
        exp_id = client.create_experiment(EXPERIMENT, artifact_location=art)
    else:
        exp_id = exp.experiment_id
    tags = {
        "git_commit": git_commit(), "dataset": dataset, "method": method, "seed": str(seed),
        "dvc_stage": os.environ.get("DVC_STAGE", ""), "dvc_exp_name": os.environ.get("DVC_EXP_NAME", ""),
        "dvc_exp_baseline_rev": os.environ.get("DVC_EXP_BASELINE_REV", ""),
        "mlflow.runName": f"{dataset}/{method}",
    }
    tags.update(extra_tags or {})
    run = client.create_run(exp_id, tags={k: v for k, v in tags.items() if v})
    rid = run.info.run_id
    now = int(time.time() * 1000)
    flat = flatten(params)
    ps = [Param(k, v) for k, v in flat.items()]
    ms = [Metric(k, float(v), now, 0) for k, v in metrics.items() if v is not None]
    ms += [Metric(k, float(v), now, int(step)) for k, v, step in step_metrics]
    for i in range(0, len(ps), 100):
        client.log_batch(rid, params=ps[i : i + 100])
    for i in range(0, len(ms), 1000):
        client.log_batch(rid, metrics=ms[i : i + 1000])
    for a in artifacts:
        if Path(a).exists():
            client.log_artifact(rid, str(a))
    client.set_terminated(rid, "FINISHED")
    del mlflow
    return rid
