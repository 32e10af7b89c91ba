"""The backend's entry point for the teach stage: ``generate`` returns the teacher records, the
quarantine rows (outputs without a parseable answer or verdict) and the ``usage`` metrics. It writes
no file: the stage writes every artifact."""
from __future__ import annotations

from dataclasses import dataclass, field

from ...core.spec import OpenAITeacher
from ...core.records import Example
from ...tasks import Task
from ..common import empty_record, make_cot
from ..journal import Journal, journal_path
from .budget import Budget
from .endpoint import endpoint_url, ensure_key
from .plan import Group, Planner, load_cached, missing_samples, slot_of
from .sender import Sender


@dataclass
class TeacherOutput:
    records: dict[str, list[dict]]  # by origin split, aligned with the examples
    usage: dict  # the ``usage`` entry of the teach metrics
    quarantine: list[dict] = field(default_factory=list)  # rows of data/teacher/<dataset>/quarantine.jsonl


def generate(dataset: str, task: Task, teacher: OpenAITeacher,
             examples_by_origin: dict[str, list[Example]]) -> TeacherOutput:
    """k CoTs per question of ``teacher.splits``, then m self-evaluations of each parseable CoT of the
    ``self_eval_splits`` questions: from the journal where it has them, from the endpoint otherwise."""
    endpoint = endpoint_url()
    planner = Planner(task, teacher, endpoint)
    examples = [ex for exs in examples_by_origin.values() for ex in exs]
    jpath = journal_path(teacher.journal)
    with Journal(jpath) as journal:
        budget = Budget(teacher, journal.spent(endpoint, teacher.model)["cost_usd"])
        sender = Sender(teacher, journal, endpoint, dataset, budget)
        cot_groups, cot_of = planner.cot_slots(examples)
        load_cached(journal, cot_groups)
        cached = {(g.key, i) for g in cot_groups.values() for i in g.have}
        ensure_key(missing_samples(cot_groups.values()))
        sender.run(list(cot_groups.values()), "CoTs")
        sender.raise_if_incomplete(list(cot_groups.values()), jpath)

        se_groups, se_of, skipped = planner.self_eval_slots(examples, cot_of)
        load_cached(journal, se_groups)
        cached |= {(g.key, i) for g in se_groups.values() for i in g.have}
        ensure_key(missing_samples(se_groups.values()))
        sender.run(list(se_groups.values()), "self-evaluations")
        sender.raise_if_incomplete(list(se_groups.values()), jpath)

        records, quarantine, used = _assemble(task, teacher, examples_by_origin, cot_of, se_of)
        final = journal.samples(list(cot_groups) + list(se_groups))
        total = journal.usage({final[g.key][i].request_id for g, i in used})

    s = sender.stats
    usage = {
        "model": teacher.model,
        "endpoint": endpoint,
        "prompts": planner.templates(),
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
        "budget": budget.metrics(),
        "quarantined": {"cot": sum(q["kind"] == "cot" for q in quarantine),
                        "self_eval": sum(q["kind"] == "self_eval" for q in quarantine)},
        "skipped_self_evals": skipped,
    }
    return TeacherOutput(records, usage, quarantine)


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
                base = {"id": ex.id, "split": ex.split, "cot_index": i}
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
