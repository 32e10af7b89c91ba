"""Batch mode (``mode: batch``): a phase's requests as Batch API files instead of one request at a time.

- The missing samples of a phase go as JSONL lines (``batch_records.py``: one chat-completions request
  each, ``custom_id`` = the journal key of its samples) to ``/v1/files`` (``purpose=batch``) and
  ``/v1/batches`` (``completion_window: 24h``), at most ``batch_max_requests`` lines and 100 MB a file.
- The batch goes to the journal (``batch_store.py``) with its lines and its worst-case cost *before* it
  is created (with a nonce in its metadata) and takes the endpoint's id when created, so a run killed at
  any point resumes the same batch and never submits it again. ``batches.create`` is never retried by
  the client (the SDK sends no idempotency key): a lost answer is found by its nonce on resume.
- Polling reads the status every ``batch_poll_s`` (validating, in_progress, finalizing; then completed,
  expired, cancelled or failed). Output lines are matched by ``custom_id`` (their order is not the
  input's) and recorded in the same journal, under the same keys as online answers: a phase can mix
  both, and a line is recorded once (marked in the same transaction). Error-file lines count as
  failed; an output line with an unknown ``custom_id`` is quarantined and counted.
- What is still missing after a batch closes (an expired batch's unanswered lines, failed lines, fewer
  choices than ``n``) goes in the next batch, for at most ``MAX_ROUNDS`` batches of a phase (a batch
  cut short by the budget does not count). A cancelled batch's answers are recorded, then the phase stops.
- Cost is at ``batch_price_factor`` of the prices (``budget.cost_usd``), against the same ``budget_usd``:
  a file's worst case must fit in what is left, or the file is cut to what fits, down to one sample; a
  batch counts at its worst case until its results are recorded.
"""
from __future__ import annotations

import json
import secrets
import sys
import time
from typing import Optional

from ...core.errors import PipelineError
from . import batch_store
from .batch_records import record_line, request_line, runs
from .client import describe_error, retried
from .endpoint import api_key, client_base_url, who
from .plan import MAX_N, Group, missing_samples
from .sender import Sender

MAX_ROUNDS = 3  # batches of one phase's missing samples before it stops incomplete
FILE_BYTES = 100 * 1000 * 1000 - 64 * 1024  # under the Batch API's 100 MB a file
FILE_TIMEOUT_S = 600.0  # uploads and downloads of files up to 100 MB
TERMINAL = ("completed", "expired", "cancelled", "failed")


class BatchSender(Sender):
    """``Sender``'s interface (``run``, ``stats``, ``budget``, ``incomplete``) over the Batch API."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        batch_store.ensure(self.journal)
        self.model_check = "skipped (batch mode)"
        self.batch = {"submitted": 0, "resumed": 0, "expired": 0, "failed_lines": 0, "quarantined_lines": 0}
        self.mine: dict[str, float] = {}  # open batches this run submitted -> their worst case (reserved)
        self.sleep = time.sleep

    # ------------------------------------------------------------------ the endpoint
    def _client(self):
        import openai

        t = self.teacher
        key = api_key(t)
        if not key:
            raise PipelineError(f"{t.api_key_env} is not set: the teacher reads its key from the environment variable "
                                "named by its api_key_env")
        client = openai.OpenAI(api_key=key, base_url=client_base_url(t), timeout=t.timeout_s,
                               max_retries=t.max_retries)
        try:  # before anything is uploaded: an endpoint without the Batch API is one line
            client.batches.list(limit=1)
        except openai.APIStatusError as e:
            if e.status_code in (404, 405, 501):
                raise PipelineError(
                    f"{who(t, self.name)}: mode: batch, but the endpoint has no /v1/batches (HTTP {e.status_code}): set "
                    f"`mode: online` under teachers.{self.name}, or run the requests offline (python -m pipeline "
                    f"teach-batch --dataset {self.dataset} --teacher {self.name} --export FILE; --import its output)"
                ) from None
            raise PipelineError(f"{who(t, self.name)}: {describe_error(e, t)}") from None
        except openai.APIError as e:
            raise PipelineError(f"{who(t, self.name)}: {describe_error(e, t)}") from None
        return client

    # ------------------------------------------------------------------ a phase
    def run(self, groups: list[Group], desc: str) -> None:
        if not groups or self.stop_reason:
            return
        kind, scope = groups[0].kind, f"{self.dataset}/{groups[0].kind}"
        by_key = {g.key: g for g in groups}
        total = missing_samples(groups)
        if not total and not batch_store.open_batches(self.journal, self.endpoint, self.teacher.model, scope):
            return
        client = self._client()
        from tqdm import tqdm

        try:
            with tqdm(total=total, desc=f"teach {self.dataset} ({self.name}): {desc}, batch", unit="sample",
                      file=sys.stderr, mininterval=0.5, dynamic_ncols=True) as self.pbar:
                rounds = 0
                while self.stop_reason is None:
                    for bid, worst, status in batch_store.open_batches(self.journal, self.endpoint, self.teacher.model, scope):
                        if bid not in self.mine:
                            self.batch["resumed"] += 1
                        if status == "submitting" and (bid := self._adopt(client, bid, worst)) is None:
                            continue  # never created: its lines are still missing
                        self._follow(client, bid, worst, kind, by_key)
                        if self.stop_reason:
                            return
                    todo = [(g, idx) for g in groups for idx in runs(g.missing(), self.batch_size(MAX_N))]
                    if not todo:
                        return
                    if rounds == MAX_ROUNDS:
                        self._stop(f"{missing_samples(groups)} samples still missing after {MAX_ROUNDS} batches "
                                   "(failed or expired lines)")
                        return
                    rounds += not self._submit(client, todo, kind, scope)
        finally:
            for worst in self.mine.values():  # stopped with a batch of ours open: still pending in the journal
                self.budget.release(worst)
                self.budget.abandon(worst, 1)
            self.mine.clear()
            self.pbar = None

    def _submit(self, client, todo: list[tuple[Group, list[int]]], kind: str, scope: str) -> bool:
        """Submit the lines in files; -> whether the budget cut them short."""
        import openai

        t, b = self.teacher, self.budget
        parts: list[list] = [[]]
        size = 0
        for g, idx in todo:  # files of at most batch_max_requests lines and 100 MB
            line = request_line(t, g, idx)
            if parts[-1] and (len(parts[-1]) >= t.batch_max_requests or size + len(line[1]) > FILE_BYTES):
                parts.append([])
                size = 0
            parts[-1].append((g, idx, line))
            size += len(line[1])
        for part in parts:
            keep, worst, cut = [], 0.0, False
            for g, idx, line in part:  # the file's worst case must fit in what is left, down to one sample
                k = len(idx)
                while k and worst + b.worst_case(g.prompt_tokens, k) > b.left():
                    k -= 1
                if k:
                    keep.append(line if k == len(idx) else request_line(t, g, idx[:k]))
                    worst += b.worst_case(g.prompt_tokens, k)
                if k < len(idx):
                    cut = True
                    break
            if not keep:
                self.budget_hit = True
                self.budget_next_usd = b.worst_case(part[0][0].prompt_tokens, 1)
                self._stop(f"budget_usd ${t.budget_usd:g} reached")
                return True
            nonce = secrets.token_hex(8)
            local = f"local:{nonce}"
            batch_store.add_batch(self.journal, batch_id=local, endpoint=self.endpoint, model=t.model, scope=scope,
                                  kind=kind, input_file_id="", lines=[ln for ln, _ in keep], worst_usd=worst,
                                  status="submitting")
            b.reserve(worst)
            self.mine[local] = worst
            try:
                f = client.with_options(timeout=FILE_TIMEOUT_S).files.create(
                    file=("mm-batch.jsonl", b"".join(raw for _, raw in keep)), purpose="batch")
                created = client.with_options(max_retries=0).batches.create(
                    input_file_id=f.id, endpoint="/v1/chat/completions", completion_window="24h",
                    metadata={"mm_nonce": nonce, "dataset": self.dataset, "kind": kind})
            except openai.APIStatusError as e:  # refused: nothing was created
                batch_store.forget(self.journal, local)
                b.release(self.mine.pop(local))
                self._fatal(e, e.status_code, getattr(e, "code", None))
                return False
            except openai.APIError as e:  # no answer: it may exist; the next run looks for its nonce
                self._failure(e)
                self._stop(self.stop_reason or f"batch submission not confirmed: {describe_error(e, t)}")
                return False
            batch_store.adopt(self.journal, local, created.id, created.status)
            self.mine[created.id] = self.mine.pop(local)
            self.batch["submitted"] += 1
            if cut:
                return True  # cut to what fits: the rest waits for what this one really costs
        return False

    def _adopt(self, client, local: str, worst: float) -> Optional[str]:
        """A batch written before it was created (a kill, or no answer to ``batches.create``): adopt the
        endpoint's batch with its nonce, or forget it when there is none."""
        import openai

        nonce = local.split(":", 1)[1]
        try:
            for found in client.batches.list(limit=100):
                if (found.metadata or {}).get("mm_nonce") == nonce:
                    batch_store.adopt(self.journal, local, found.id, found.status)
                    return found.id
        except openai.APIError as e:
            self._failure(e)
            self._stop(self.stop_reason or f"cannot list the endpoint's batches: {describe_error(e, self.teacher)}")
            return None
        batch_store.forget(self.journal, local)
        self._release(local, worst)
        return None

    def _follow(self, client, bid: str, worst: float, kind: str, by_key: dict[str, Group]) -> None:
        """Poll a batch until it ends, record its output, count its errors, close it."""
        import openai

        while True:
            try:
                b = client.batches.retrieve(bid)
            except openai.APIStatusError as e:
                if not retried(e.status_code):  # a batch this key cannot see: stop, keep it open
                    self._fatal(e, e.status_code, getattr(e, "code", None))
                    return
                b = None
            except openai.APIError as e:
                self._failure(e)
                b = None
            if self.stop_reason:
                return
            if b is not None:
                self.consecutive_failures = 0
                batch_store.set_status(self.journal, bid, b.status)
                counts = getattr(b, "request_counts", None)
                if self.pbar is not None and counts is not None:
                    self.pbar.set_postfix_str(f"{bid} {b.status} {counts.completed}/{counts.total}", refresh=False)
                if b.status in TERMINAL:
                    break
            self.sleep(self.teacher.batch_poll_s)
        ok = bad = 0
        if b.status != "failed":
            out, err = self._file(client, b.output_file_id), self._file(client, b.error_file_id)
            if out is None or err is None:  # not read: the batch stays open for the next run
                self._stop(self.stop_reason or f"cannot read the files of batch {bid}")
                return
            known, recorded = batch_store.lines_of(self.journal, bid), batch_store.known_ids(self.journal, bid)
            recorded -= set(known)
            for raw in out:
                got = record_line(self, bid, raw, known, recorded, kind, by_key)
                ok += got is True
                bad += got is False
            for raw in err:
                bad += 1
                self.line_failed(raw, None)
        if b.status == "expired":
            self.batch["expired"] += 1
        batch_store.close(self.journal, bid, b.status)
        self._release(bid, worst)
        if b.status == "failed":  # rejected before it ran: nothing billed
            errors = "; ".join(str(getattr(e, "message", e)) for e in (getattr(getattr(b, "errors", None), "data", None) or []))
            self.fatal_error = self.last_error = f"batch {bid} failed validation: {errors or 'no reason given'}"
            self._stop("batch failed")
        elif b.status == "cancelled":
            self.fatal_error = f"batch {bid} was cancelled on the endpoint ({ok} lines answered were recorded)"
            self._stop("batch cancelled")
        elif ok == 0 and bad and b.status == "completed":  # every line failed: the next batch would fare no better
            self.fatal_error = f"every line of batch {bid} failed (last error: {self.last_error})"
            self._stop("every line failed")

    def _release(self, bid: str, worst: Optional[float]) -> None:
        if bid in self.mine:
            self.budget.release(self.mine.pop(bid))
        elif worst is not None:  # submitted by an earlier run: counted as uncertain from the journal until now
            self.budget.spent_before -= worst
            self.budget.uncertain_before -= worst
            self.budget.uncertain_requests_before = max(0, self.budget.uncertain_requests_before - 1)

    def _file(self, client, file_id: Optional[str]) -> Optional[list[str]]:
        """The lines of an output or error file ([] when there is none; None when it cannot be read)."""
        import openai

        if not file_id:
            return []
        try:
            text = client.with_options(timeout=FILE_TIMEOUT_S).files.content(file_id).text
        except openai.APIError as e:
            self._failure(e)
            self.last_error = f"file {file_id}: {describe_error(e, self.teacher)}"
            return None
        return [ln for ln in text.splitlines() if ln.strip()]

    def line_failed(self, raw: str, line, why: Optional[str] = None) -> None:
        """A line answered with an error; a refused ``n`` means one sample a line from now on (use_n: auto)."""
        self.batch["failed_lines"] += 1
        self.stats.failed += 1
        try:
            obj = json.loads(raw)
            resp = obj.get("response") or {}
            err = obj.get("error") or (resp.get("body") or {}).get("error") or {}
            status = resp.get("status_code")
            self.last_error = (f"batch line {obj.get('custom_id')}: "
                               + (why or f"HTTP {status} {err.get('code') or ''}: {err.get('message') or 'no message'}"))
            n = int(str(obj.get("custom_id")).rsplit(":", 1)[-1])
            if status in (400, 422) and n > 1 and self.teacher.use_n == "auto" and err.get("code") != "model_not_found":
                self._set_n_supported(False)
        except (ValueError, AttributeError, TypeError):
            self.last_error = why or "a batch error line that is not JSON"
