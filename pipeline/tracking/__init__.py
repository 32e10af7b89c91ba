"""MLflow: the one place that knows the store, run names, tags and dataset inputs.

Secrets never reach MLflow: only params.yaml values, metrics and the stages' own files are logged.
Only the ``report`` stage logs, from the metrics files, in one process; no stage before it imports
MLflow, so a stage DVC restores from its run-cache (its command not run) loses nothing. What a run of
the pipeline leaves in the ``mindsmirror`` experiment:

- ``sync_runs`` (:mod:`.sync`): each evaluated run once per content of its metrics files (a
  ``fingerprint`` tag): a parent run per run spanning its evaluation, with one child run per training
  stage spanning that stage (``log_run``, :mod:`.log`), metrics in percent like the tables; a run
  logged already only gets its table tags refreshed;
- ``log_report`` (:mod:`.report`): a run named ``report`` with the tables and figures, which also
  refreshes the ``table.<name>`` tags of the runs;
- on the experiment: its kind (ML, not GenAI), a description and a saved runs-table view
  (:mod:`.experiment`).

Inside ``dvc exp run`` every run is named ``[<experiment>] <name>`` and its source is the experiment
(:mod:`.tags`).

The modules: :mod:`.store` (where the store is, the experiment, batched writes), :mod:`.experiment`
(the experiment's tags), :mod:`.tags` (source, DVC and table tags, run names), :mod:`.datasets` (the
data as dataset inputs, digests from dvc.lock), :mod:`.log` (one run and its training stages),
:mod:`.sync` (every run, once), :mod:`.report` (the report run).
"""
from __future__ import annotations

from .datasets import content_md5
from .experiment import runs_url
from .log import log_run, run_params
from .report import log_report
from .store import EXPERIMENT, flatten, tracking_uri
from .sync import FINGERPRINT, LOG_FORMAT, RunFiles, fingerprint, sync_runs

__all__ = ["EXPERIMENT", "FINGERPRINT", "LOG_FORMAT", "RunFiles", "content_md5", "fingerprint", "flatten", "log_report",
           "log_run", "run_params", "runs_url", "sync_runs", "tracking_uri"]
