"""infer: the sampled inference modes of one run, and its own judges on its own samples.

For each evaluation question, k rationales (``explain:``) and k answers (``predict:``) are sampled
(seeded), sample i of each forming the i-th CoT. ``vote@k`` is their majority answer; ``verify@k``
weights each answer by the judge's P(correct) of its CoT, given as stage 1 saw the teacher's
(``assemble.se_input``: the CoT, rationale plus answer sentence, or question + CoT). Two-stage runs
have two judges, the final model and the stage-1 checkpoint (stage 2 may have erased the skill);
one-stage runs have no trained judge, and their verify cells are ``-``.

Against the gold correctness of every sample: oracle@k, the judges' precision and recall of
'wrong' (P(correct) < 1/2), per kind of error where the task has checkable steps, AUROC, and how
often each mode picks a right answer where one exists. Nothing here trains: a new mode or k re-runs
this stage alone (and the report)."""
from __future__ import annotations

import time
from collections import Counter
from typing import Optional

from ..core.artifacts import write_model, write_records
from ..core.records_infer import InferMetrics, JudgeMetrics, Sample, SampleSet
from ..core.spec import Params
from ..core.stageio import METRICS, MODELS, RESULTS, dataset_spec, read_prepared
from ..runs import Plan
from ..student.batches import EXPLAIN, PREDICT
from ..student.distributed import pick_device
from ..student.model import load_checkpoint
from ..student.decode import sample, verdict_probabilities
from ..tasks import Task, get_task, se_input

SAMPLES = RESULTS / "samples"


def auroc(scores: list[float], positive: list[bool]) -> Optional[float]:
    """Area under the ROC curve of ``scores`` for ``positive`` (Mann-Whitney, ties count half); None
    when one class is empty."""
    pos = [s for s, p in zip(scores, positive) if p]
    neg = [s for s, p in zip(scores, positive) if not p]
    if not pos or not neg:
        return None
    order = sorted(scores)
    rank: dict[float, float] = {}
    i = 0
    while i < len(order):  # average 1-based rank of each distinct score
        j = i
        while j < len(order) and order[j] == order[i]:
            j += 1
        rank[order[i]] = (i + 1 + j) / 2
        i = j
    u = sum(rank[s] for s in pos) - len(pos) * (len(pos) + 1) / 2
    return u / (len(pos) * len(neg))


def pick(task: Task, answers: list[str], weights: list[float]) -> Optional[str]:
    """The answer with the most weight in all (answers compared by the task's key); ties: the first drawn."""
    total: Counter = Counter()
    first: dict[str, str] = {}
    for a, w in zip(answers, weights):
        key = task.answer_key(a)
        total[key] += w
        first.setdefault(key, a)
    if not total:
        return None
    best = max(total.values())
    return next(first[key] for key in first if total[key] == best)


def _share(num: int, den: int) -> Optional[float]:
    return round(num / den, 6) if den else None


def judge_metrics(task: Task, sets: list[SampleSet], judge: str) -> JudgeMetrics:
    flat = [s for q in sets for s in q.samples]
    p = [s.p_correct[judge] for s in flat]
    said_wrong = [x < 0.5 for x in p]
    wrong = [not s.correct for s in flat]
    by_error: dict[str, Optional[float]] = {}
    for kind in sorted({s.error for s in flat if s.error}):
        hit = [sw for s, sw in zip(flat, said_wrong) if s.error == kind]
        by_error[kind] = _share(sum(hit), len(hit))
    picked = [task.is_correct(q.verify[judge], q.gold) for q in sets]  # the verify pick of each question, scored once
    answerable = [ok for q, ok in zip(sets, picked) if any(s.correct for s in q.samples)]
    return JudgeMetrics(
        verify_accuracy=_share(sum(picked), len(sets)) or 0.0,
        wrong_precision=_share(sum(a and b for a, b in zip(said_wrong, wrong)), sum(said_wrong)),
        wrong_recall=_share(sum(a and b for a, b in zip(said_wrong, wrong)), sum(wrong)),
        wrong_recall_by_error=by_error,
        auroc=None if (a := auroc(p, [not w for w in wrong])) is None else round(a, 6),
        pick_rate=_share(sum(answerable), len(answerable)),
        mean_p_correct=round(sum(p) / len(p), 6) if p else 0.0,
    )


def run(params: Params, name: str, plan: Plan | None = None) -> InferMetrics:
    from contextlib import nullcontext

    import torch
    from transformers import AutoTokenizer

    started = time.time()
    inf = (plan or Plan(params)).inference(name)
    r, k, cfg, ev = inf.run, inf.k, params.infer, params.evaluate
    task = get_task(dataset_spec(params, r.dataset).task)
    device = pick_device(params.train.device)
    final = MODELS / r.name / "stage2"
    tok = AutoTokenizer.from_pretrained(str(final))
    examples = read_prepared(r.dataset, (ev.split,))[ev.split][: ev.limit]
    inputs = [task.model_input(e) for e in examples]
    max_input = params.train.max_input_length
    ctx = torch.autocast("cuda", dtype=torch.bfloat16) if device == "cuda" else nullcontext()
    draw = dict(batch_size=cfg.batch_size, max_input=max_input, device=device, temperature=cfg.temperature,
                top_p=cfg.top_p)
    judges = {"final": final, "stage1": MODELS / r.name / "stage1"} if r.two_stage else {}
    with ctx:
        model = load_checkpoint(str(final)).to(device)
        answers = sample(model, tok, inputs, k, PREDICT, max_new_tokens=cfg.max_new_tokens, seed=cfg.seed, **draw,
                         desc=f"sample answers {name}")
        rationales = sample(model, tok, inputs, k, EXPLAIN, max_new_tokens=cfg.rationale_max_new_tokens,
                            seed=cfg.seed + 1, **draw, desc="sample rationales")
        cots = [se_input(params.assemble.se_input, x, task.cot_text(ra, a))
                for x, ras, ans in zip(inputs, rationales, answers) for ra, a in zip(ras, ans)]
        p_correct: dict[str, list[float]] = {}
        for judge, path in judges.items():
            if judge != "final":
                model = load_checkpoint(str(path)).to(device)
            probs = verdict_probabilities(model, tok, cots, cfg.verdicts, PREDICT, batch_size=cfg.batch_size * k,
                                          max_input=max_input, device=device, desc=f"judge ({judge})")
            p_correct[judge] = [round(row[0], 6) for row in probs]
    sets: list[SampleSet] = []
    for q, (e, ras, ans) in enumerate(zip(examples, rationales, answers)):
        samples = []
        for i, (ra, a) in enumerate(zip(ras, ans)):
            ok = task.is_correct(a, e.label)
            samples.append(Sample(rationale=ra, answer=a, correct=ok, error=None if ok else task.error_kind(ra),
                                  p_correct={j: p_correct[j][q * k + i] for j in judges}))
        verify = {j: pick(task, ans, [s.p_correct[j] for s in samples]) for j in judges}
        sets.append(SampleSet(id=e.id, gold=e.label, samples=samples, vote=pick(task, ans, [1.0] * k), verify=verify))
    write_records(SAMPLES / name / "samples.jsonl", sets)
    flat = [s for q in sets for s in q.samples]
    answerable = [q for q in sets if any(s.correct for s in q.samples)]
    metrics = InferMetrics(
        run=r.name, dataset=r.dataset, teacher=r.teacher, method=r.method, student=r.student, labels=r.labels,
        cots=r.cots, self_evals=r.self_evals, seed=r.seed, label_noise=r.label_noise, k=k, split=ev.split,
        questions=len(sets), temperature=cfg.temperature, top_p=cfg.top_p,
        vote_accuracy=_share(sum(task.is_correct(q.vote, q.gold) for q in sets), len(sets)) or 0.0,
        vote_pick_rate=_share(sum(task.is_correct(q.vote, q.gold) for q in answerable), len(answerable)),
        oracle_accuracy=_share(len(answerable), len(sets)) or 0.0,
        sample_accuracy=_share(sum(s.correct for s in flat), len(flat)) or 0.0,
        wrong_samples=dict(sorted(Counter(s.error or "wrong" for s in flat if not s.correct).items())),
        judges={j: judge_metrics(task, sets, j) for j in judges},
        started_at=started, finished_at=time.time(),
    )
    write_model(METRICS / "evaluate" / f"{name}.json", metrics)
    return metrics
