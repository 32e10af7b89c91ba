"""train: the T5 student of one run, in one or two stages.

``stage1`` (two-stage runs only: self_evals > 0) trains on the teacher's self-evaluations, saves a
checkpoint and measures the student's verdict agreement on held-out evaluations.
``stage2`` (the only stage of one-stage runs) trains on the run's CoT/label rows, starting from the
stage-1 checkpoint when there is one, selects the checkpoint on the validation split and saves it.
Each stage writes its ``TrainingLog`` (per-step losses, selection points, timing) once, when the
checkpoint is saved, as its metrics file (``metrics/train/<run>/<stage>.json``): the one home of the
selection and of the stage-1 verdict agreement, which the report reads for the tables and MLflow.
"""
from __future__ import annotations

import math
import shutil
import time
from dataclasses import asdict
from pathlib import Path

from ..core.artifacts import read_records, write_model
from ..core.errors import PipelineError
from ..core.paths import project_root
from ..core.records import TrainingLog, TrainRow
from ..runs import Plan, Run
from ..core.spec import Params
from ..core.spec_budget import Budget
from ..student.batches import encode_rows
from ..student.distributed import dist_info, pick_device
from ..student.decode import decode
from ..training.loop import Evaluator, LoopConfig, fingerprint, train
from ..student.model import build_model, load_tokenizer, n_params
from ..tasks import get_task
from ..core.stageio import ASSEMBLED, METRICS, MODELS, dataset_spec, read_prepared


def _loop_config(params: Params, seed: int, budget: Budget, device: str) -> LoopConfig:
    t = params.train
    # auto = separate: measured faster than joint on CPU (benchmarks/README.md); joint pads the short
    # label half to the rationale length. Not yet measured on a GPU.
    forward = "separate" if t.forward == "auto" else t.forward
    return LoopConfig(lr=t.lr, batch_size=t.batch_size, grad_accum=t.grad_accum, alpha=t.alpha, epochs=budget.epochs,
                      steps=budget.steps, max_steps=t.max_steps, weight_decay=t.weight_decay, seed=seed, device=device,
                      bf16=device.startswith("cuda") and t.precision in ("auto", "bf16"), forward=forward,
                      log_every=t.log_every, save_every_steps=t.save_every_steps)


def _epochs_done(steps: int, rows: int, cfg: LoopConfig, budget: Budget) -> float:
    """The stage's epochs: its budget's, or (a budget in steps) the epochs those steps make."""
    if budget.steps is None:
        return budget.epochs
    return round(steps * cfg.grad_accum / math.ceil(rows / (dist_info()[1] * cfg.batch_size)), 4)


def _resume_dir(run: Run, stage: str) -> Path:
    # scratch space for resumable state: not a DVC output (DVC deletes outputs before a run)
    return project_root() / ".checkpoints" / run.name / stage


def _save(model, tok, out: Path) -> None:
    """The checkpoint in ``out``, replacing it."""
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    model.save_pretrained(out)
    tok.save_pretrained(out)


def _drop_resume_dir(run: Run, stage: str) -> None:
    """A finished stage leaves no scratch behind: its resume state, then the run's folder once empty."""
    d = _resume_dir(run, stage)
    shutil.rmtree(d, ignore_errors=True)
    try:  # .checkpoints/<run> once empty; .checkpoints itself stays (a parallel stage may be creating its own)
        d.parent.rmdir()
    except OSError:  # not empty (the run's other stage), or already gone
        pass


def run_stage1(params: Params, name: str, plan: Plan | None = None) -> TrainingLog:
    run = (plan or Plan(params)).run(name)
    if not run.two_stage:
        raise PipelineError(f"run {name!r} has no self-evaluation stage (self_evals 0): nothing to train in stage 1")
    rows = read_records(ASSEMBLED / run.assembly.name / "stage1.jsonl", TrainRow)
    held_out = read_records(ASSEMBLED / run.assembly.name / "stage1_valid.jsonl", TrainRow)
    return _train_and_save(params, run, "stage1", rows, params.budget(run.method, run.dataset, "stage1"), None, None,
                           held_out)


def run_stage2(params: Params, name: str, plan: Plan | None = None) -> TrainingLog:
    run = (plan or Plan(params)).run(name)
    rows = read_records(ASSEMBLED / run.assembly.name / "stage2.jsonl", TrainRow)
    valid = read_records(ASSEMBLED / run.assembly.name / "valid.jsonl", TrainRow)
    init_dir = MODELS / name / "stage1" if run.two_stage else None
    if init_dir is not None and not (init_dir / "config.json").exists():
        raise PipelineError(f"{init_dir}: stage-1 checkpoint missing; run `python -m pipeline stage1 {name}` (dvc repro does)")
    return _train_and_save(params, run, "stage2", rows, params.budget(run.method, run.dataset, "stage2"), valid, init_dir)


def _train_and_save(params: Params, run: Run, stage: str, rows: list[TrainRow], budget: Budget, valid: list[TrainRow] | None,
                    init_dir, verdict_rows: list[TrainRow] | None = None) -> TrainingLog | None:
    """Train one stage, save its checkpoint and its training log; the log (None on ranks > 0)."""
    started = time.time()
    t = params.train
    task = get_task(dataset_spec(params, run.dataset).task)
    device = pick_device(t.device)
    student = params.students[run.student]
    tok = load_tokenizer(student)
    model = build_model(student, init_dir, run.seed)
    if not rows:
        raise PipelineError(f"{ASSEMBLED / run.assembly.name}/{stage}.jsonl: no training rows (see metrics/assemble/{run.assembly.name}.json)")
    row_dicts = [r.model_dump() for r in rows]  # the student's batching and the resume fingerprint take dicts
    enc = encode_rows(tok, row_dicts, t.max_input_length, t.max_target_length)
    cfg = _loop_config(params, run.seed, budget, device)

    evaluator = None
    # the longest tokenised training label (with its end of sequence): a first pass decodes that far
    cap = max(map(len, enc.pred_target)) if t.select_cap else None
    if valid is not None:
        def scorer(inputs, golds):
            def score(mdl):
                preds = decode(mdl, tok, inputs, t.select_batch_size, t.select_max_new_tokens, t.max_input_length, device,
                               cap=cap)
                return sum(task.is_correct(p, g) for p, g in zip(preds, golds)) / max(1, len(golds))
            return score

        v = scorer([r.input for r in valid], [r.label for r in valid]) if valid else None
        test_fn = None
        if t.paper_protocol:
            ev = params.evaluate
            test = read_prepared(run.dataset, (ev.split,))[ev.split][: ev.limit]
            if test:
                test_fn = scorer([task.model_input(e) for e in test], [e.label for e in test])
        cfg.eval_every, cfg.eval_every_steps = budget.select_every or 0.0, budget.select_every_steps
        evaluator = Evaluator(valid=v, test=test_fn)
    else:
        cfg.eval_every = 0

    rank = dist_info()[0]
    fp = fingerprint({**params.train.model_dump(), "student": student.model_dump()}, run.seed, asdict(budget), row_dicts,
                     str(init_dir), stage)
    resume = _resume_dir(run, stage)
    try:
        model, res = train(model, enc, cfg, tok.pad_token_id, evaluator, resume, fp, desc=f"{stage} {run.name}")
        if rank != 0:  # under DDP, rank 0 measures and writes the outputs; the others are done
            return None
        return _finish(params, run, stage, rows, budget, init_dir, verdict_rows, tok, model, res, cfg, device, started, cap)
    finally:
        _end_distributed()


def _end_distributed() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def _finish(params, run: Run, stage, rows, budget: Budget, init_dir, verdict_rows, tok, model, res, cfg, device,
            started, cap) -> TrainingLog:
    t = params.train
    agreement = None
    if verdict_rows:
        # stage 1: how often the student's verdict matches the teacher's on held-out evaluations
        preds = decode(model.to(device), tok, [r.input for r in verdict_rows], t.select_batch_size,
                       t.select_max_new_tokens, t.max_input_length, device, cap=cap)
        agreement = round(sum(p.strip().lower() == r.label for p, r in zip(preds, verdict_rows)) / len(verdict_rows), 6)
    _save(model, tok, MODELS / run.name / stage)
    log = TrainingLog(
        verdict_agreement=agreement, verdict_rows=len(verdict_rows or []),
        run=run.name, dataset=run.dataset, teacher=run.teacher, method=run.method, student=run.student, labels=run.labels,
        cots=run.cots, self_evals=run.self_evals, seed=run.seed, stage=stage, device=device, precision="bf16" if cfg.bf16 else "fp32",
        forward=cfg.forward, parameters=n_params(model), init=str(init_dir) if init_dir else "base",
        world_size=dist_info()[1], rows=len(rows), epochs=_epochs_done(res.steps, len(rows), cfg, budget),
        budget_steps=budget.steps, steps=res.steps, seconds=round(res.seconds, 3),
        selection_seconds=round(res.select_seconds, 3),
        examples_per_s=round(res.examples / res.seconds, 3) if res.seconds else None,
        resumed_from_step=res.resumed_from_step, history=res.history, evals=res.evals,
        selected=res.best, paper_protocol_best=res.best_test, started_at=started, finished_at=time.time(),
    )
    write_model(METRICS / "train" / run.name / f"{stage}.json", log)
    _drop_resume_dir(run, stage)
    sel = log.selected
    print(f"{stage} {run.name}: {res.steps} steps in {res.seconds:.1f}s on {device}"
          + (f", selected step {sel.step} (valid {sel.valid_accuracy:.4f})" if sel else "")
          + (f", {log.world_size} processes" if log.world_size > 1 else ""), flush=True)
    return log
