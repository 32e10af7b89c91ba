"""The live teacher's usage in the teach metrics (``TeacherUsage``: requests, tokens, cost, budget, model
snapshots, batch mode), re-exported by ``records.py``."""
from __future__ import annotations

from typing import Literal, Optional

from pydantic import Field

from .records import Record


class TeacherBudget(Record):
    """``budget_usd``: a cap on the total spend on the endpoint and model, across runs and datasets (journal)."""

    budget_usd: Optional[float] = Field(description="the cap (None: no cap)")
    spent_before_usd: float = Field(ge=0, description="spent on this endpoint and model before this run (journal)")
    spent_usd: float = Field(ge=0, description="spent by this run's answered requests")
    uncertain_usd: float = Field(0, ge=0, description="worst-case cost of the requests that may have been billed "
                                 "without an answer we read (abandoned at timeout_s, in flight when a process died), "
                                 "earlier runs' included: counted as spent (spent_before + spent + uncertain + left = cap)")
    uncertain_requests: int = Field(0, ge=0, description="those requests (HTTP attempts)")
    reserved_peak_usd: float = Field(ge=0, description="the most reserved at once by requests in flight (their worst case)")
    left_usd: Optional[float] = Field(description="the cap less everything spent (None: no cap)")


class TeacherSnapshot(Record):
    """Which model snapshot and backend configuration answered the requests behind the records."""

    model: Optional[str] = Field(description="the model the endpoint answered with (completion.model), e.g. "
                                 "gpt-4o-mini-2024-07-18; None: not reported, or journalled before it was kept")
    system_fingerprint: Optional[str] = Field(description="completion.system_fingerprint (None: not reported)")
    requests: int = Field(ge=0, description="journal requests behind the records answered so")


class KindUsage(Record):
    """The journal requests behind the records' outputs of one kind (``cot`` or ``self_eval``)."""

    samples: int = Field(ge=0, description="outputs of this kind in the records")
    requests: int = Field(ge=0)
    prompt_tokens: int = Field(ge=0)
    completion_tokens: int = Field(ge=0)
    cost_usd: float = Field(ge=0)


class TeacherBatch(Record):
    """The Batch API's part of a teach run (``mode: batch``)."""

    mode: Literal["batch"]
    price_factor: float = Field(gt=0, le=1, description="the price paid, as a share of the online prices")
    submitted: int = Field(ge=0, description="batches this run submitted")
    resumed: int = Field(ge=0, description="batches an earlier run submitted that this run followed to the end (a kill while polling)")
    expired: int = Field(ge=0, description="batches that expired (their unanswered lines went in a later batch)")
    failed_lines: int = Field(ge=0, description="lines answered with an error (error file or a non-200 status)")
    quarantined_lines: int = Field(ge=0, description="output lines whose custom_id is no line of their batch: kept in the journal's batch_quarantine, not recorded")


class TeacherUsage(Record):
    """Requests, tokens and cost of the live teacher (``openai`` backend)."""

    model: str
    endpoint: str = Field(description="base URL of the endpoint, without credentials")
    prompts: dict[str, str] = Field(description="prompt template -> its version")
    n_per_request: Optional[bool] = Field(description="samples asked with `n` in one request (False: one request per sample; None: not needed yet)")
    model_check: Optional[str] = Field(None, description="the endpoint's model list before the first request: 'listed', or 'skipped (why)' when it has no model list; None: nothing was sent, so not checked")
    snapshots: list[TeacherSnapshot] = Field(default_factory=list, description="model snapshots and system fingerprints that produced the journal requests behind the records, most requests first")
    samples: int = Field(ge=0, description="teacher outputs in the records: CoTs + self-evaluations")
    cached_samples: int = Field(ge=0, description="of those, already in the journal before this run")
    requests: int = Field(ge=0, description="requests this run sent that returned samples")
    http_attempts: int = Field(ge=0, description="chat-completions HTTP requests this run made, the client's retries included (not the connection check)")
    rate_limited: int = Field(ge=0, description="429 answers this run received (retried by the client)")
    prompt_tokens: int = Field(ge=0, description="this run")
    completion_tokens: int = Field(ge=0, description="this run")
    cost_usd: float = Field(ge=0, description="this run, at the prices in params")
    uncertain_usd: float = Field(0, ge=0, description="worst-case cost of requests on this endpoint and model that may have been billed without an answer we read (journal, every run): counted against budget_usd")
    uncertain_requests: int = Field(0, ge=0, description="those requests (HTTP attempts)")
    total_requests: int = Field(ge=0, description="journal requests behind the records (this run and earlier ones)")
    total_prompt_tokens: int = Field(ge=0)
    total_completion_tokens: int = Field(ge=0)
    total_cost_usd: float = Field(ge=0)
    by_kind: dict[str, KindUsage] = Field(default_factory=dict, description="the totals per kind of output (cot, "
                                          "self_eval): what each table cell's rows cost is prorated from them")
    budget: Optional[TeacherBudget] = Field(None, description="spend against budget_usd")
    quarantined: dict[str, int] = Field(description="outputs without a parseable answer/verdict, kept in quarantine.jsonl: cot, self_eval")
    skipped_self_evals: int = Field(0, ge=0, description="unparseable CoTs that were not self-evaluated")
    stopped: Optional[str] = Field(None, description="why the teacher stopped before it had every sample (the metrics of a failed run); None: complete")
    batch: Optional[TeacherBatch] = Field(None, description="mode: batch only")
