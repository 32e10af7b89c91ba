"""teach: teacher records per split (``teacher.schema.json``): per question k CoTs (raw text,
rationale, parsed answer, parse status, gold correctness) and, where the teacher gave them,
self-evaluations of each CoT. Teacher accuracy and parse rate per split as DVC metrics."""
from __future__ import annotations

from collections import Counter

from ..artifacts import read_json, write_json, write_jsonl
from ..spec import SPLITS, OpenAITeacher, Params
from ..tasks import get_task
from .common import METRICS, TEACHER, dataset_spec, read_prepared


def run(params: Params, dataset: str) -> dict:
    spec = dataset_spec(params, dataset)
    task = get_task(spec.task)
    prepared = read_prepared(dataset)
    prep_metrics = read_json(METRICS / "prepare" / f"{dataset}.json", "prepare_metrics")
    by_origin: dict[str, list[dict]] = {}
    for split in SPLITS:
        for ex in prepared[split]:
            by_origin.setdefault(ex["origin"], []).append(ex)
    for exs in by_origin.values():
        exs.sort(key=lambda e: e["index"])

    if isinstance(spec.teacher, OpenAITeacher):
        from ..teacher.openai_backend import generate

        recs_by_origin, unmatched, extra = generate(dataset, task, spec.teacher, by_origin)
    else:
        from ..teacher.replay import replay

        recs_by_origin, unmatched = replay(task, spec.teacher, by_origin, prep_metrics["source_rows"])
        extra = {}

    by_id = {r["id"]: r for recs in recs_by_origin.values() for r in recs}
    metrics = {"dataset": dataset, "backend": spec.teacher.backend, "splits": {}}
    for split in SPLITS:
        recs = []
        for ex in prepared[split]:
            r = dict(by_id[ex["id"]])
            r["split"] = split
            recs.append(r)
        write_jsonl(TEACHER / dataset / f"{split}.jsonl", recs, "teacher")
        if recs:
            metrics["splits"][split] = split_metrics(recs, unmatched.get(split, 0))
    metrics.update(extra)
    write_json(METRICS / "teach" / f"{dataset}.json", metrics, "teach_metrics")
    return metrics


def split_metrics(recs: list[dict], unmatched: int = 0) -> dict:
    cots = [c for r in recs for c in r["cots"]]
    parsed = sum(c["status"] == "ok" for c in cots)
    first_correct = sum(bool(r["cots"]) and r["cots"][0]["correct"] is True for r in recs)
    verdicts: Counter = Counter()
    agree = judged = n_evals = 0
    for c in cots:
        for e in c["evaluations"]:
            n_evals += 1
            verdicts[e["verdict"] or "unparsed"] += 1
            if e["verdict"] in ("correct", "wrong") and c["correct"] is not None:
                judged += 1
                agree += (e["verdict"] == "correct") == c["correct"]
    with_cots = sum(bool(r["cots"]) for r in recs)
    return {
        "questions": len(recs),
        "questions_with_cots": with_cots,
        "cots": len(cots),
        "parsed": parsed,
        "parse_rate": round(parsed / len(cots), 6) if cots else None,
        "accuracy": round(first_correct / with_cots, 6) if with_cots else None,
        "correct": first_correct,
        "cot_accuracy": round(sum(c["correct"] is True for c in cots) / len(cots), 6) if cots else None,
        "evaluations": n_evals,
        "verdicts": dict(sorted(verdicts.items())),
        "verdict_agreement": round(agree / judged, 6) if judged else None,
        "unmatched_source_rows": unmatched,
    }
