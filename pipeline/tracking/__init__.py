"""MLflow: the one place that knows the store, run names, tags and dataset inputs.

Secrets never reach MLflow: only params.yaml values, metrics and the stages' own files are logged.
Only the ``report`` stage logs, from the metrics files, in one process; no stage before it imports
MLflow, so a stage DVC restores from its run-cache (its command not run) loses nothing. What a run of
the pipeline leaves in the ``mindsmirror`` experiment:

- ``sync_runs`` (:mod:`.sync`): each evaluated run once per content of its metrics files (a
  ``fingerprint`` tag): a parent run per run spanning training and evaluation, with one child run per
  training stage (``log_run``, :mod:`.log`); a run logged already only gets its table tags refreshed;
- ``log_report`` (:mod:`.report`): a run named ``report`` with the tables and figures, which also
  refreshes the ``table.<name>`` tags of the runs.

The modules: :mod:`.store` (where the store is, the experiment, batched writes), :mod:`.tags` (source,
DVC and table tags), :mod:`.datasets` (the data as dataset inputs, digests from dvc.lock), :mod:`.log`
(one run and its training stages), :mod:`.sync` (every run, once), :mod:`.report` (the report run).
"""
from __future__ import annotations

from .datasets import content_md5
from .log import log_run, run_params
from .report import log_report
from .store import EXPERIMENT, flatten, tracking_uri
from .sync import FINGERPRINT, RunFiles, fingerprint, sync_runs

__all__ = ["EXPERIMENT", "FINGERPRINT", "RunFiles", "content_md5", "fingerprint", "flatten", "log_report", "log_run",
           "run_params", "sync_runs", "tracking_uri"]
