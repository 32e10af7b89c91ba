"""assemble: the training rows of one assembly (dataset, teacher, labels, #CoTs k, #self-evaluations m;
shared by the runs that differ only in student, epochs or seed) (``TrainRow``, ``train_row.schema.json``), built from the
teacher's records (``TeacherRecord``) and the prepared examples (``Example``).

- ``stage2.jsonl`` (the CoT/label stage; the only stage of one-stage runs): for ``cots: 0`` one
  row per question with the gold or teacher label; for ``cots: k`` one row per usable CoT among the
  question's first k, with that CoT's rationale and its parsed answer (teacher labels) or the gold
  label. Test labels are always gold.
- ``stage1.jsonl`` (m > 0): for each of those k CoTs, its first m self-evaluations:
  input = the CoT (or question + CoT), label = the teacher's verdict, rationale = the evaluation
  text without the verdict line.
- ``valid.jsonl``: validation questions with gold labels, for checkpoint selection.
- ``stage1_valid.jsonl``: self-evaluation rows of validation questions, where the teacher evaluated
  them: held out to measure the stage-1 student's agreement with the teacher's verdicts.

``label_noise`` (the paper's third open question, degraded pseudo-labels): that share of the training
questions, drawn with ``assemble.noise_seed``, get a wrong answer of the same kind (the task's
``wrong_label``: a nearby wrong number, another choice, another label) on every stage-2 row; the
rationales stay as the teacher wrote them. The draw is a seeded order of the questions and a seeded wrong
answer per question, so a larger share replaces a superset with the same wrong answers. Counted in the
metrics.

Policy: a teacher output without a parseable answer (or an evaluation without a verdict) is
excluded and counted, never trained on with a blank target and never shifted onto another row.
"""
from __future__ import annotations

import random

from ..core.artifacts import read_records, write_model, write_records
from ..core.records import AssembleMetrics, Example, TeacherRecord, TrainRow
from ..runs import Assembly, Plan
from ..core.spec import NO_TEACHER, Params
from ..tasks import get_task, se_input
from ..core.stageio import ASSEMBLED, METRICS, TEACHER, dataset_spec, read_prepared


def se_rows(params: Params, rec: TeacherRecord, inp: str, m: Assembly) -> tuple[list[TrainRow], int]:
    """Stage-1 rows of one question: its first k CoTs that carry self-evaluations x their first m
    evaluations; evaluations without a verdict are dropped and counted."""
    rows, dropped = [], 0
    evaluated = [(j, c) for j, c in enumerate(rec.cots) if c.evaluations][: m.cots]
    for j, c in evaluated:
        for e_i, e in enumerate(c.evaluations[: m.self_evals]):
            if e.status != "ok" or not (e.explanation or "").strip():
                dropped += 1
                continue
            rows.append(TrainRow(id=rec.id, cot_index=j, eval_index=e_i,
                                 input=se_input(params.assemble.se_input, inp, c.text),
                                 label=e.verdict, rationale=e.explanation))
    return rows, dropped


def add_label_noise(task, rows: list[TrainRow], examples: dict[str, Example], share: float, seed: int,
                    ) -> tuple[list[TrainRow], int]:
    """``rows`` with the answers of ``share`` of their questions replaced by a wrong one; and how many questions."""
    if not share:
        return rows, 0
    ids = sorted({r.id for r in rows})
    random.Random(f"label-noise:{seed}").shuffle(ids)
    chosen = ids[: round(share * len(ids))]
    wrong = {i: task.wrong_label(examples[i], random.Random(f"label-noise:{seed}:{i}")) for i in chosen}
    return [r.model_copy(update={"label": wrong[r.id]}) if r.id in wrong else r for r in rows], len(chosen)


def build(params: Params, m: Assembly, teacher_train: list[TeacherRecord],
          examples: dict[str, list[Example]], teacher_valid: list[TeacherRecord] | None = None,
          ) -> tuple[dict[str, list[TrainRow]], AssembleMetrics]:
    spec = dataset_spec(params, m.dataset)
    task = get_task(spec.task)
    model_input = task.model_input
    ex_by_id = {ex.id: ex for ex in examples["train"]}
    stage1: list[TrainRow] = []
    stage2: list[TrainRow] = []
    excluded = excluded_evals = no_cots = 0
    for rec in teacher_train:
        ex = ex_by_id[rec.id]
        inp = model_input(ex)
        if m.cots == 0:
            if m.labels == "gold":
                stage2.append(TrainRow(id=ex.id, cot_index=None, input=inp, label=ex.label, rationale=None))
                continue
            if not rec.cots:
                no_cots += 1
                continue
            first = rec.cots[0]
            if first.status != "ok":
                excluded += 1
                continue
            stage2.append(TrainRow(id=ex.id, cot_index=0, input=inp, label=first.answer, rationale=None))
            continue
        cots = rec.cots[: m.cots]
        if not cots:
            no_cots += 1
        for j, c in enumerate(cots):
            if c.status != "ok" or not (c.rationale or "").strip():
                excluded += 1
                continue
            label = c.answer if m.labels == "teacher" else ex.label
            stage2.append(TrainRow(id=ex.id, cot_index=j, input=inp, label=label, rationale=c.rationale))
        if m.self_evals:
            rows, dropped = se_rows(params, rec, inp, m)
            stage1 += rows
            excluded_evals += dropped
    stage2_clean = stage2
    stage2, noised = add_label_noise(task, stage2, ex_by_id, m.label_noise, params.assemble.noise_seed)
    valid = [TrainRow(id=ex.id, cot_index=None, input=model_input(ex), label=ex.label, rationale=None)
             for ex in examples["valid"]]
    # held-out self-evaluations (validation questions the teacher also evaluated): stage-1 agreement
    stage1_valid: list[TrainRow] = []
    if m.self_evals:
        valid_by_id = {ex.id: ex for ex in examples["valid"]}
        for rec in teacher_valid or []:
            if rec.id in valid_by_id:
                stage1_valid += se_rows(params, rec, model_input(valid_by_id[rec.id]), m)[0]
    counts = AssembleMetrics(
        assembly=m.name, dataset=m.dataset, teacher=m.teacher, labels=m.labels, cots=m.cots, self_evals=m.self_evals,
        questions=len(teacher_train),
        stage2_rows=len(stage2), stage1_rows=len(stage1), valid_rows=len(valid), stage1_valid_rows=len(stage1_valid),
        excluded_unparseable=excluded, excluded_unparseable_evaluations=excluded_evals, questions_without_cots=no_cots,
        label_noise=m.label_noise, noised_questions=noised,
        noised_rows=sum(a.label != b.label for a, b in zip(stage2, stage2_clean)) if noised else 0,
    )
    return {"stage1": stage1, "stage1_valid": stage1_valid, "stage2": stage2, "valid": valid}, counts


def run(params: Params, assembly: str, plan: Plan | None = None) -> AssembleMetrics:
    m = (plan or Plan(params)).assembly(assembly)
    examples = read_prepared(m.dataset, ("train", "valid"))
    if m.teacher == NO_TEACHER:  # gold labels, no CoTs: the questions alone
        teacher_train = [TeacherRecord(id=ex.id, split="train", label=ex.label, cots=[]) for ex in examples["train"]]
        teacher_valid = []
    else:
        teacher_train = read_records(TEACHER / m.dataset / m.teacher / "train.jsonl", TeacherRecord)
        teacher_valid = read_records(TEACHER / m.dataset / m.teacher / "valid.jsonl", TeacherRecord)
    rows, counts = build(params, m, teacher_train, examples, teacher_valid)
    out = ASSEMBLED / assembly
    for name, rs in rows.items():
        write_records(out / f"{name}.jsonl", rs)
    write_model(METRICS / "assemble" / f"{assembly}.json", counts)
    return counts
