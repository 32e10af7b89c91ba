"""The async sender: the missing samples of groups, with bounded concurrency, one journal commit per
response.

- Samples of one prompt go in one request with ``n`` when the endpoint honours it (``use_n: auto``
  tries, and falls back to one request per sample, remembered per endpoint and model).
- ``concurrency`` workers, started a few ms apart, paced by ``requests_per_minute`` /
  ``tokens_per_minute``; the client retries 408, 409, 429, 5xx, connection errors and timeouts itself,
  and no other 4xx (client.py).
- Before fanning out, the model-list check (``models.ensure_served``); when the endpoint has no model
  list, one request goes alone first, so that a model it does not serve fails after one request.
- A 4xx answer other than 408/409/429 (and other than a 400/422 refusing ``n``, or any 400/422 whose
  code is not ``model_not_found``) stops the phase at once; so do a connection that cannot be made,
  too many consecutive failures and ``budget_usd``. ``incomplete`` says why, in one line (outcome.py).
- Each request has a journal ``pending`` row from before it is sent until its answer is recorded (or
  every attempt of it got an HTTP error answer): attempts the client abandoned may have been billed,
  so their worst case stays counted (budget.py). Everything answered stays in the journal.
"""
from __future__ import annotations

import asyncio
import contextvars
import sys
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from ...core.spec import OpenAITeacher
from ..journal import Journal, Sample
from ..ratelimit import RateLimiter
from .budget import Budget, cost_usd
from .client import connect_failure, describe_error, error_code, make_client, retried
from .endpoint import host_port
from .models import answered, ensure_served, mark_answered
from .outcome import incomplete_message
from .plan import MAX_N, Group, missing_samples
from .response import parse_completion, read_answer
from .tokens import count_tokens

def answer_tokens(answer, prompt_tokens: int, model: str) -> tuple[int, int, bool]:
    """(prompt, completion, estimated) tokens of an answer: the endpoint's usage, or our own counts."""
    if answer.usage is not None:
        return (*answer.usage, False)
    return prompt_tokens, sum(count_tokens(x, model) for x, _ in answer.texts), True


RAMP_STEP_S, RAMP_MAX_S = 0.005, 1.0  # workers start 5 ms apart, all within 1 s
NOT_BILLED = "HTTP error answers"  # an attempt answered with an HTTP error status is not billed


@dataclass
class RunStats:
    requests: int = 0
    failed: int = 0
    samples: int = 0
    http_attempts: int = 0
    rate_limited: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0


@dataclass
class Attempts:
    """The HTTP attempts of one request (the client's retries included), seen by the event hooks."""
    pending_id: int
    worst_usd: float  # the most one attempt can cost
    sent: int = 0
    errors: int = 0  # answered with an HTTP error status: not billed
    unsent: bool = False  # the last attempt never reached the server (no connection could be made)
    counted: int = 0  # attempts already counted as uncertain spend in the budget

    def maybe_billed(self) -> int:
        return max(0, self.sent - self.errors)


class RetryRefused(Exception):
    """Raised by the request hook to keep the client from sending a retry that ``budget_usd`` cannot
    cover once the abandoned attempts before it are counted (neither the SDK nor httpx catch it)."""


_attempts: contextvars.ContextVar[Optional[Attempts]] = contextvars.ContextVar("teacher_attempts", default=None)


class Sender:
    def __init__(self, teacher: OpenAITeacher, journal: Journal, endpoint: str, dataset: str,
                 budget: Optional[Budget] = None, name: str = "teacher"):
        self.teacher, self.journal, self.endpoint, self.dataset, self.name = teacher, journal, endpoint, dataset, name
        self.budget = budget or Budget.from_journal(teacher, journal, endpoint)
        self.stats = RunStats()
        self.limiter = RateLimiter(teacher.requests_per_minute, teacher.tokens_per_minute)
        self.n_supported: Optional[bool] = journal.n_supported(endpoint, teacher.model)
        self.model_check: Optional[str] = None  # usage.model_check: 'listed', 'skipped (why)'; None: not checked
        self.stop_reason: Optional[str] = None
        self.budget_hit = False
        self.retry_refused = False  # the budget stop came at a retry after attempts that may have been billed
        self.cannot_connect = False
        self.fatal_error: Optional[str] = None  # a 4xx answer no retry could mend
        self.fatal_status: Optional[int] = None
        self.fatal_code: Optional[str] = None
        self.budget_next_usd = 0.0  # the worst case of the request that no longer fitted
        self.last_error: Optional[str] = None
        self.consecutive_failures = 0
        self.max_consecutive_failures = max(5, 2 * teacher.concurrency)
        self.inflight = 0
        self.pbar = None
        self._settle: Optional[asyncio.Event] = None

    def batch_size(self, missing: int) -> int:
        mode = self.teacher.use_n
        if mode == "never" or (mode == "auto" and self.n_supported is False):
            return 1
        return min(missing, MAX_N)

    def _set_n_supported(self, value: bool) -> None:
        if self.n_supported is not value:
            self.n_supported = value
            self.journal.set_n_supported(self.endpoint, self.teacher.model, value)

    def _hooks(self) -> dict:
        async def on_request(request):
            if request.method != "POST":  # the model-list check
                return
            a = _attempts.get()
            if a is not None and a.sent:  # a retry: the attempts before it may have been billed unseen
                self._count_uncertain(a, a.maybe_billed())
                if self.budget.left() < -1e-12:  # their worst case leaves no room for this one's
                    raise RetryRefused()
            self.stats.http_attempts += 1
            if a is not None:
                a.sent += 1
                if a.sent > 1:  # one more attempt that may be billed, should this process die now
                    self.journal.pending_attempts(a.pending_id, a.maybe_billed())

        async def on_response(response):
            if response.status_code == 429:
                self.stats.rate_limited += 1
            a = _attempts.get()
            if a is not None and response.request.method == "POST" and response.status_code >= 400:
                a.errors += 1

        return {"request": [on_request], "response": [on_response]}

    # ------------------------------------------------------------------ waiting on requests in flight
    async def _settled(self) -> None:
        """Wait until a request in flight ends (or the run stops)."""
        await self._settle.wait()

    def _notify(self) -> None:
        self._settle.set()
        self._settle = asyncio.Event()

    def _stop(self, reason: str) -> None:
        if self.stop_reason is None:
            self.stop_reason = reason
        if self._settle is not None:
            self._notify()

    # ------------------------------------------------------------------ phases
    def run(self, groups: list[Group], desc: str) -> None:
        queue = deque((g, m) for g in groups if (m := g.missing()))
        total = sum(len(m) for _, m in queue)
        if not total or self.stop_reason:
            return
        from tqdm import tqdm

        with tqdm(total=total, desc=f"teach {self.dataset} ({self.name}): {desc}", unit="sample", file=sys.stderr,
                  mininterval=0.5, dynamic_ncols=True) as self.pbar:
            asyncio.run(self._run(queue, total))

    async def _run(self, queue: deque, total: int) -> None:
        self._settle = asyncio.Event()
        client = make_client(self.teacher, self._hooks())
        try:
            say = (lambda line: self.pbar.write(line, file=sys.stderr)) if self.pbar is not None else None
            check = await ensure_served(client, self.teacher, self.name, self.dataset, total, say)
            self.model_check = check.metric
            n = min(self.teacher.concurrency, total)
            step = min(RAMP_STEP_S, RAMP_MAX_S / n)
            if check.outcome != "listed" and not answered(self.teacher):  # no model list: one request first
                await self._worker(client, queue, 0.0, single=True)
            if self.stop_reason is None and queue:
                await asyncio.gather(*(self._worker(client, queue, k * step) for k in range(n)))
        finally:
            await client.close()

    async def _worker(self, client, queue: deque, start_after: float, single: bool = False) -> None:
        # Workers start a few ms apart: no burst of `concurrency` connections at once, and requests
        # stay spread out instead of travelling in waves that queue up in this process.
        await asyncio.sleep(start_after)
        t, budget = self.teacher, self.budget
        while self.stop_reason is None:
            if not queue:
                if not self.inflight:
                    return
                await self._settled()  # a request in flight may hand back samples (n fallback)
                continue
            g, missing = queue.popleft()
            want = self.batch_size(len(missing))
            fits = budget.fit(g.prompt_tokens, want)
            if fits < want and self.inflight:  # requests in flight will settle below their worst case
                queue.appendleft((g, missing))
                await self._settled()
                continue
            if not fits:  # nothing in flight, and not even one sample fits in what is left
                queue.appendleft((g, missing))
                self.budget_hit = True
                self.budget_next_usd = budget.worst_case(g.prompt_tokens, 1)
                self._stop(f"budget_usd ${t.budget_usd:g} reached")
                return
            take = missing[:fits]
            if len(take) < len(missing):
                queue.appendleft((g, missing[len(take):]))
            reserved = budget.worst_case(g.prompt_tokens, len(take))
            budget.reserve(reserved)
            self.inflight += 1
            try:
                await self.limiter.acquire(g.prompt_tokens + t.max_tokens * len(take))
                if self.stop_reason is None:
                    await self._send(client, g, take, queue, reserved)
            finally:
                self.inflight -= 1
                budget.release(reserved)
                self._notify()
            if single:
                return

    async def _send(self, client, g: Group, take: list[int], queue: deque, worst: float) -> None:
        """One request (the client's retries included), its pending row from before it is sent until
        its answer is recorded or known unbilled; attempts that may have been billed unseen keep it."""
        a = Attempts(self.journal.begin_pending(endpoint=self.endpoint, model=self.teacher.model, kind=g.kind,
                                                group=g.key, n_asked=len(take), worst_usd=worst), worst)
        token = _attempts.set(a)
        recorded = False
        try:
            recorded = await self._post(client, g, take, queue, a)
        finally:  # also when cancelled: a request in flight then may have been billed
            _attempts.reset(token)
            if not recorded:
                uncertain = max(0, a.maybe_billed() - a.unsent)
                self.journal.settle_pending(a.pending_id, uncertain)
                self._count_uncertain(a, uncertain)

    def _count_uncertain(self, a: Attempts, uncertain: int) -> None:
        """Count ``uncertain`` attempts of a request as spent at their worst case (those not counted yet)."""
        more = uncertain - a.counted
        if more > 0:
            self.budget.abandon(a.worst_usd * more, more)
            a.counted += more

    async def _post(self, client, g: Group, take: list[int], queue: deque, a: Attempts) -> bool:
        """-> whether the answer was recorded (with the pending row settled in the same transaction)."""
        import httpx2
        import openai

        t = self.teacher
        n = len(take)
        body = {"model": t.model, "messages": g.messages, **g.params}
        if n > 1 or t.use_n == "always":
            body["n"] = n
        t0 = time.perf_counter()
        try:  # the client's generic POST (see response.py), read as a typed ChatCompletion
            raw = await client.post("/chat/completions", body=body, cast_to=httpx2.Response)
            answer = read_answer(parse_completion(raw.content), n)
        except openai.APIStatusError as e:
            status, code = e.status_code, error_code(e)
            if status in (400, 422) and code != "model_not_found":
                if n > 1 and t.use_n == "auto":  # the endpoint rejects n: one request per sample from now on
                    self._set_n_supported(False)
                    queue.appendleft((g, take))
                    return False
                self._failure(e)
            elif code == "model_not_found" or (400 <= status < 500 and not retried(status)):
                self._fatal(e, status, code)
            else:  # 408, 409, 429, 5xx after the client's retries
                self._failure(e)
            return False
        except RetryRefused:
            self.stats.failed += 1
            self.budget_hit = self.retry_refused = True
            self.budget_next_usd = a.worst_usd
            self._stop(f"budget_usd ${t.budget_usd:g} reached")
            return False
        except (openai.APIError, ValueError) as e:  # after the client's own retries; or not a completion
            a.unsent = connect_failure(e, definite=True) is not None
            self._failure(e)
            return False
        latency = time.perf_counter() - t0
        texts = answer.texts
        if not texts:
            self._failure(ValueError("the endpoint returned no choices"))
            return False
        pt, ct, estimated = answer_tokens(answer, g.prompt_tokens, t.model)
        cost = cost_usd(t, pt, ct)
        got = take[: len(texts)]
        unseen = max(0, a.maybe_billed() - 1)  # earlier attempts of this request abandoned by the client
        self.journal.record(endpoint=self.endpoint, model=t.model, kind=g.kind, group=g.key, p_hash=g.p_hash,
                            params=g.params, indices=got, texts=texts, n_asked=n, prompt_tokens=pt,
                            completion_tokens=ct, usage_estimated=estimated, cost_usd=cost,
                            response_id=answer.response_id, latency_s=latency, response_model=answer.model,
                            system_fingerprint=answer.system_fingerprint, pending=(a.pending_id, unseen))
        self._count_uncertain(a, unseen)
        mark_answered(t)
        for idx, (text, fin) in zip(got, texts):
            g.have[idx] = Sample(text, fin, -1)
        self.tally(len(texts), pt, ct, cost, estimated, g.prompt_tokens)
        if len(texts) < n:
            if t.use_n == "auto":  # n silently ignored: ask for the rest one by one, and remember
                self._set_n_supported(False)
                queue.appendleft((g, take[len(texts):]))
            else:
                self._failure(ValueError(f"the endpoint returned {len(texts)} of {n} requested choices "
                                         "(use_n: always; set use_n: auto or never)"))
        elif n > 1:
            self._set_n_supported(True)
        return True

    def tally(self, samples: int, pt: int, ct: int, cost: float, estimated: bool, prompt_tokens_ours: int) -> None:
        """One answered request (online, or a batch line): the budget, this run's stats, the progress bar."""
        self.budget.spend(cost, None if estimated else pt, prompt_tokens_ours)
        s = self.stats
        s.requests += 1
        s.samples += samples
        s.prompt_tokens += pt
        s.completion_tokens += ct
        s.cost_usd += cost
        self.consecutive_failures = 0
        if self.pbar is not None:
            self.pbar.update(samples)

    def _fatal(self, e: BaseException, status: int, code: Optional[str]) -> None:
        """A 4xx that no retry could mend (a model the endpoint does not serve, a refused key): stop now."""
        self.stats.failed += 1
        self.last_error = describe_error(e, self.teacher)
        if self.fatal_error is None:
            self.fatal_error, self.fatal_status, self.fatal_code = self.last_error, status, code
        self._stop(f"HTTP {status}{f' {code}' if code else ''}")

    def _failure(self, e: BaseException) -> None:
        self.stats.failed += 1
        self.last_error = describe_error(e, self.teacher)
        self.consecutive_failures += 1
        why = connect_failure(e)
        if why:  # not retried (client.py); the other requests would fare no better
            self.cannot_connect = True
            self._stop(f"cannot connect to {host_port(self.teacher)} ({why})")
        elif self.consecutive_failures >= self.max_consecutive_failures:
            self._stop(f"stopped after {self.consecutive_failures} consecutive failures")

    # ------------------------------------------------------------------ outcome
    def incomplete(self, groups: list[Group], journal_file: Path) -> Optional[str]:
        """The one line saying why samples of ``groups`` are missing; None when none is."""
        missing = missing_samples(groups)
        return incomplete_message(self, missing, journal_file) if missing else None
