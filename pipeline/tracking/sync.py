"""Every evaluated run in MLflow, once (end of ``report``): idempotent, and blind to how DVC produced the
files (run, or restored from its run-cache, which runs no command and so could log nothing).

A run is its metrics files: ``metrics/evaluate/<run>.json`` and its training logs
``metrics/train/<run>/stage{1,2}.json``. Their fingerprint (sha256 of their bytes) is the parent run's
``fingerprint`` tag. ``sync_runs`` looks the fingerprints of the experiment up in one paginated search;
a run whose files were logged already only gets its ``tables``/``table.<name>`` tags refreshed, any
other is logged (``log.log_run``: parent and training-stage children) and fingerprinted. The files
carry their own start and end times, so re-running a stage gives new bytes, hence a new parent run;
restoring it unchanged gives the same bytes, hence no new run. Only parents logged by this version of
the logger count (their ``log_format`` tag is :data:`LOG_FORMAT`): one logged by an earlier version,
whose metrics had other names or units, is left as it is and the run logged again.

Inside ``dvc exp run`` a run whose files the experiment did not change (stages not re-run, or restored
from the run-cache) is found by its fingerprint, so it keeps the name it was first logged with: the
baseline's, or the experiment's that first produced those files.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from ..core.records import EvalMetrics, TrainingLog
from ..runs import Run
from ..core.spec import Params
from .datasets import _read_lock
from .log import _log_run
from .store import _client, _experiment_id
from .tags import _retag_tables

FINGERPRINT = "fingerprint"
LOG_FORMAT_TAG, LOG_FORMAT = "log_format", "2"  # 2: metrics in percent, parent = the evaluation's span
PAGE = 1000


@dataclass(frozen=True)
class RunFiles:
    """One evaluated run as read from its metrics files: ``files`` are the evaluation metrics file first,
    then the training logs (stage 1, stage 2), in the order of ``logs``."""

    run: Run
    metrics: EvalMetrics
    logs: tuple[TrainingLog, ...]
    files: tuple[Path, ...]
    tables: tuple[str, ...] = ()  # the tables the run serves (the report's plan)
    inferences: tuple = ()  # its InferMetrics (sampled modes and judges), their files after ``logs``' in ``files``


def fingerprint(files: Iterable[Path]) -> str:
    """sha256 over the bytes of ``files``, in order (each length-prefixed)."""
    h = hashlib.sha256()
    for f in files:
        data = Path(f).read_bytes()
        h.update(len(data).to_bytes(8, "big"))
        h.update(data)
    return h.hexdigest()


def _fingerprinted(client, exp_id: str) -> dict[str, object]:
    """fingerprint -> the first finished parent run carrying it (a run killed while being logged has none)."""
    found: dict[str, object] = {}
    token = None
    while True:
        page = client.search_runs([exp_id], filter_string=f"tags.{FINGERPRINT} IS NOT NULL and "
                                                          f"tags.{LOG_FORMAT_TAG} = '{LOG_FORMAT}' and "
                                                          "attributes.status = 'FINISHED'",
                                  max_results=PAGE, order_by=["attributes.start_time ASC"], page_token=token)
        for r in page:
            found.setdefault(r.data.tags[FINGERPRINT], r)
        token = page.token
        if not token:
            return found


def sync_runs(params: Params, items: Iterable[RunFiles]) -> dict[str, str]:
    """Each run of ``items`` in the store exactly once per content of its metrics files; returns
    ``{run name: parent MLflow run id}``, found or new."""
    client = _client()
    exp_id = _experiment_id(client)
    logged = _fingerprinted(client, exp_id)
    lock = None
    ids: dict[str, str] = {}
    for it in items:
        fp = fingerprint(it.files)
        tables = list(it.tables)
        found = logged.get(fp)
        if found is not None and found.data.tags.get("run") == it.run.name:
            _retag_tables(client, found.info.run_id, tables, found.data.tags)
            ids[it.run.name] = found.info.run_id
            continue
        lock = _read_lock() if lock is None else lock
        rid = _log_run(client, exp_id, params, it.run, it.metrics, list(it.logs), [it.files[0]], tables, lock=lock,
                       inferences=list(it.inferences))
        client.set_tag(rid, LOG_FORMAT_TAG, LOG_FORMAT)
        client.set_tag(rid, FINGERPRINT, fp)  # last: a parent that is not complete is never reused
        ids[it.run.name] = rid
    return ids
