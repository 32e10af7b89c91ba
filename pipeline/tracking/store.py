"""The MLflow store: where it is, the ``mindsmirror`` experiment (its kind, description and saved view:
:mod:`.experiment`), and batched writes to a run.

The default store is a SQLite file at the project root (``mlflow.db``; artifacts in ``mlruns/`` beside
it), absolute so that DVC's temporary experiment copies log to the same place; ``MLFLOW_TRACKING_URI``
overrides it (a SQLite store named there keeps its artifacts in ``mlruns/`` beside its file). Params
are flattened and whatever is named like a secret is dropped before it is written.
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any, Optional

from ..core.paths import project_root

EXPERIMENT = "mindsmirror"
SECRET_KEYS = {"api_key", "apikey", "token", "secret", "password", "authorization"}
MAX_METRICS, MAX_PARAMS, MAX_TAGS = 1000, 100, 100  # MLflow's log_batch limits


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


# --------------------------------------------------------------------------- store and experiment
def _client():
    warnings.filterwarnings("ignore", module="sqlalchemy")
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=tracking_uri())


def _sqlite_file(uri: str) -> Optional[Path]:
    """The database file of a ``sqlite:///`` URI (``sqlite:////abs`` absolute, ``sqlite:///rel`` relative)."""
    if not uri.startswith("sqlite:///"):
        return None
    rest = uri[len("sqlite:///"):].split("?", 1)[0]
    return Path(rest).resolve() if rest and rest != ":memory:" else None


def _experiment_id(client) -> str:
    """The experiment's id, created if need be, its kind, description and saved view brought up to date."""
    from .experiment import KIND, KIND_TAG, describe

    exp = client.get_experiment_by_name(EXPERIMENT)
    if exp is None:
        db = _sqlite_file(tracking_uri())
        # artifacts beside the database (the project root by default), never relative to a DVC temp copy
        art = (db.parent / "mlruns").as_uri() if db is not None else None
        exp_id, tags = client.create_experiment(EXPERIMENT, artifact_location=art, tags={KIND_TAG: KIND}), {KIND_TAG: KIND}
    else:
        exp_id, tags = exp.experiment_id, dict(exp.tags)
    describe(client, exp_id, tags)
    return exp_id


def _ms(seconds: float) -> int:
    return int(round(seconds * 1000))


# --------------------------------------------------------------------------- batching
def _log_batch(client, run_id: str, metrics=(), params=(), tags=()) -> None:
    metrics, params, tags = list(metrics), list(params), list(tags)
    for i in range(0, len(params), MAX_PARAMS):
        client.log_batch(run_id, params=params[i:i + MAX_PARAMS])
    for i in range(0, len(tags), MAX_TAGS):
        client.log_batch(run_id, tags=tags[i:i + MAX_TAGS])
    for i in range(0, len(metrics), MAX_METRICS):
        client.log_batch(run_id, metrics=metrics[i:i + MAX_METRICS])


def _params(flat: dict[str, str]):
    from mlflow.entities import Param

    return [Param(k, v) for k, v in flat.items() if k.rsplit(".", 1)[-1].lower() not in SECRET_KEYS]
