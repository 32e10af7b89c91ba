"""One run of the pipeline in MLflow, from its metrics files (logged by the report stage, through
:func:`.sync.sync_runs`): a parent run named after the run (``svamp-gpt35-cot5_se-base-teacher-k5-m5-s42``,
``[<experiment>] ...`` inside ``dvc exp run``) that is the run's evaluation (``evaluate@<run>``: its span
is the evaluation's, from ``metrics/evaluate/<run>.json``), with the run's params, final metrics (in
percent, like the tables: ``*_pct``; counts as counts; and the seconds of its training stages and
evaluation), tags (its dimensions, the tables it serves as ``table.<name>``, DVC's experiment, and
``dvc_stage`` = ``evaluate@<run>``: the stage whose outputs it is, not the stage that logs it, which
is ``logged_by``), the git commit as the MLflow source, the training and test data as dataset inputs
whose digest is DVC's hash, and one child run per training stage (``<run>/stage1``, ``<run>/stage2``)
spanning that stage (``started_at`` to ``finished_at`` of its training log), with its per-step curves
and summary. No run spans another run's stages: DVC runs the stages of many runs one after another.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

from ..core.records import EvalMetrics, TrainingLog
from ..runs import Run
from ..core.spec import Params
from .datasets import _Data, _run_data
from .store import _client, _experiment_id, _log_batch, _ms, _params, flatten
from .tags import _clean, _dvc_env_tags, _run_name, _source_tags, _table_tags

STEP_KEYS = ("loss", "pred_loss", "expl_loss", "lr")
EVAL_KEYS = ("valid_accuracy", "test_accuracy")
PCT = "_pct"  # the suffix of a metric logged in percent (a fraction x 100, as the tables show it)


def pct(fraction: Optional[float]) -> Optional[float]:
    """A fraction in percent (rounded off float noise: 0.1 -> 10.0), None kept."""
    return None if fraction is None else round(100 * fraction, 6)


def _span(log) -> float:
    """Wall-clock seconds of a training stage or an evaluation, from its own start and end."""
    return max(0.0, log.finished_at - log.started_at)


def run_params(params: Params, run: Run) -> dict[str, str]:
    """The flattened params of one run: its dimensions and the spec sections its stages read."""
    p = params.model_dump(mode="json")
    return flatten({
        "seed": run.seed, "profile": params.profile, "dataset": run.dataset, "teacher": run.teacher,
        "method": run.method,
        "student": run.student, "labels": run.labels, "cots": run.cots, "self_evals": run.self_evals,
        "assembly": run.assembly.name,
        "datasets": {run.dataset: p["datasets"][run.dataset]}, "methods": {run.method: p["methods"][run.method]},
        "teachers": {run.teacher: p["teachers"][run.teacher]} if run.teacher in p["teachers"] else {},
        "students": {run.student: p["students"][run.student]},
        "assemble": p["assemble"], "train": p["train"], "evaluate": p["evaluate"],
    })


def _dims_tags(params: Params, run: Run) -> dict[str, str]:
    return {"run": run.name, "dataset": run.dataset, "teacher": run.teacher, "method": run.method, "student": run.student,
            "labels": run.labels, "cots": str(run.cots), "self_evals": str(run.self_evals), "seed": str(run.seed),
            "assembly": run.assembly.name, "profile": params.profile}


def _stage_metrics(log: TrainingLog):
    """Per-step curves (steps spread evenly between the stage's start and end) and the summary."""
    from mlflow.entities import Metric

    start, end = _ms(log.started_at), _ms(log.finished_at)
    last = max([log.steps, 1] + [h.step for h in log.history] + [e.step for e in log.evals])
    at = lambda step: start + (end - start) * min(step, last) // last  # noqa: E731
    out = []
    for h in log.history:
        out += [Metric(k, float(getattr(h, k)), at(h.step), h.step) for k in STEP_KEYS if getattr(h, k) is not None]
        out.append(Metric("epoch", float(h.epoch), at(h.step), h.step))
    for e in log.evals:
        out += [Metric(k + PCT, pct(getattr(e, k)), at(e.step), e.step) for k in EVAL_KEYS
                if getattr(e, k) is not None]
    sel, paper = log.selected, log.paper_protocol_best
    summary = {
        "steps": log.steps, "seconds": log.seconds, "wall_seconds": round(_span(log), 3),
        "examples_per_s": log.examples_per_s, "rows": log.rows,
        "epochs": log.epochs, "parameters": log.parameters, "resumed_from_step": log.resumed_from_step,
        "verdict_agreement_pct": pct(log.verdict_agreement),
        "verdict_rows": log.verdict_rows if log.stage == "stage1" else None,
        "final_loss": log.history[-1].loss if log.history else None,
        "selected_step": sel.step if sel else None,
        "selected_valid_accuracy_pct": pct(sel.valid_accuracy) if sel else None,
        "paper_protocol_step": paper.step if paper else None,
        "paper_protocol_test_accuracy_pct": pct(paper.test_accuracy) if paper else None,
    }
    out += [Metric(k, float(v), end, log.steps) for k, v in summary.items() if v is not None]
    return out


def _infer_metrics(inf) -> dict:
    """A sampled mode's results (``InferMetrics``) as metric keys (MLflow keys allow no '@'): vote_k5_*,
    oracle_k5_pct, and per judge verify_k5_<judge>_* and judge_k5_<judge>_*."""
    k = f"k{inf.k}"
    out = {f"vote_{k}_accuracy_pct": pct(inf.vote_accuracy), f"oracle_{k}_pct": pct(inf.oracle_accuracy),
           f"sample_{k}_accuracy_pct": pct(inf.sample_accuracy)}
    for judge, j in inf.judges.items():
        out.update({f"verify_{k}_{judge}_accuracy_pct": pct(j.verify_accuracy),
                    f"verify_{k}_{judge}_pick_rate_pct": pct(j.pick_rate),
                    f"judge_{k}_{judge}_wrong_precision_pct": pct(j.wrong_precision),
                    f"judge_{k}_{judge}_wrong_recall_pct": pct(j.wrong_recall),
                    f"judge_{k}_{judge}_auroc": j.auroc,
                    **{f"judge_{k}_{judge}_wrong_recall_{e}_pct": pct(v) for e, v in j.wrong_recall_by_error.items()}})
    return out


def _final_metrics(metrics: EvalMetrics, logs: list[TrainingLog], inferences: list = ()):
    """The run's results: the evaluation's, and from the training logs (stage 1 first) the selection,
    the paper protocol's best-on-test and stage 1's verdict agreement, in percent (``*_pct``); and the
    wall-clock seconds of each training stage, of training, of the evaluation and of both."""
    from mlflow.entities import Metric

    final = logs[-1] if logs else None
    sel = final.selected if final else None
    paper = final.paper_protocol_best if final else None
    stage1 = next((log for log in logs if log.stage == "stage1"), None)
    train = sum(_span(log) for log in logs)
    values = {
        "accuracy_pct": pct(metrics.accuracy), "valid_accuracy_pct": pct(sel.valid_accuracy) if sel else None,
        "paper_protocol_accuracy_pct": pct(paper.test_accuracy) if paper else None,
        "stage1_verdict_agreement_pct": pct(stage1.verdict_agreement) if stage1 else None,
        "test_correct": metrics.correct, "test_total": metrics.total,
        "selected_step": sel.step if sel else None, "paper_protocol_step": paper.step if paper else None,
        **{f"{log.stage}_seconds": round(_span(log), 3) for log in logs},
        "train_seconds": round(train, 3), "eval_seconds": round(_span(metrics), 3),
        "total_seconds": round(train + _span(metrics), 3),
        **{key: v for inf in inferences for key, v in _infer_metrics(inf).items()},
    }
    t = _ms(metrics.finished_at)
    return [Metric(k, float(v), t, 0) for k, v in values.items() if v is not None]


def _note(run: Run, tables: list[str], train: _Data, test: _Data, env: dict[str, str]) -> str:
    exp, base = env.get("dvc.exp_name"), env.get("dvc.baseline_rev")
    where = (f"DVC experiment **{exp}**" + (f" (baseline `{base[:7]}`)" if base else "") if exp
             else "no DVC experiment (`dvc repro` or by hand)")
    return "\n".join([
        f"**{run.name}**: {run.method} on {run.dataset}, teacher {run.teacher}, T5 {run.student}, {run.labels} labels, "
        f"{run.cots} CoTs x {run.self_evals} self-evaluations, seed {run.seed}. Logged in {where}.",
        "",
        f"Tables: {', '.join(tables) or '(none)'}. This run is the evaluation (its Duration); child runs: the "
        "training stages (each its own Duration). Metrics `*_pct` are in percent; `train_seconds`, "
        "`eval_seconds`, `total_seconds` are wall-clock seconds.",
        "",
        f"- training rows `{train.path.as_posix()}`: `{train.digest}` ({train.digest_from})",
        f"- test data `{test.path.as_posix()}`: `{test.digest}` ({test.digest_from})",
    ])


def log_run(params: Params, run: Run, metrics: EvalMetrics, logs: list[TrainingLog], artifacts: list[Path],
            tables: list[str]) -> str:
    """One parent MLflow run per train+evaluate (spanning the evaluation) and one child run per training
    stage (spanning it); returns the parent's id."""
    client = _client()
    return _log_run(client, _experiment_id(client), params, run, metrics, logs, artifacts, tables)


def _log_run(client, exp_id: str, params: Params, run: Run, metrics: EvalMetrics, logs: list[TrainingLog],
             artifacts: list[Path], tables: list[str], lock: Optional[dict] = None, inferences: list = ()) -> str:
    """``log_run`` with an open client and experiment (``lock``: dvc.lock, read once by the caller)."""
    from mlflow.entities import Param

    train, test = _run_data(run, lock)
    env = _dvc_env_tags()
    # the run is the outputs of evaluate@<run> (and its training stages), whichever stage logs it
    entry = f"evaluate@{run.name}"
    name = _run_name(run.name)
    data_tags = {"data.train.digest": train.digest, "data.train.digest_from": train.digest_from,
                 "data.test.digest": test.digest, "data.test.digest_from": test.digest_from}
    tags = _clean({**_dims_tags(params, run), **env, "dvc_stage": entry, "logged_by": env["dvc_stage"],
                   **_table_tags(tables), **_source_tags(entry), **data_tags,
                   "mlflow.runName": name, "mlflow.note.content": _note(run, tables, train, test, env)})
    parent = client.create_run(exp_id, start_time=_ms(metrics.started_at), tags=tags, run_name=name).info.run_id
    try:
        _log_batch(client, parent, metrics=_final_metrics(metrics, logs, inferences), params=_params(run_params(params, run)))
        client.log_inputs(parent, datasets=[train.input("training"), test.input("evaluation")])
        for log in logs:
            child_tags = _clean({**_dims_tags(params, run), **env, **_source_tags(f"{log.stage}@{run.name}"),
                                 "mlflow.runName": _run_name(f"{run.name}/{log.stage}"), "mlflow.parentRunId": parent,
                                 "stage": log.stage, "dvc_stage": f"{log.stage}@{run.name}",
                                 "logged_by": env["dvc_stage"], "data.train.digest": train.digest})
            child = client.create_run(exp_id, start_time=_ms(log.started_at), tags=child_tags,
                                      run_name=child_tags["mlflow.runName"]).info.run_id
            stage_params = {"stage": log.stage, "device": log.device, "precision": log.precision,
                            "forward": log.forward, "init": log.init, "world_size": log.world_size}
            _log_batch(client, child, metrics=_stage_metrics(log),
                       params=[Param(k, str(v)) for k, v in stage_params.items()])
            inputs = [train.input("training")] + ([test.input("validation")] if log.stage == "stage2" else [])
            client.log_inputs(child, datasets=inputs)
            client.set_terminated(child, "FINISHED", end_time=_ms(log.finished_at))
        for a in artifacts:
            if Path(a).is_file():
                client.log_artifact(parent, str(a))
    except BaseException:
        client.set_terminated(parent, "FAILED")
        raise
    client.set_terminated(parent, "FINISHED", end_time=_ms(max(metrics.finished_at, metrics.started_at)))
    return parent
