"""The ``openai`` backend: a live teacher on any OpenAI-compatible chat-completions endpoint.

For each question of ``teacher.splits``: ``cots`` sampled CoTs from ``prompts/<task>/cot.txt``; then
for each *parseable* CoT of the ``self_eval_splits`` questions, ``self_evals`` self-evaluations from
``prompts/<task>/self_eval.txt`` (an unparseable CoT is excluded downstream, so it is not evaluated;
the count is reported as ``skipped_self_evals``).

- Key and base URL come from ``OPENAI_API_KEY`` / ``OPENAI_BASE_URL`` only; the key is never written
  anywhere, and error messages are scrubbed of anything that looks like one.
- Every response is committed to the journal (``journal.py``) as it arrives; only missing samples
  are requested, so reruns and resumes after a crash repeat no answered request.
- Samples of one prompt go in one request with ``n`` when the endpoint honours it (``use_n: auto``
  tries, and falls back to one request per sample, remembered per endpoint and model).
- ``concurrency`` workers, paced by ``requests_per_minute`` / ``tokens_per_minute``; 429s, 5xx,
  connection errors and timeouts are retried by the client itself (``max_retries``, ``timeout_s``).
- Failures after the retries, a refusing endpoint (401/403/404) or ``budget_usd`` stop the stage with
  a one-line summary; everything answered so far stays in the journal.
- Outputs without a parseable answer or verdict stay in the records (status != ok) and are copied,
  with the reason, to ``data/teacher/<dataset>/quarantine.jsonl``.
"""
from __future__ import annotations

import asyncio
import json
import math
import os
import re
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Optional
from urllib.parse import urlsplit, urlunsplit

from ..artifacts import write_jsonl
from ..errors import PipelineError
from ..paths import project_root
from ..spec import SPLITS, OpenAITeacher, Params
from ..tasks import Task
from .common import empty_record, make_cot
from .journal import Journal, Sample, group_key, prompt_hash
from .prompts import Template, cot_for_evaluation, example_values, load_template
from .ratelimit import RateLimiter

DEFAULT_BASE_URL = "https://api.openai.com/v1"
MAX_N = 128  # the most samples one chat-completions request may ask for
RAMP_STEP_S, RAMP_MAX_S = 0.005, 1.0  # workers start 5 ms apart, all within 1 s


# --------------------------------------------------------------------------- small helpers
def endpoint_url() -> str:
    """The base URL requests go to, as recorded in the journal and metrics: no credentials, no query."""
    raw = (os.environ.get("OPENAI_BASE_URL") or DEFAULT_BASE_URL).strip()
    try:
        u = urlsplit(raw)
        host = (u.hostname or "").lower()
        port = u.port
    except ValueError:
        raise PipelineError("OPENAI_BASE_URL is not a valid URL") from None
    if u.scheme not in ("http", "https") or not host:
        raise PipelineError("OPENAI_BASE_URL must be an http(s) URL, e.g. https://api.openai.com/v1")
    if ":" in host:
        host = f"[{host}]"
    return urlunsplit((u.scheme, host + (f":{port}" if port else ""), u.path.rstrip("/"), "", ""))


def journal_path(teacher: OpenAITeacher) -> Path:
    p = Path(teacher.journal).expanduser()
    return p if p.is_absolute() else project_root() / p


@lru_cache(maxsize=None)
def _encoder(model: str):
    try:  # optional: used when installed and its encoding files are available offline
        import tiktoken

        try:
            return tiktoken.encoding_for_model(model)
        except KeyError:
            return tiktoken.get_encoding("cl100k_base")
    except Exception:
        return None


def token_method(model: str) -> str:
    return "tiktoken" if _encoder(model) is not None else "chars/4"


def count_tokens(text: str, model: str) -> int:
    enc = _encoder(model)
    return len(enc.encode(text)) if enc is not None else (len(text) + 3) // 4


def message_tokens(messages: list[dict], model: str) -> int:
    return sum(count_tokens(m["content"], model) + 4 for m in messages) + 3


def cost_usd(teacher: OpenAITeacher, prompt_tokens: float, completion_tokens: float) -> float:
    return (prompt_tokens * teacher.price_per_1m_input + completion_tokens * teacher.price_per_1m_output) / 1e6


_SECRETS = re.compile(r"(sk-[A-Za-z0-9_\-*.]{3,}|Bearer\s+\S+)")


def scrub(text: str) -> str:
    """One line, no API key (nor anything that looks like one)."""
    secrets = [os.environ.get("OPENAI_API_KEY")]
    try:  # credentials inside OPENAI_BASE_URL (https://user:password@host/v1)
        u = urlsplit(os.environ.get("OPENAI_BASE_URL") or "")
        secrets += [u.password, u.username and u.password and f"{u.username}:{u.password}"]
    except ValueError:
        pass
    for secret in sorted(filter(None, secrets), key=len, reverse=True):
        text = text.replace(secret, "***")
    return " ".join(_SECRETS.sub("***", text).split())


def describe_error(e: BaseException) -> str:
    import openai

    if isinstance(e, openai.APIStatusError):
        body = e.body if isinstance(e.body, dict) else {}
        msg = body.get("message") or e.message
        out = f"HTTP {e.status_code} {type(e).__name__}: {msg}"
    elif isinstance(e, openai.APITimeoutError):
        out = "timeout (no answer within timeout_s)"
    elif isinstance(e, openai.APIConnectionError):
        cause = e.__cause__
        out = f"connection error ({type(cause).__name__}: {cause})" if cause else "connection error"
    else:
        out = f"{type(e).__name__}: {e}"
    out = scrub(out)
    return out[:200] + ("..." if len(out) > 200 else "")


def parse_completion(content: bytes, n: int) -> tuple[list[tuple[str, Optional[str]]], Optional[tuple[int, int]], Optional[str]]:
    """A chat-completions answer -> ([(text, finish_reason)] in choice order (at most n),
    (prompt_tokens, completion_tokens) or None when the endpoint reports no usage, response id).
    Raises ValueError when it is not a chat completion."""
    try:
        data = json.loads(content)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"the answer is not JSON ({e})") from None
    choices = data.get("choices") if isinstance(data, dict) else None
    if not isinstance(choices, list):
        raise ValueError("the answer has no 'choices' list")
    items = [(c.get("index") if isinstance(c.get("index"), int) else i, c)
             for i, c in enumerate(choices) if isinstance(c, dict)]
    texts = []
    for _, c in sorted(items, key=lambda ic: ic[0]):
        msg = c.get("message") if isinstance(c.get("message"), dict) else {}
        text = msg.get("content")
        texts.append((text if isinstance(text, str) else "", c.get("finish_reason")))
    u = data.get("usage")
    usage = None
    if isinstance(u, dict) and isinstance(u.get("prompt_tokens"), int):
        usage = (u["prompt_tokens"], u.get("completion_tokens") if isinstance(u.get("completion_tokens"), int) else 0)
    rid = data.get("id")
    return texts[:n], usage, rid if isinstance(rid, str) else None


def http_client(event_hooks: dict):
    """The SDK's aiohttp transport (``openai[aiohttp]``) when aiohttp is installed: about a third less
    CPU per request than its default httpx2 transport, which matters at high concurrency on a small
    machine (benchmarks/bench_teacher.py). ``MM_TEACHER_HTTP=httpx`` forces the default."""
    import openai

    if os.environ.get("MM_TEACHER_HTTP", "").lower() != "httpx":
        try:
            import aiohttp  # noqa: F401

            return openai.DefaultAioHttpClient(event_hooks=event_hooks)
        except (ImportError, RuntimeError):  # not installed, or too old for the SDK's adapter
            pass
    return openai.DefaultAsyncHttpxClient(event_hooks=event_hooks)


# --------------------------------------------------------------------------- planning
@dataclass
class Group:
    """One prompt and the samples wanted of it (identical prompts share one group)."""

    key: str
    kind: str
    messages: list
    p_hash: str
    params: dict
    want: int
    prompt_tokens: int
    have: dict = field(default_factory=dict)  # sample index -> journal Sample

    def missing(self) -> list[int]:
        return [i for i in range(self.want) if i not in self.have]

    def cached(self) -> int:
        return sum(1 for i in self.have if i < self.want)


def slot_of(ex: dict) -> tuple:
    """A unique key of an example (ids are text hashes, so duplicated questions share an id)."""
    return ex["origin"], ex["index"]


class Planner:
    """Prompts and sample slots. Identical prompts share one group, and each occurrence takes its
    own range of sample indices (a duplicated question, or two identical CoTs of one question, get
    independent samples, as if asked separately), in the examples' order."""

    def __init__(self, task: Task, teacher: OpenAITeacher, endpoint: str):
        self.task, self.teacher, self.endpoint = task, teacher, endpoint
        self.cot_tmpl = load_template(task.name, "cot")
        self.se_tmpl = load_template(task.name, "self_eval") if teacher.self_evals else None

    def params(self, tmpl: Template) -> dict:
        p = {"temperature": self.teacher.temperature, "max_tokens": self.teacher.max_tokens}
        if tmpl.stop:
            p["stop"] = list(tmpl.stop)
        return p

    def slot(self, tmpl: Template, values: dict, want: int, groups: dict) -> tuple[Group, int]:
        """-> (group of the rendered prompt, first sample index of this occurrence)"""
        messages = tmpl.messages(values)
        ph = prompt_hash(messages)
        params = self.params(tmpl)
        key = group_key(self.endpoint, self.teacher.model, ph, params)
        g = groups.get(key)
        if g is None:
            g = groups[key] = Group(key, tmpl.kind, messages, ph, params, 0,
                                    message_tokens(messages, self.teacher.model))
        offset = g.want
        g.want += want
        return g, offset

    def cot_slots(self, examples: list[dict]) -> tuple[dict[str, Group], dict[tuple, tuple[Group, int]]]:
        """-> (groups by key, (group, offset) of each example of ``teacher.splits``)"""
        groups: dict[str, Group] = {}
        of: dict[tuple, tuple[Group, int]] = {}
        for ex in examples:
            if ex["split"] in self.teacher.splits:
                of[slot_of(ex)] = self.slot(self.cot_tmpl, example_values(self.task, ex), self.teacher.cots, groups)
        return groups, of

    def self_eval_slots(self, examples: list[dict], cot_of: dict):
        """-> (groups by key, (group, offset) of each (example, CoT index), CoTs skipped as unparseable).
        Only CoTs already answered are planned."""
        groups: dict[str, Group] = {}
        of: dict[tuple, tuple[Group, int]] = {}
        skipped = 0
        if not self.se_tmpl:
            return groups, of, skipped
        for ex in examples:
            if ex["split"] not in self.teacher.self_eval_splits or slot_of(ex) not in cot_of:
                continue
            cg, off = cot_of[slot_of(ex)]
            for i in range(self.teacher.cots):
                s = cg.have.get(off + i)
                if s is None:
                    continue
                if not self.task.parse_answer(s.text, ex, mode="strict").ok:
                    skipped += 1
                    continue
                values = {**example_values(self.task, ex), "cot": cot_for_evaluation(self.task, s.text)}
                of[(slot_of(ex), i)] = self.slot(self.se_tmpl, values, self.teacher.self_evals, groups)
        return groups, of, skipped


def _load_cached(journal: Optional[Journal], groups: dict[str, Group]) -> None:
    if journal is None:
        return
    found = journal.samples(groups)
    for key, g in groups.items():
        g.have = found.get(key, {})


# --------------------------------------------------------------------------- sending
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
    """Sends the missing samples of groups with bounded concurrency; one journal commit per response."""

    def __init__(self, teacher: OpenAITeacher, journal: Journal, endpoint: str, dataset: str):
        self.teacher, self.journal, self.endpoint, self.dataset = teacher, journal, endpoint, dataset
        self.stats = RunStats()
        self.limiter = RateLimiter(teacher.requests_per_minute, teacher.tokens_per_minute)
        self.n_supported: Optional[bool] = journal.n_supported(endpoint, teacher.model)
        self.stop_reason: Optional[str] = None
        self.budget_hit = False
        self.last_error: Optional[str] = None
        self.consecutive_failures = 0
        self.max_consecutive_failures = max(5, 2 * teacher.concurrency)
        self.reserved_usd = 0.0
        self.inflight = 0
        self.pbar = None

    # ------------------------------------------------------------------ client
    def _client(self):
        import openai

        async def on_request(request):
            self.stats.http_attempts += 1

        async def on_response(response):
            if response.status_code == 429:
                self.stats.rate_limited += 1

        hooks = {"request": [on_request], "response": [on_response]}
        # key and base URL from OPENAI_API_KEY / OPENAI_BASE_URL; retries and timeouts by the client
        return openai.AsyncOpenAI(timeout=self.teacher.timeout_s, max_retries=self.teacher.max_retries,
                                  http_client=http_client(hooks))

    def batch_size(self, missing: int) -> int:
        mode = self.teacher.use_n
        if mode == "never" or (mode == "auto" and self.n_supported is False):
            return 1
        return min(missing, MAX_N)

    def _set_n_supported(self, value: bool) -> None:
        if self.n_supported is not value:
            self.n_supported = value
            self.journal.set_n_supported(self.endpoint, self.teacher.model, value)

    # ------------------------------------------------------------------ phases
    def run(self, groups: list[Group], desc: str) -> None:
        queue = deque((g, g.missing()) for g in groups)
        queue = deque(item for item in queue if item[1])
        total = sum(len(m) for _, m in queue)
        if not total or self.stop_reason:
            return
        from tqdm import tqdm

        with tqdm(total=total, desc=f"teach {self.dataset}: {desc}", unit="sample", file=sys.stderr,
                  mininterval=0.5, dynamic_ncols=True) as self.pbar:
            asyncio.run(self._run(queue, total))

    async def _run(self, queue: deque, total: int) -> None:
        client = self._client()
        n = min(self.teacher.concurrency, total)
        step = min(RAMP_STEP_S, RAMP_MAX_S / n)
        try:
            await asyncio.gather(*(self._worker(client, queue, k * step) for k in range(n)))
        finally:
            await client.close()

    async def _worker(self, client, queue: deque, start_after: float) -> None:
        # Workers start a few ms apart: no burst of `concurrency` connections at once, and requests
        # stay spread out instead of travelling in waves that queue up in this process.
        await asyncio.sleep(start_after)
        t = self.teacher
        while self.stop_reason is None:
            if not queue:
                if not self.inflight:
                    return
                await asyncio.sleep(0.02)  # a request in flight may hand back samples (n fallback)
                continue
            g, missing = queue.popleft()
            take = missing[: self.batch_size(len(missing))]
            if len(take) < len(missing):
                queue.appendleft((g, missing[len(take):]))
            est_usd = cost_usd(t, g.prompt_tokens, t.max_tokens * len(take))  # upper bound: max_tokens
            if t.budget_usd is not None and self.stats.cost_usd + self.reserved_usd + est_usd > t.budget_usd:
                self.budget_hit = True
                self.stop_reason = f"budget_usd ${t.budget_usd:g} reached"
                return
            self.reserved_usd += est_usd
            self.inflight += 1
            try:
                await self.limiter.acquire(g.prompt_tokens + t.max_tokens * len(take))
                if self.stop_reason is None:
                    await self._send(client, g, take, queue)
            finally:
                self.inflight -= 1
                self.reserved_usd -= est_usd

    async def _send(self, client, g: Group, take: list[int], queue: deque) -> None:
        import httpx2
        import openai

        t = self.teacher
        n = len(take)
        body = {"model": t.model, "messages": g.messages, **g.params}
        if n > 1 or t.use_n == "always":
            body["n"] = n
        t0 = time.perf_counter()
        try:
            # The client's generic POST, with its retries, timeout, auth and error types, sending the
            # body built here and handing back the raw answer: `chat.completions.create` re-validates
            # the params and builds a typed model, ~1 ms of CPU per call, which caps the request rate
            # at high concurrency on a small machine.
            raw = await client.post("/chat/completions", body=body, cast_to=httpx2.Response)
            texts, usage, response_id = parse_completion(raw.content, n)
        except (openai.BadRequestError, openai.UnprocessableEntityError) as e:
            if n > 1 and t.use_n == "auto":  # the endpoint rejects n: one request per sample from now on
                self._set_n_supported(False)
                queue.appendleft((g, take))
                return
            self._failure(e)
            return
        except (openai.AuthenticationError, openai.PermissionDeniedError, openai.NotFoundError) as e:
            self._failure(e)
            self.stop_reason = "the endpoint refused the request"
            return
        except (openai.APIError, ValueError) as e:  # after the client's own retries; or not a completion
            self._failure(e)
            return
        latency = time.perf_counter() - t0
        if not texts:
            self._failure(ValueError("the endpoint returned no choices"))
            return
        if usage is not None:
            (pt, ct), estimated = usage, False
        else:
            pt = g.prompt_tokens
            ct = sum(count_tokens(x, t.model) for x, _ in texts)
            estimated = True
        cost = cost_usd(t, pt, ct)
        got = take[: len(texts)]
        self.journal.record(endpoint=self.endpoint, model=t.model, kind=g.kind, group=g.key, p_hash=g.p_hash,
                            params=g.params, indices=got, texts=texts, n_asked=n, prompt_tokens=pt,
                            completion_tokens=ct, usage_estimated=estimated, cost_usd=cost,
                            response_id=response_id, latency_s=latency)
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
        if self.consecutive_failures >= self.max_consecutive_failures and self.stop_reason is None:
            self.stop_reason = f"stopped after {self.consecutive_failures} consecutive failures"

    # ------------------------------------------------------------------ outcome
    def check(self, groups: list[Group], journal_file: Path) -> None:
        missing = sum(len(g.missing()) for g in groups)
        if not missing:
            return
        s, t = self.stats, self.teacher
        kept = f"responses so far are kept in {journal_file}"
        if self.budget_hit:
            raise PipelineError(
                f"teacher stopped: {self.stop_reason} (${s.cost_usd:.4f} spent by {s.requests} requests this run, "
                f"next request could cost up to ${cost_usd(t, 0, t.max_tokens):.4f}+); {s.failed} failed; "
                f"{missing} samples still missing; {kept}; raise budget_usd or rerun to continue "
                "(cached responses cost nothing)")
        why = f"; {self.stop_reason}" if self.stop_reason else ""
        last = f" (last error: {self.last_error})" if self.last_error else ""
        raise PipelineError(
            f"teacher requests failed: {s.requests} succeeded, {s.failed} failed after the client's retries "
            f"(max_retries {t.max_retries}, timeout_s {t.timeout_s:g}){last}{why}; {missing} samples missing; "
            f"{kept}; rerun to send only the missing ones")


# --------------------------------------------------------------------------- the stage's entry point
def generate(dataset: str, task: Task, teacher: OpenAITeacher,
             examples_by_origin: dict[str, list[dict]]) -> tuple[dict[str, list[dict]], dict[str, int], dict]:
    """Teacher records for ``examples_by_origin`` (aligned with it), unmatched counts (all zero), and
    the ``usage`` metrics."""
    endpoint = endpoint_url()
    planner = Planner(task, teacher, endpoint)
    examples = [ex for exs in examples_by_origin.values() for ex in exs]
    jpath = journal_path(teacher)
    with Journal(jpath) as journal:
        sender = Sender(teacher, journal, endpoint, dataset)
        cot_groups, cot_of = planner.cot_slots(examples)
        _load_cached(journal, cot_groups)
        cached = {(g.key, i) for g in cot_groups.values() for i in g.have}
        _ensure_key(cot_groups.values())
        sender.run(list(cot_groups.values()), "CoTs")
        sender.check(list(cot_groups.values()), jpath)

        se_groups, se_of, skipped = planner.self_eval_slots(examples, cot_of)
        _load_cached(journal, se_groups)
        cached |= {(g.key, i) for g in se_groups.values() for i in g.have}
        _ensure_key(se_groups.values())
        sender.run(list(se_groups.values()), "self-evaluations")
        sender.check(list(se_groups.values()), jpath)

        records, quarantine, used = _assemble(task, teacher, examples_by_origin, cot_of, se_of)
        final = journal.samples(list(cot_groups) + list(se_groups))
        total = journal.usage({final[g.key][i].request_id for g, i in used})

    from ..stages.common import TEACHER

    write_jsonl(TEACHER / dataset / "quarantine.jsonl", quarantine, None)
    s = sender.stats
    usage = {
        "model": teacher.model,
        "endpoint": endpoint,
        "prompts": {t.label.rsplit("@", 1)[0]: t.version for t in (planner.cot_tmpl, planner.se_tmpl) if t},
        "n_per_request": sender.n_supported if teacher.use_n == "auto" else teacher.use_n == "always",
        "samples": len(used),
        "cached_samples": sum((g.key, i) in cached for g, i in used),
        "requests": s.requests,
        "http_attempts": s.http_attempts,
        "rate_limited": s.rate_limited,
        "prompt_tokens": s.prompt_tokens,
        "completion_tokens": s.completion_tokens,
        "cost_usd": round(s.cost_usd, 6),
        "total_requests": total["requests"],
        "total_prompt_tokens": total["prompt_tokens"],
        "total_completion_tokens": total["completion_tokens"],
        "total_cost_usd": round(total["cost_usd"], 6),
        "quarantined": {"cot": sum(q["kind"] == "cot" for q in quarantine),
                        "self_eval": sum(q["kind"] == "self_eval" for q in quarantine)},
        "skipped_self_evals": skipped,
    }
    return records, {split: 0 for split in examples_by_origin}, {"usage": usage}


def _ensure_key(groups) -> None:
    missing = sum(len(g.missing()) for g in groups)
    if missing and not os.environ.get("OPENAI_API_KEY"):
        raise PipelineError(f"OPENAI_API_KEY is not set ({missing} samples to request): the openai teacher "
                            "reads its key from the environment only")


def _assemble(task: Task, teacher: OpenAITeacher, examples_by_origin: dict, cot_of: dict, se_of: dict):
    """Records from the journal samples; quarantine rows for outputs without an answer or verdict;
    the (group, sample index) of every output used."""
    records: dict[str, list[dict]] = {}
    quarantine: list[dict] = []
    used: list[tuple[Group, int]] = []
    for origin, exs in examples_by_origin.items():
        recs = records[origin] = []
        for ex in exs:
            rec = empty_record(ex)
            recs.append(rec)
            if slot_of(ex) not in cot_of:
                continue
            cg, coff = cot_of[slot_of(ex)]
            for i in range(teacher.cots):
                used.append((cg, coff + i))
                evals = []
                sg, soff = se_of.get((slot_of(ex), i), (None, 0))
                if sg is not None:
                    evals = [sg.have[soff + j].text for j in range(teacher.self_evals)]
                    used += [(sg, soff + j) for j in range(teacher.self_evals)]
                cot = make_cot(task, cg.have[coff + i].text, ex, source=teacher.model, mode="strict",
                               evaluations=evals)
                rec["cots"].append(cot)
                base = {"id": ex["id"], "split": ex["split"], "cot_index": i}
                if cot["status"] != "ok":
                    quarantine.append({**base, "kind": "cot", "eval_index": None, "status": cot["status"],
                                       "reason": cot["reason"], "text": cot["text"], "group_key": cg.key,
                                       "sample": coff + i})
                for j, e in enumerate(cot["evaluations"]):
                    if e["status"] != "ok":
                        quarantine.append({**base, "kind": "self_eval", "eval_index": j, "status": e["status"],
                                           "reason": "no 'Evaluation result: the given answer is ...' line",
                                           "text": e["text"], "group_key": sg.key, "sample": soff + j})
    return records, quarantine, used


# --------------------------------------------------------------------------- estimate
def estimate(params: Params, dataset: str) -> None:
    """Print the requests, tokens and cost the teach stage would send now (nothing is sent)."""
    from ..stages.common import PREPARED, dataset_spec, read_prepared
    from ..tasks import get_task

    spec = dataset_spec(params, dataset)
    t = spec.teacher
    if not isinstance(t, OpenAITeacher):
        raise PipelineError(f"datasets.{dataset}.teacher.backend is {t.backend!r}: estimate is for the openai backend")
    task = get_task(spec.task)
    if not (PREPARED / dataset).is_dir():
        raise PipelineError(f"{PREPARED / dataset}: not found; run `python -m pipeline prepare --dataset {dataset}` first")
    prepared = read_prepared(dataset)
    by_origin: dict[str, list[dict]] = {}  # the order the teach stage plans in
    for split in SPLITS:
        for ex in prepared[split]:
            by_origin.setdefault(ex["origin"], []).append(ex)
    examples = [ex for exs in by_origin.values() for ex in sorted(exs, key=lambda e: e["index"])]
    endpoint = endpoint_url()
    planner = Planner(task, t, endpoint)
    jpath = journal_path(t)
    journal = Journal(jpath) if jpath.exists() else None
    try:
        cot_groups, cot_of = planner.cot_slots(examples)
        _load_cached(journal, cot_groups)
        se_groups, se_of, skipped = planner.self_eval_slots(examples, cot_of)
        _load_cached(journal, se_groups)
        n_ok = journal.n_supported(endpoint, t.model) if journal else None
        mean_cot = journal.mean_completion_tokens(endpoint, t.model, "cot") if journal else None
        mean_se = journal.mean_completion_tokens(endpoint, t.model, "self_eval") if journal else None
        groups = list(cot_groups.values()) + list(se_groups.values())
        spent = journal.usage({s.request_id for g in groups for s in g.have.values()}) if journal else \
            {"requests": 0, "cost_usd": 0.0}
    finally:
        if journal:
            journal.close()

    use_n = t.use_n != "never" and not (t.use_n == "auto" and n_ok is False)

    def n_requests(missing: int) -> int:
        return math.ceil(missing / MAX_N) if use_n else missing

    cot_missing = [len(g.missing()) for g in cot_groups.values()]
    cot_prompt = sum(g.prompt_tokens * n_requests(m) for g, m in zip(cot_groups.values(), cot_missing))
    se_missing = [len(g.missing()) for g in se_groups.values()]
    se_prompt = sum(g.prompt_tokens * n_requests(m) for g, m in zip(se_groups.values(), se_missing))
    # self-evaluations of CoTs not answered yet: assumed parseable, as long as the mean cached CoT
    # (or max_tokens when nothing is cached)
    future = 0
    if planner.se_tmpl:
        cot_len = int(mean_cot if mean_cot is not None else t.max_tokens)
        for ex in examples:
            if ex["split"] not in t.self_eval_splits or slot_of(ex) not in cot_of:
                continue
            cg, off = cot_of[slot_of(ex)]
            k_missing = sum(1 for i in range(t.cots) if off + i not in cg.have)
            if k_missing:
                future += k_missing
                empty = planner.se_tmpl.messages({**example_values(task, ex), "cot": ""})
                se_prompt += k_missing * (message_tokens(empty, t.model) + cot_len) * n_requests(t.self_evals)
    se_missing += [t.self_evals] * future

    n_cot, n_se = sum(cot_missing), sum(se_missing)
    req_cot = sum(n_requests(m) for m in cot_missing if m)
    req_se = sum(n_requests(m) for m in se_missing if m)
    prompt_tokens = cot_prompt + se_prompt
    completion_max = (n_cot + n_se) * t.max_tokens
    q_by_split = {s: sum(1 for ex in examples if ex["split"] == s and slot_of(ex) in cot_of) for s in SPLITS}
    cached_cot = sum(g.cached() for g in cot_groups.values())
    cached_se = sum(g.cached() for g in se_groups.values())

    print(f"estimate {dataset}: {t.model} at {endpoint}; questions with CoTs: "
          f"{', '.join(f'{s} {n}' for s, n in q_by_split.items() if n) or 'none'}; k={t.cots} CoTs, "
          f"m={t.self_evals} self-evaluations per CoT ({', '.join(t.self_eval_splits) or 'no'} splits)")
    print(f"  CoTs:             to send {req_cot} requests for {n_cot} samples "
          f"({cached_cot} of {sum(g.want for g in cot_groups.values())} cached)")
    print(f"  self-evaluations: to send {req_se} requests for {n_se} samples ({cached_se} cached; "
          f"{future} CoTs not answered yet, assumed parseable; {skipped} unparseable CoTs skipped)")
    note = "" if use_n else " (one request per sample)"
    if t.use_n == "auto" and n_ok is None and req_cot + req_se:
        note = f" (with n per request; {n_cot + n_se} if the endpoint ignores n)"
    print(f"  requests:         {req_cot + req_se}{note}")
    print(f"  prompt tokens:    ~{prompt_tokens:,} ({token_method(t.model)})")
    exp_line = exp_cost = ""
    if mean_cot is not None or mean_se is not None:
        expected = n_cot * (mean_cot or t.max_tokens) + n_se * (mean_se or t.max_tokens)
        exp_line = f"; ~{int(expected):,} at the mean length of cached responses"
        exp_cost = f"; ~${cost_usd(t, prompt_tokens, expected):.4f} expected"
    print(f"  completion tokens: <= {completion_max:,} (max_tokens {t.max_tokens} per sample){exp_line}")
    print(f"  cost:             <= ${cost_usd(t, prompt_tokens, completion_max):.4f} (input "
          f"${cost_usd(t, prompt_tokens, 0):.4f} + output <= ${cost_usd(t, 0, completion_max):.4f} at "
          f"${t.price_per_1m_input:g}/${t.price_per_1m_output:g} per 1M tokens){exp_cost}")
    print(f"  already cached:   {cached_cot + cached_se} samples from {spent['requests']} requests "
          f"(${spent['cost_usd']:.4f} spent); budget_usd: {'none' if t.budget_usd is None else f'${t.budget_usd:g}'}")
