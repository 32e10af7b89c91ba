"""How a phase that could not get every sample ends: one line saying why and what to do, raised as
``TeacherStopped``, which carries the usage spent so far so that the teach stage can write its
metrics (the budget summary included) before failing."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Optional

from ...core.errors import PipelineError
from .budget import usd_pair
from .endpoint import base_url_hint, setting_hint, who

if TYPE_CHECKING:
    from .sender import Sender


class TeacherStopped(PipelineError):
    """The teacher stopped after it began sending (``budget_usd`` reached, a 4xx answer, a connection
    lost, too many failures): everything answered is in the journal.

    ``usage`` is the ``usage`` entry of the teach metrics as ``generate`` returns it for a complete run
    (``TeacherUsage``), built from what was spent: this run's requests, tokens and cost, ``budget``
    (spent before, spent, uncertain, left), the samples the journal holds so far, and ``stopped`` (the
    reason). The teach stage catches it, writes ``metrics/teach/<dataset>.json`` from ``usage`` and
    re-raises it (the CLI prints the message on one line and exits 2)."""

    def __init__(self, message: str, usage: Optional[dict] = None):
        super().__init__(message)
        self.usage = usage


def fatal_hint(sender: "Sender") -> str:
    """What to change after a 4xx answer that no retry could mend."""
    t, name, dataset, status, code = sender.teacher, sender.name, sender.dataset, sender.fatal_status, sender.fatal_code
    if code == "model_not_found":
        return f"{setting_hint(name, dataset)} to a model the endpoint serves"
    if status in (401, 403):
        return (f"set {t.api_key_env} to a key this endpoint accepts for this model (or "
                f"{setting_hint(name, dataset, 'api_key_env')} to the variable that holds it)")
    if status == 404:
        return (f"{setting_hint(name, dataset)} to a model the endpoint serves, or {base_url_hint(t, name, dataset)} "
                "(the URL the endpoint's /chat/completions is under)")
    return f"check the teacher's settings under teachers.{name} in params.yaml (or datasets.{dataset}.teachers.{name})"


def incomplete_message(sender: "Sender", missing: int, journal_file: Path) -> str:
    """The one line of a phase that ended with ``missing`` samples still missing."""
    s, t, b = sender.stats, sender.teacher, sender.budget
    kept = f"responses so far are kept in {journal_file}"
    named = who(t, sender.name)
    uncertain = f" + ${b.uncertain_all:.4f} uncertain (requests that may have been billed unseen)" \
        if b.uncertain_all else ""
    batch = getattr(sender, "batch", None)
    if batch is not None and not sender.budget_hit:  # batch mode (batch.py)
        why = sender.fatal_error or sender.stop_reason or "stopped"
        last = f" (last error: {sender.last_error})" if sender.last_error and sender.last_error not in why else ""
        return (f"{named}: batch mode: {why}{last}; {s.requests} lines answered, {batch['failed_lines']} failed, "
                f"{batch['submitted']} batches submitted, {batch['resumed']} resumed; {missing} samples missing; "
                f"{kept}; open batches are followed, and only the missing samples submitted, on the next run")
    if sender.fatal_error is not None:
        attempts = f"{s.http_attempts} HTTP attempt{'s' if s.http_attempts != 1 else ''}"
        return (f"{named}: {sender.fatal_error}; {s.requests} requests succeeded, {s.failed} failed ({attempts}; "
                f"a 4xx other than 408, 409 and 429 is never retried); {missing} samples missing; {kept}; "
                f"{fatal_hint(sender)}")
    if sender.budget_hit:
        left, cost = usd_pair(max(0.0, b.left()), sender.budget_next_usd)
        why = (f"a retry after an attempt abandoned at timeout_s could cost up to {cost}, more than was left then"
               if sender.retry_refused else f"less than one more sample could cost ({cost})")
        return (f"teacher stopped: {sender.stop_reason} for {named}: ${b.total:.4f} spent in all "
                f"(${b.spent_before - b.uncertain_before:.4f} before this run + ${b.spent:.4f} by {s.requests} "
                f"requests of this run{uncertain}), {left} left, {why}; "
                f"{s.failed} failed; {missing} samples still missing; {kept}; the cap is on the total spend on "
                f"this endpoint and model, across runs: raise budget_usd to continue (cached responses cost nothing)")
    if sender.cannot_connect:
        return (f"teacher stopped: {sender.stop_reason}: {named}, which answered before (a connection that cannot "
                f"be made is not retried); {s.requests} requests succeeded, {s.failed} failed; {missing} samples "
                f"missing; {kept}; rerun to send only the missing ones once the server is up")
    why = f"; {sender.stop_reason}" if sender.stop_reason else ""
    last = f" (last error: {sender.last_error})" if sender.last_error else ""
    return (f"teacher requests failed: {s.requests} succeeded, {s.failed} failed after the client's retries "
            f"(max_retries {t.max_retries}, timeout_s {t.timeout_s:g}){last}{why}; {named}; {missing} samples "
            f"missing; {kept}; rerun to send only the missing ones")
