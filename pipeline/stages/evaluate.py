"""evaluate: batched greedy generation on the test split with the selected checkpoint, accuracy by
the task's scorer, predictions (``prediction.schema.json``) and metrics (a DVC metrics file), and
one MLflow run for the whole train+evaluate."""
from __future__ import annotations

import json

from ..artifacts import write_json, write_jsonl
from ..spec import Params
from ..student.batches import EXPLAIN
from ..student.loop import generate, pick_device
from ..tasks import get_task
from .common import METRICS, MODELS, RESULTS, dataset_spec, method_spec, read_prepared


def run(params: Params, dataset: str, method: str) -> dict:
    from transformers import AutoTokenizer, T5ForConditionalGeneration

    spec, m, ev = dataset_spec(params, dataset), method_spec(params, method), params.evaluate
    task = get_task(spec.task)
    final = MODELS / dataset / method / "final"
    log = json.loads((final / "training_log.json").read_text())
    device = pick_device(params.train.device)
    tok = AutoTokenizer.from_pretrained(str(final))
    model = T5ForConditionalGeneration.from_pretrained(str(final)).to(device)
    examples = read_prepared(dataset, (ev.split,))[ev.split][: ev.limit]
    inputs = [task.model_input(e) for e in examples]
    import torch
    from contextlib import nullcontext

    ctx = torch.autocast("cuda", dtype=torch.bfloat16) if device == "cuda" else nullcontext()
    with ctx:
        preds = generate(model, tok, inputs, ev.batch_size, ev.max_new_tokens, params.train.max_input_length, device,
                         desc=f"evaluate {dataset}/{method}")
        rationales = (generate(model, tok, inputs, ev.batch_size, ev.rationale_max_new_tokens, params.train.max_input_length,
                               device, prefix=EXPLAIN, desc="rationales")
                      if ev.keep_rationales and m.cots else [None] * len(inputs))
    rows, correct = [], 0
    for e, x, p, r in zip(examples, inputs, preds, rationales):
        ok = task.is_correct(p, e["label"])
        correct += ok
        rows.append({"id": e["id"], "input": x, "gold": e["label"], "prediction": p, "correct": ok, "rationale": r})
    out = RESULTS / dataset / method
    write_jsonl(out / "predictions.jsonl", rows, "prediction")
    sel, paper = log.get("selected"), log.get("paper_protocol_best")
    metrics = {
        "dataset": dataset, "method": method, "split": ev.split,
        "accuracy": round(correct / len(rows), 6) if rows else 0.0, "correct": correct, "total": len(rows),
        "selected_step": sel["step"] if sel else None, "valid_accuracy": sel["valid_accuracy"] if sel else None,
        "paper_protocol_accuracy": paper["test_accuracy"] if paper else None,
        "paper_protocol_step": paper["step"] if paper else None,
        "stage1_verdict_agreement": _stage1_agreement(dataset, method),
    }
    metrics_path = METRICS / "evaluate" / dataset / f"{method}.json"
    write_json(metrics_path, metrics, "eval_metrics")
    metrics["mlflow_run_id"] = _track(params, dataset, method, metrics, metrics_path)
    write_json(metrics_path, metrics, "eval_metrics")
    return metrics


def _stage1_agreement(dataset: str, method: str):
    p = MODELS / dataset / method / "stage1" / "training_log.json"
    return json.loads(p.read_text()).get("verdict_agreement") if p.exists() else None


def _track(params: Params, dataset: str, method: str, metrics: dict, metrics_path) -> str:
    from ..tracking import log_run

    steps = []
    stage1 = MODELS / dataset / method / "stage1" / "training_log.json"
    logs = [("stage1_", json.loads(stage1.read_text()))] if stage1.exists() else []
    logs.append(("", json.loads((MODELS / dataset / method / "final" / "training_log.json").read_text())))
    for prefix, log in logs:
        for rec in log["history"]:
            for k in ("loss", "pred_loss", "expl_loss", "lr"):
                if rec.get(k) is not None:
                    steps.append((prefix + k, rec[k], rec["step"]))
        for e in log["evals"]:
            for k in ("valid_accuracy", "test_accuracy"):
                if e.get(k) is not None:
                    steps.append((prefix + k, e[k], e["step"]))
    p = params.model_dump(mode="json")
    run_params = {"seed": p["seed"], "profile": p["profile"], "dataset": {dataset: p["datasets"][dataset]},
                  "method": {method: p["methods"][method]}, "assemble": p["assemble"], "train": p["train"],
                  "evaluate": p["evaluate"]}
    final = {k: metrics[k] for k in ("accuracy", "valid_accuracy", "paper_protocol_accuracy", "stage1_verdict_agreement")
             if metrics.get(k) is not None}
    final["test_correct"], final["test_total"] = metrics["correct"], metrics["total"]
    return log_run(dataset=dataset, method=method, seed=params.seed, params=run_params, step_metrics=steps,
                   metrics=final, artifacts=[metrics_path],
                   extra_tags={"profile": params.profile, "model_dir": str(MODELS / dataset / method / "final")})
