"""The backend's entry point for the teach stage: ``generate`` returns the teacher records, the
quarantine rows (outputs without a parseable answer or verdict) and the ``usage`` metrics. It writes
no file: the stage writes every artifact. A phase that stops before it has every sample raises
``TeacherStopped``, whose ``usage`` is built from what was spent (outcome.py)."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from ...core.errors import PipelineError
from ...core.spec import OpenAITeacher
from ...core.records import Example
from ...tasks import Task
from ..common import empty_record, make_cot
from ..journal import Journal, journal_path, sum_usage
from .budget import Budget
from .endpoint import endpoint_url, ensure_key, who
from .outcome import TeacherStopped
from .plan import MAX_N, Group, Planner, load_cached, missing_samples, slot_of
from . import batch_store
from .batch import BatchSender
from .batch_records import export_requests, import_output
from .sender import Sender


@dataclass
class TeacherOutput:
    records: dict[str, list[dict]]  # by origin split, aligned with the examples
    usage: dict  # the ``usage`` entry of the teach metrics
    quarantine: list[dict] = field(default_factory=list)  # rows of data/teacher/<dataset>/quarantine.jsonl


def generate(dataset: str, task: Task, teacher: OpenAITeacher, examples_by_origin: dict[str, list[Example]],
             name: str = "teacher") -> TeacherOutput:
    """k CoTs per question of ``teacher.splits``, then m self-evaluations of each parseable CoT of the
    ``self_eval_splits`` questions: from the journal where it has them, from the endpoint otherwise.

    ``name`` is the teacher's name in params (``teachers.<name>``), used in every line the user reads.
    Raises ``PipelineError`` when nothing can be sent (no key, no connection, a model the endpoint's
    model list lacks, a refused key) and ``TeacherStopped`` (with ``.usage``) when a phase stops after
    it began sending (``budget_usd``, a 4xx answer, a lost connection, repeated failures)."""
    endpoint = endpoint_url(teacher)
    planner = Planner(task, teacher, endpoint)
    examples = [ex for exs in examples_by_origin.values() for ex in exs]
    jpath = journal_path(teacher.journal)
    with Journal(jpath) as journal:
        budget = Budget.from_journal(teacher, journal, endpoint)
        sender = (BatchSender if teacher.mode == "batch" else Sender)(teacher, journal, endpoint, dataset, budget, name=name)
        cot_groups, cot_of = planner.cot_slots(examples)
        load_cached(journal, cot_groups)
        cached = {(g.key, i) for g in cot_groups.values() for i in g.have}
        groups = list(cot_groups.values())
        skipped = 0

        def stop_if_incomplete(phase: list[Group]) -> None:
            message = sender.incomplete(phase, jpath)
            if message:
                raise TeacherStopped(message, _usage(planner, sender, journal, groups, cached, skipped=skipped,
                                                     stopped=sender.stop_reason or "samples missing"))

        ensure_key(teacher, missing_samples(cot_groups.values()), name)
        _no_open_batch(sender, groups)
        sender.run(groups, "CoTs")
        stop_if_incomplete(groups)

        se_groups, se_of, skipped = planner.self_eval_slots(examples, cot_of)
        load_cached(journal, se_groups)
        cached |= {(g.key, i) for g in se_groups.values() for i in g.have}
        groups += list(se_groups.values())
        ensure_key(teacher, missing_samples(se_groups.values()), name)
        _no_open_batch(sender, list(se_groups.values()))
        sender.run(list(se_groups.values()), "self-evaluations")
        stop_if_incomplete(list(se_groups.values()))

        records, quarantine, used = _assemble(task, teacher, examples_by_origin, cot_of, se_of)
        usage = _usage(planner, sender, journal, groups, cached, used, quarantine, skipped)
    return TeacherOutput(records, usage, quarantine)


def _no_open_batch(sender: Sender, groups: list[Group]) -> None:
    """Online, a phase whose batch (an earlier run in batch mode) is still open would pay twice: one line."""
    if isinstance(sender, BatchSender) or not groups or not missing_samples(groups):
        return
    batch_store.ensure(sender.journal)
    opened = batch_store.open_batches(sender.journal, sender.endpoint, sender.teacher.model,
                                      f"{sender.dataset}/{groups[0].kind}")
    if opened:
        raise PipelineError(f"{who(sender.teacher, sender.name)}: batch {opened[0][0]} of these requests is still open "
                            f"(an earlier run in batch mode): set `mode: batch` under teachers.{sender.name} to follow it "
                            "to the end; online, its answers would be paid twice")


def _usage(planner: Planner, sender: Sender, journal: Journal, groups: list[Group], cached: set,
           used: Optional[list[tuple[Group, int]]] = None, quarantine: list[dict] = (), skipped: int = 0,
           stopped: Optional[str] = None) -> dict:
    """The ``usage`` entry of the teach metrics (``TeacherUsage``). ``used``: the (group, sample) of
    every output in the records; None (a stopped run): every planned sample the journal holds."""
    teacher, budget, s = sender.teacher, sender.budget, sender.stats
    if used is None:
        used = [(g, i) for g in groups for i in range(g.want) if i in g.have]
    final = journal.samples(g.key for g in groups)
    ids = {final[g.key][i].request_id for g, i in used if i in final.get(g.key, {})}
    kinds = journal.usage_by_kind(ids)
    total = sum_usage(kinds)  # one pass over the journal for both
    for kind, u in kinds.items():
        u["samples"] = sum(g.kind == kind for g, _ in used)
        u["cost_usd"] = round(u["cost_usd"], 6)
    uncertain = journal.uncertain(sender.endpoint, teacher.model)
    return {
        "model": teacher.model,
        "endpoint": sender.endpoint,
        "prompts": planner.templates(),
        "n_per_request": sender.n_supported if teacher.use_n == "auto" else teacher.use_n == "always",
        "model_check": sender.model_check,
        "snapshots": journal.snapshots(ids),
        "samples": len(used),
        "cached_samples": sum((g.key, i) in cached for g, i in used),
        "requests": s.requests,
        "http_attempts": s.http_attempts,
        "rate_limited": s.rate_limited,
        "prompt_tokens": s.prompt_tokens,
        "completion_tokens": s.completion_tokens,
        "cost_usd": round(s.cost_usd, 6),
        "uncertain_usd": round(uncertain["cost_usd"], 6),
        "uncertain_requests": uncertain["requests"],
        "total_requests": total["requests"],
        "total_prompt_tokens": total["prompt_tokens"],
        "total_completion_tokens": total["completion_tokens"],
        "total_cost_usd": round(total["cost_usd"], 6),
        "by_kind": dict(sorted(kinds.items())),
        "budget": budget.metrics(),
        "quarantined": {"cot": sum(q["kind"] == "cot" for q in quarantine),
                        "self_eval": sum(q["kind"] == "self_eval" for q in quarantine)},
        "skipped_self_evals": skipped,
        "stopped": stopped,
        "batch": {"mode": teacher.mode, "price_factor": teacher.batch_price_factor, **sender.batch}
        if isinstance(sender, BatchSender) else None,
    }


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


def batch_files(dataset: str, task: Task, teacher: OpenAITeacher, examples_by_origin: dict[str, list[Example]],
                name: str, export: Optional[Path] = None, import_: Optional[Path] = None) -> list[str]:
    """The Batch API's files, offline: ``export`` writes the request file of the first phase with missing
    samples (the CoTs; once they are all in, the self-evaluations of the parseable ones), ``import_`` records
    an output file of that format in the journal. Sends nothing; then the teach stage reads the journal."""
    endpoint = endpoint_url(teacher)
    planner = Planner(task, teacher, endpoint)
    examples = [ex for exs in examples_by_origin.values() for ex in exs]
    jpath = journal_path(teacher.journal)
    out = []
    with Journal(jpath) as journal:
        sender = BatchSender(teacher, journal, endpoint, dataset, Budget.from_journal(teacher, journal, endpoint), name=name)

        def phase() -> tuple[str, list[Group]]:  # the first phase with missing samples (or the last one)
            cot_groups, cot_of = planner.cot_slots(examples)
            load_cached(journal, cot_groups)
            if missing_samples(cot_groups.values()) or not teacher.self_evals:
                return "CoTs", list(cot_groups.values())
            se_groups, _, _ = planner.self_eval_slots(examples, cot_of)
            load_cached(journal, se_groups)
            return "self-evaluations", list(se_groups.values())

        name_, groups = phase()
        if import_ is not None:
            c = import_output(sender, groups, import_.read_text(encoding="utf-8").splitlines(), import_.name)
            out.append(f"imported {import_}: {c['recorded']} lines recorded, {c['failed']} failed, {c['quarantined']} "
                       f"quarantined (custom_id not a missing {name_} request of this teacher); {sender.stats.samples} "
                       f"{name_} samples, ${sender.stats.cost_usd:.4f} at the prices in params")
            name_, groups = phase()
        missing = missing_samples(groups)
        if export is not None:
            if missing:
                n = export_requests(teacher, groups, export, sender.batch_size(MAX_N))
                out.append(f"exported {export}: {n} requests for {missing} missing {name_} samples (OpenAI batch format)")
            else:
                out.append(f"nothing to export: every {name_} sample is in {jpath}")
        out.append(f"{name} on {dataset}: {missing} {name_} samples missing (import their output, then export again)"
                   if missing else f"{name} on {dataset}: every sample is in the journal: run the teach stage")
    return out
