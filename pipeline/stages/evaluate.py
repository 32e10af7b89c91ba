"""evaluate: batched greedy generation on the test split with the selected checkpoint, accuracy by
the task's scorer, predictions (``Prediction``, ``prediction.schema.json``) and metrics
(``EvalMetrics``, a DVC metrics file), and one MLflow run for the whole train+evaluate. The training
logs (``TrainingLog``) beside the checkpoints give the selection and the per-step curves."""
from __future__ import annotations

from ..artifacts import read_model, write_model, write_records
from ..records import EvalMetrics, Prediction, TrainingLog
from ..spec import Params
from ..student.batches import EXPLAIN
from ..student.distributed import pick_device
from ..student.generate import generate
from ..student.model import load_checkpoint
from ..tasks import get_task
from .common import METRICS, MODELS, RESULTS, dataset_spec, method_spec, read_prepared


def read_logs(dataset: str, method: str) -> tuple[TrainingLog | None, TrainingLog]:
    """The training logs of stage 1 (None for one-stage methods) and of the final checkpoint."""
    stage1 = MODELS / dataset / method / "stage1" / "training_log.json"
    return (read_model(stage1, TrainingLog) if stage1.exists() else None,
            read_model(MODELS / dataset / method / "final" / "training_log.json", TrainingLog))


def run(params: Params, dataset: str, method: str) -> dict:
    from transformers import AutoTokenizer

    spec, m, ev = dataset_spec(params, dataset), method_spec(params, method), params.evaluate
    task = get_task(spec.task)
    final = MODELS / dataset / method / "final"
    stage1_log, log = read_logs(dataset, method)
    device = pick_device(params.train.device)
    tok = AutoTokenizer.from_pretrained(str(final))
    model = load_checkpoint(str(final)).to(device)
    examples = read_prepared(dataset, (ev.split,))[ev.split][: ev.limit]
    inputs = [task.model_input(e.model_dump()) for e in examples]
    import torch
    from contextlib import nullcontext

    ctx = torch.autocast("cuda", dtype=torch.bfloat16) if device == "cuda" else nullcontext()
    with ctx:
        preds = generate(model, tok, inputs, ev.batch_size, ev.max_new_tokens, params.train.max_input_length, device,
                         desc=f"evaluate {dataset}/{method}")
        rationales = (generate(model, tok, inputs, ev.batch_size, ev.rationale_max_new_tokens, params.train.max_input_length,
                               device, prefix=EXPLAIN, desc="rationales")
                      if ev.keep_rationales and m.cots else [None] * len(inputs))
    rows = [Prediction(id=e.id, input=x, gold=e.label, prediction=p, correct=task.is_correct(p, e.label), rationale=r)
            for e, x, p, r in zip(examples, inputs, preds, rationales)]
    correct = sum(r.correct for r in rows)
    write_records(RESULTS / dataset / method / "predictions.jsonl", rows)
    sel, paper = log.selected, log.paper_protocol_best
    metrics = EvalMetrics(
        dataset=dataset, method=method, split=ev.split,
        accuracy=round(correct / len(rows), 6) if rows else 0.0, correct=correct, total=len(rows),
        selected_step=sel.step if sel else None, valid_accuracy=sel.valid_accuracy if sel else None,
        paper_protocol_accuracy=paper.test_accuracy if paper else None,
        paper_protocol_step=paper.step if paper else None,
        stage1_verdict_agreement=stage1_log.verdict_agreement if stage1_log else None,
    )
    metrics_path = METRICS / "evaluate" / dataset / f"{method}.json"
    write_model(metrics_path, metrics)
    metrics.mlflow_run_id = _track(params, dataset, method, metrics, metrics_path, stage1_log, log)
    write_model(metrics_path, metrics)
    return metrics.model_dump(mode="json")


def step_metrics(logs: list[tuple[str, TrainingLog]]) -> list[tuple[str, float, int]]:
    """(name, value, step) of every logged loss, learning rate and selection accuracy; names prefixed per stage."""
    steps = []
    for prefix, log in logs:
        for rec in log.history:
            for k in ("loss", "pred_loss", "expl_loss", "lr"):
                if getattr(rec, k) is not None:
                    steps.append((prefix + k, getattr(rec, k), rec.step))
        for e in log.evals:
            for k in ("valid_accuracy", "test_accuracy"):
                if getattr(e, k) is not None:
                    steps.append((prefix + k, getattr(e, k), e.step))
    return steps


def _track(params: Params, dataset: str, method: str, metrics: EvalMetrics, metrics_path,
           stage1_log: TrainingLog | None, log: TrainingLog) -> str:
    from ..tracking import log_run

    logs = ([("stage1_", stage1_log)] if stage1_log else []) + [("", log)]
    p = params.model_dump(mode="json")
    run_params = {"seed": p["seed"], "profile": p["profile"], "dataset": {dataset: p["datasets"][dataset]},
                  "method": {method: p["methods"][method]}, "assemble": p["assemble"], "train": p["train"],
                  "evaluate": p["evaluate"]}
    final = {k: getattr(metrics, k) for k in ("accuracy", "valid_accuracy", "paper_protocol_accuracy", "stage1_verdict_agreement")
             if getattr(metrics, k) is not None}
    final["test_correct"], final["test_total"] = metrics.correct, metrics.total
    return log_run(dataset=dataset, method=method, seed=params.seed, params=run_params, step_metrics=step_metrics(logs),
                   metrics=final, artifacts=[metrics_path],
                   extra_tags={"profile": params.profile, "model_dir": str(MODELS / dataset / method / "final")})
