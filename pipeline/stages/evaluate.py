"""evaluate: batched greedy decoding of the test split with the selected checkpoint, accuracy by
the task's scorer, predictions (``Prediction``, ``prediction.schema.json``) and metrics
(``EvalMetrics``, ``metrics/evaluate/<run>.json``). The training logs (``TrainingLog``) beside the
checkpoints give the selection and the stage-1 verdict agreement.

Nothing here touches MLflow: the report stage logs every run from the metrics files, once per
content (fingerprinted), so a stage DVC restores from its run-cache is logged all the same."""
from __future__ import annotations

import time

from ..artifacts import read_model, write_model, write_records
from ..records import EvalMetrics, Prediction, TrainingLog
from ..runs import Run, find_run
from ..spec import Params
from ..student.batches import EXPLAIN
from ..student.distributed import pick_device
from ..student.decode import decode
from ..student.model import load_checkpoint
from ..tasks import get_task
from .common import METRICS, MODELS, RESULTS, dataset_spec, read_prepared


def read_logs(run: Run) -> tuple[TrainingLog | None, TrainingLog]:
    """The training logs of stage 1 (None for one-stage runs) and of stage 2 (the checkpoint evaluated)."""
    stage1 = MODELS / run.name / "stage1" / "training_log.json"
    return (read_model(stage1, TrainingLog) if run.two_stage else None,
            read_model(MODELS / run.name / "stage2" / "training_log.json", TrainingLog))


def run(params: Params, name: str) -> dict:
    from contextlib import nullcontext

    import torch
    from transformers import AutoTokenizer

    started = time.time()
    r = find_run(params, name)
    ev = params.evaluate
    task = get_task(dataset_spec(params, r.dataset).task)
    checkpoint = MODELS / name / "stage2"
    stage1_log, log = read_logs(r)
    device = pick_device(params.train.device)
    tok = AutoTokenizer.from_pretrained(str(checkpoint))
    model = load_checkpoint(str(checkpoint)).to(device)
    examples = read_prepared(r.dataset, (ev.split,))[ev.split][: ev.limit]
    inputs = [task.model_input(e.model_dump()) for e in examples]
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
    sel, paper = log.selected, log.paper_protocol_best
    metrics = EvalMetrics(
        run=name, dataset=r.dataset, method=r.method, student=r.student, labels=r.labels, cots=r.cots,
        self_evals=r.self_evals, seed=r.seed, split=ev.split,
        accuracy=round(correct / len(rows), 6) if rows else 0.0, correct=correct, total=len(rows),
        selected_step=sel.step if sel else None, valid_accuracy=sel.valid_accuracy if sel else None,
        paper_protocol_accuracy=paper.test_accuracy if paper else None,
        paper_protocol_step=paper.step if paper else None,
        stage1_verdict_agreement=stage1_log.verdict_agreement if stage1_log else None,
        started_at=started, finished_at=time.time(),
    )
    write_model(METRICS / "evaluate" / f"{name}.json", metrics)
    return metrics.model_dump(mode="json")
