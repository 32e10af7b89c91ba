"""What the teach stage would send now, before anything is sent: requests, tokens, cost, and the
budget left (``python -m pipeline estimate --dataset D``). Reads the journal and, when the teacher's
key is set, the endpoint's model list (free: ``GET /models``); sends no completion and creates nothing."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

from ...core.spec import SPLITS, OpenAITeacher
from ...core.records import Example
from ...tasks import Task
from ..journal import Journal, journal_path
from ..prompts import example_values
from .budget import cost_usd
from .endpoint import endpoint_url
from .models import estimate_check
from .plan import MAX_N, Planner, load_cached, slot_of
from .tokens import message_tokens, token_method


@dataclass
class Estimate:
    """What the teach stage would send for one (dataset, teacher): requests, samples and tokens, and what the
    journal already holds (``use_journal=False``: nothing, i.e. the whole bill from scratch)."""

    questions: dict[str, int]  # split -> questions with CoTs
    req_cot: int
    req_se: int
    n_cot: int  # samples to send
    n_se: int
    prompt_tokens: int
    completion_max: int
    mean_cot: Optional[float]
    mean_se: Optional[float]
    cached_cot: int
    cached_se: int
    want_cot: int
    future: int  # CoTs not answered yet whose self-evaluations are counted as if parseable
    skipped: int
    use_n: bool
    n_ok: Optional[bool]
    spent: dict
    spent_all: float
    uncertain: dict
    teacher: OpenAITeacher

    @property
    def requests(self) -> int:
        return self.req_cot + self.req_se

    @property
    def samples(self) -> int:
        return self.n_cot + self.n_se

    @property
    def usd_max(self) -> float:
        """The cost if every sample ran to max_tokens."""
        return cost_usd(self.teacher, self.prompt_tokens, self.completion_max)


def estimate(task: Task, t: OpenAITeacher, examples_by_origin: dict[str, list[Example]], use_journal: bool = True) -> Estimate:
    """The numbers of the estimate (``use_journal=False``: as if nothing were cached or spent)."""
    examples = [ex for exs in examples_by_origin.values() for ex in exs]
    endpoint = endpoint_url(t)
    planner = Planner(task, t, endpoint)
    jpath = journal_path(t.journal)
    journal = Journal(jpath) if use_journal and jpath.exists() else None
    try:
        cot_groups, cot_of = planner.cot_slots(examples)
        load_cached(journal, cot_groups)
        se_groups, se_of, skipped = planner.self_eval_slots(examples, cot_of)
        load_cached(journal, se_groups)
        n_ok = journal.n_supported(endpoint, t.model) if journal else None
        mean_cot = journal.mean_completion_tokens(endpoint, t.model, "cot") if journal else None
        mean_se = journal.mean_completion_tokens(endpoint, t.model, "self_eval") if journal else None
        groups = list(cot_groups.values()) + list(se_groups.values())
        spent = journal.usage({s.request_id for g in groups for s in g.have.values()}) if journal else \
            {"requests": 0, "cost_usd": 0.0}
        spent_all = journal.spent(endpoint, t.model)["cost_usd"] if journal else 0.0
        uncertain = journal.uncertain(endpoint, t.model) if journal else {"requests": 0, "cost_usd": 0.0}
        spent_all += uncertain["cost_usd"]
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
            if ex.split not in t.self_eval_splits or slot_of(ex) not in cot_of:
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
    q_by_split = {s: sum(1 for ex in examples if ex.split == s and slot_of(ex) in cot_of) for s in SPLITS}
    cached_cot = sum(g.cached() for g in cot_groups.values())
    cached_se = sum(g.cached() for g in se_groups.values())

    return Estimate(q_by_split, req_cot, req_se, n_cot, n_se, prompt_tokens, completion_max, mean_cot, mean_se,
                    cached_cot, cached_se, sum(g.want for g in cot_groups.values()), future, skipped, use_n, n_ok, spent,
                    spent_all, uncertain, teacher=t)


def estimate_lines(dataset: str, task: Task, t: OpenAITeacher, examples_by_origin: dict[str, list[Example]],
                   name: str = "teacher") -> list[str]:
    """The estimate, as the lines the CLI prints. It never raises for the model check: when the
    endpoint's model list lacks ``t.model`` (or refuses the key), the FIRST line is a ``warning: ...``
    saying so and what to change (the estimate still prices the model, and the CLI exits 0); when the
    check cannot be made (no key, no connection, no model list), a ``model check:`` line says why."""
    e = estimate(task, t, examples_by_origin)
    endpoint = endpoint_url(t)
    warning, check_line = estimate_check(t, name, dataset)
    out = [f"estimate {dataset}: teacher {name}, {t.model} at {endpoint}; questions with CoTs: "
           f"{', '.join(f'{s} {n}' for s, n in e.questions.items() if n) or 'none'}; k={t.cots} CoTs, "
           f"m={t.self_evals} self-evaluations per CoT ({', '.join(t.self_eval_splits) or 'no'} splits)",
           f"  CoTs:             to send {e.req_cot} requests for {e.n_cot} samples "
           f"({e.cached_cot} of {e.want_cot} cached)",
           f"  self-evaluations: to send {e.req_se} requests for {e.n_se} samples ({e.cached_se} cached; "
           f"{e.future} CoTs not answered yet, assumed parseable; {e.skipped} unparseable CoTs skipped)"]
    note = "" if e.use_n else " (one request per sample)"
    if t.use_n == "auto" and e.n_ok is None and e.requests:
        note = f" (with n per request; {e.samples} if the endpoint ignores n)"
    out.append(check_line)
    out.append(f"  requests:         {e.requests}{note}")
    out.append(f"  prompt tokens:    ~{e.prompt_tokens:,} ({token_method(t.model)})")
    exp_line = exp_cost = ""
    if e.mean_cot is not None or e.mean_se is not None:
        expected = e.n_cot * (e.mean_cot or t.max_tokens) + e.n_se * (e.mean_se or t.max_tokens)
        exp_line = f"; ~{int(expected):,} at the mean length of cached responses"
        exp_cost = f"; ~${cost_usd(t, e.prompt_tokens, expected):.4f} expected"
    out.append(f"  completion tokens: <= {e.completion_max:,} (max_tokens {t.max_tokens} per sample){exp_line}")
    out.append(f"  cost:             <= ${cost_usd(t, e.prompt_tokens, e.completion_max):.4f} (input "
               f"${cost_usd(t, e.prompt_tokens, 0):.4f} + output <= ${cost_usd(t, 0, e.completion_max):.4f} at "
               f"${t.price_per_1m_input:g}/${t.price_per_1m_output:g} per 1M tokens"
               + (f", x{t.batch_price_factor:g} in batch mode" if t.mode == "batch" else "") + f"){exp_cost}")
    if t.budget_usd is None:
        cap = "none"
    else:
        cap = (f"${t.budget_usd:g} in all for {t.model} at this endpoint, ${e.spent_all:.4f} of it spent so far "
               f"(every dataset and run in the journal), ${max(0.0, t.budget_usd - e.spent_all):.4f} left")
    if e.uncertain["requests"]:
        cap += (f"; ${e.uncertain['cost_usd']:.4f} of the spend is uncertain ({e.uncertain['requests']} requests that may "
                "have been billed unseen, counted at their worst case)")
    out.append(f"  already cached:   {e.cached_cot + e.cached_se} samples from {e.spent['requests']} requests "
               f"(${e.spent['cost_usd']:.4f} spent); budget_usd: {cap}")
    return ([warning] if warning else []) + out
