"""evaluate: batched greedy decoding of the test split with the selected checkpoint, accuracy by
the task's scorer, predictions (``Prediction``, ``prediction.schema.json``) and metrics
(``EvalMetrics``, ``metrics/evaluate/<run>.json``). The selection and the stage-1 verdict agreement
live in the training logs (``metrics/train/<run>/<stage>.json``) alone; the report reads them there.

Nothing here touches MLflow: the report stage logs every run from the metrics files, once per
content (fingerprinted), so a stage DVC restores from its run-cache is logged all the same."""
from __future__ import annotations

import time

from ..core.artifacts import write_model, write_records
from ..core.records import EvalMetrics, Prediction
from ..runs import Plan
from ..core.spec import Params
from ..student.batches import EXPLAIN
from ..student.distributed import pick_device
from ..student.decode import decode
from ..student.model import load_checkpoint
from ..tasks import get_task
from ..core.stageio import METRICS, MODELS, RESULTS, dataset_spec, read_prepared


def run(params: Params, name: str, plan: Plan | None = None) -> EvalMetrics:
    from contextlib import nullcontext

    import torch
    from transformers import AutoTokenizer

    started = time.time()
    r = (plan or Plan(params)).run(name)
    ev = params.evaluate
    task = get_task(dataset_spec(params, r.dataset).task)
    checkpoint = MODELS / name / "stage2"
    device = pick_device(params.train.device)
    tok = AutoTokenizer.from_pretrained(str(checkpoint))
    model = load_checkpoint(str(checkpoint)).to(device)
    examples = read_prepared(r.dataset, (ev.split,))[ev.split][: ev.limit]
    inputs = [task.model_input(e) for e in examples]
    ctx = torch.autocast("cuda", dtype=torch.bfloat16) if device == "cuda" else nullcontext()
    with ctx:
        preds = decode(model, tok, inputs, ev.batch_size, ev.max_new_tokens, params.train.max_input_length, device,
                       desc=f"evaluate {name}")
        rationales = (decode(model, tok, inputs, ev.batch_size, ev.rationale_max_new_tokens, params.train.max_input_length,
                             device, prefix=EXPLAIN, desc="rationales")
                      if ev.keep_rationales and r.cots else [None] * len(inputs))
    rows = [Prediction(id=e.id, input=x, gold=e.label, prediction=p, correct=task.is_correct(p, e.label), rationale=ra)
            for e, x, p, ra in zip(examples, inputs, preds, rationales)]
    correct = sum(x.correct for x in rows)
    write_records(RESULTS / name / "predictions.jsonl", rows)
    metrics = EvalMetrics(
        run=name, dataset=r.dataset, teacher=r.teacher, method=r.method, student=r.student, labels=r.labels, cots=r.cots,
        self_evals=r.self_evals, seed=r.seed, split=ev.split,
        accuracy=round(correct / len(rows), 6) if rows else 0.0, correct=correct, total=len(rows),
        started_at=started, finished_at=time.time(),
    )
    write_model(METRICS / "evaluate" / f"{name}.json", metrics)
    return metrics
