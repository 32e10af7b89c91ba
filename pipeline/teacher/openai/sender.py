"""The async sender: the missing samples of groups, with bounded concurrency, one journal commit per
response.

- Samples of one prompt go in one request with ``n`` when the endpoint honours it (``use_n: auto``
  tries, and falls back to one request per sample, remembered per endpoint and model).
- ``concurrency`` workers, started a few ms apart, paced by ``requests_per_minute`` /
  ``tokens_per_minute``; the client retries 429s, 5xx, connection errors and timeouts itself.
- Before fanning out, one connection check (``client.probe``); a connection that cannot be made, a
  refusing endpoint (401/403/404), too many consecutive failures or ``budget_usd`` stop the phase,
  and ``raise_if_incomplete`` turns that into a one-line error. Everything answered stays in the journal.
"""
from __future__ import annotations

import asyncio
import sys
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from ...core.errors import PipelineError
from ...core.spec import OpenAITeacher
from ..journal import Journal, Sample
from ..ratelimit import RateLimiter
from .budget import Budget, cost_usd
from .client import connect_failure, describe_error, make_client, probe
from .endpoint import host_port
from .plan import MAX_N, Group, missing_samples
from .response import parse_completion, read_answer
from .tokens import count_tokens

RAMP_STEP_S, RAMP_MAX_S = 0.005, 1.0  # workers start 5 ms apart, all within 1 s


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


class Sender:
    def __init__(self, teacher: OpenAITeacher, journal: Journal, endpoint: str, dataset: str,
                 budget: Optional[Budget] = None):
        self.teacher, self.journal, self.endpoint, self.dataset = teacher, journal, endpoint, dataset
        self.budget = budget or Budget(teacher, journal.spent(endpoint, teacher.model)["cost_usd"])
        self.stats = RunStats()
        self.limiter = RateLimiter(teacher.requests_per_minute, teacher.tokens_per_minute)
        self.n_supported: Optional[bool] = journal.n_supported(endpoint, teacher.model)
        self.stop_reason: Optional[str] = None
        self.budget_hit = False
        self.cannot_connect = False
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
            if request.method == "POST":  # not the connection check
                self.stats.http_attempts += 1

        async def on_response(response):
            if response.status_code == 429:
                self.stats.rate_limited += 1

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

        with tqdm(total=total, desc=f"teach {self.dataset}: {desc}", unit="sample", file=sys.stderr,
                  mininterval=0.5, dynamic_ncols=True) as self.pbar:
            asyncio.run(self._run(queue, total))

    async def _run(self, queue: deque, total: int) -> None:
        self._settle = asyncio.Event()
        client = make_client(self.teacher, self._hooks())
        try:
            await probe(client, self.teacher, total)
            n = min(self.teacher.concurrency, total)
            step = min(RAMP_STEP_S, RAMP_MAX_S / n)
            await asyncio.gather(*(self._worker(client, queue, k * step) for k in range(n)))
        finally:
            await client.close()

    async def _worker(self, client, queue: deque, start_after: float) -> None:
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
                    await self._send(client, g, take, queue)
            finally:
                self.inflight -= 1
                budget.release(reserved)
                self._notify()

    async def _send(self, client, g: Group, take: list[int], queue: deque) -> None:
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
        except (openai.BadRequestError, openai.UnprocessableEntityError) as e:
            if n > 1 and t.use_n == "auto":  # the endpoint rejects n: one request per sample from now on
                self._set_n_supported(False)
                queue.appendleft((g, take))
                return
            self._failure(e)
            return
        except (openai.AuthenticationError, openai.PermissionDeniedError, openai.NotFoundError) as e:
            self._failure(e)
            self._stop("the endpoint refused the request")
            return
        except (openai.APIError, ValueError) as e:  # after the client's own retries; or not a completion
            self._failure(e)
            return
        latency = time.perf_counter() - t0
        texts = answer.texts
        if not texts:
            self._failure(ValueError("the endpoint returned no choices"))
            return
        if answer.usage is not None:
            (pt, ct), estimated = answer.usage, False
        else:
            pt, ct, estimated = g.prompt_tokens, sum(count_tokens(x, t.model) for x, _ in texts), True
        cost = cost_usd(t, pt, ct)
        got = take[: len(texts)]
        self.journal.record(endpoint=self.endpoint, model=t.model, kind=g.kind, group=g.key, p_hash=g.p_hash,
                            params=g.params, indices=got, texts=texts, n_asked=n, prompt_tokens=pt,
                            completion_tokens=ct, usage_estimated=estimated, cost_usd=cost,
                            response_id=answer.response_id, latency_s=latency)
        self.budget.spend(cost, None if estimated else pt, g.prompt_tokens)
        for idx, (text, fin) in zip(got, texts):
            g.have[idx] = Sample(text, fin, -1)
        s = self.stats
        s.requests += 1
        s.samples += len(texts)
        s.prompt_tokens += pt
        s.completion_tokens += ct
        s.cost_usd += cost
        self.consecutive_failures = 0
        if self.pbar is not None:
            self.pbar.update(len(texts))
        if len(texts) < n:
            if t.use_n == "auto":  # n silently ignored: ask for the rest one by one, and remember
                self._set_n_supported(False)
                queue.appendleft((g, take[len(texts):]))
            else:
                self._failure(ValueError(f"the endpoint returned {len(texts)} of {n} requested choices "
                                         "(use_n: always; set use_n: auto or never)"))
        elif n > 1:
            self._set_n_supported(True)

    def _failure(self, e: BaseException) -> None:
        self.stats.failed += 1
        self.last_error = describe_error(e)
        self.consecutive_failures += 1
        why = connect_failure(e)
        if why:  # not retried (client.py); the other requests would fare no better
            self.cannot_connect = True
            self._stop(f"cannot connect to {host_port()} ({why})")
        elif self.consecutive_failures >= self.max_consecutive_failures:
            self._stop(f"stopped after {self.consecutive_failures} consecutive failures")

    # ------------------------------------------------------------------ outcome
    def raise_if_incomplete(self, groups: list[Group], journal_file: Path) -> None:
        missing = missing_samples(groups)
        if not missing:
            return
        s, t, b = self.stats, self.teacher, self.budget
        kept = f"responses so far are kept in {journal_file}"
        if self.budget_hit:
            raise PipelineError(
                f"teacher stopped: {self.stop_reason} for {t.model} at {self.endpoint}: ${b.total:.4f} spent in all "
                f"(${b.spent_before:.4f} before this run + ${b.spent:.4f} by {s.requests} requests of this run), "
                f"${max(0.0, b.cap - b.total):.4f} left, less than one more sample could cost "
                f"(${self.budget_next_usd:.4f}); {s.failed} failed; {missing} samples still missing; {kept}; "
                "the cap is on the total spend on this endpoint and model, across runs: raise budget_usd to "
                "continue (cached responses cost nothing)")
        if self.cannot_connect:
            raise PipelineError(
                f"teacher stopped: {self.stop_reason} at {self.endpoint}, which answered before (a connection that "
                f"cannot be made is not retried); {s.requests} requests succeeded, {s.failed} failed; {missing} "
                f"samples missing; {kept}; rerun to send only the missing ones once the server is up")
        why = f"; {self.stop_reason}" if self.stop_reason else ""
        last = f" (last error: {self.last_error})" if self.last_error else ""
        raise PipelineError(
            f"teacher requests failed: {s.requests} succeeded, {s.failed} failed after the client's retries "
            f"(max_retries {t.max_retries}, timeout_s {t.timeout_s:g}){last}{why}; {missing} samples missing; "
            f"{kept}; rerun to send only the missing ones")
