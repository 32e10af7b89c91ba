"""The training loop (its loss is ``loss.py``, the DDP helpers ``distributed.py``, decoding ``pipeline/student/decode.py``):
AdamW with linear decay, length-grouped dynamic padding,
bf16 autocast + TF32 + fused AdamW on CUDA (fp32 on CPU), checkpoint selection on the validation
split (and the paper's best-on-test number beside it), resumable checkpoints, and exact data-parallel
training (DDP, one process per device under ``torchrun``).

Data and steps. An epoch is the seeded, length-grouped order of *global batches*
``length_grouped_batches(enc, world * batch_size, seed, epoch)``: every row exactly once, the one
partial batch included (``n_batches = ceil(rows / (world * batch_size))`` of them). A micro-step
consumes one global batch; ``grad_accum`` micro-steps make an optimiser step (an accumulation may
straddle an epoch boundary). So after ``step`` optimiser steps every rank has consumed exactly
``step * grad_accum`` global batches, i.e. ``step * grad_accum / n_batches`` epochs: the step is the
one counter every decision (evaluate, save, stop) is taken from, identical on all ranks and saved in
the resume state. ``total_steps = ceil(n_batches * epochs / grad_accum)`` (or ``steps`` when the budget is
in steps), capped by ``max_steps``.

Data parallel. Rank ``r`` of ``world`` takes a contiguous slice of each global batch, the sizes as
even as possible (``n // world``, plus one for the first ``n % world`` ranks): across ranks every
row is used exactly once per epoch, none dropped, none doubled, and every rank does the same number
of micro- and optimiser steps (matched collectives). A rank whose slice is empty (a last global batch
with fewer rows than ranks) runs the batch's first row with weight 0, so its gradient all-reduce
still pairs with the others'. Loss: on each rank, each half's *summed* token cross entropy is divided
by that half's token count over the whole global batch (known on every rank from the shared order,
without communication), so the ranks' losses add up to the single-process loss of the global batch
(``multitask_loss(..., denoms=...)``); each rank back-propagates ``world`` times its part because DDP
averages gradients, which makes the gradient that of one process on the same global batch (up to
float summation order, and with dropout off: each rank draws its own dropout masks). Micro-steps before the last of an accumulation skip the gradient all-reduce
(``no_sync``). On log steps the ranks' loss parts and row counts are all-reduced (summed): a history
record's losses are those of the global batches of its step and ``examples`` the rows all ranks
trained on in that step (checked against the shared order), so a ``world``-process log reads like
the 1-process log with ``batch_size * world`` (the same global batches).

Selection. With ``eval_every = e > 0`` epochs, the selection points are at ``k * e`` epochs
(k = 1, 2, ...), counted across epoch boundaries and for fractions of an epoch; each is evaluated
after the first optimiser step that reaches it (the step ``ceil(k * e * n_batches / grad_accum)``),
points beyond ``total_steps`` do not exist, and the last step is always evaluated, once (``e = 0``:
only there). Rank 0 evaluates and keeps the best weights; the other ranks wait at a barrier.

Resume. The state (rank 0 writes it at every selection point and every ``save_every_steps`` steps)
holds the weights, optimiser, scheduler, step, history, evaluations, best weights and every rank's
RNG state; it is used only by a run with the same fingerprint, format and world size, and such a run
continues exactly where the interrupted one was (the data position is ``step * grad_accum``).
"""
from __future__ import annotations

import sys

import hashlib
import json
import math
import os
import random
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import torch
from tqdm.auto import tqdm

from ..student.batches import Encoded, collate, length_grouped_batches
from ..student.distributed import dist_info, init_distributed, rank_slice
from .loss import multitask_loss
from .schedule import selection_steps


def _say(msg: str) -> None:
    """A progress line, printed as it happens: on stderr (never block-buffered, even when DVC or a
    user redirects it), above the progress bar."""
    tqdm.write(msg, file=sys.stderr)


@dataclass
class LoopConfig:
    lr: float
    batch_size: int  # per rank: a micro-step takes world * batch_size rows
    grad_accum: int
    alpha: float
    epochs: Optional[float]  # the stage's length: epochs, or `steps` optimiser steps when set
    max_steps: Optional[int]
    weight_decay: float
    seed: int
    device: str
    bf16: bool
    forward: str = "separate"  # separate | joint
    log_every: int = 10
    eval_every: float = 1.0  # epochs between selection evaluations (0 = only at the end)
    eval_every_steps: Optional[int] = None  # optimiser steps between selection evaluations (instead of eval_every)
    steps: Optional[int] = None  # the stage's length in optimiser steps (instead of epochs)
    save_every_steps: int = 0  # resumable checkpoint cadence (0 = at evaluations only)


@dataclass
class Evaluator:
    """Scores a model on the validation split (selection) and, optionally, on test (paper protocol)."""

    valid: Callable[[torch.nn.Module], float] | None
    test: Callable[[torch.nn.Module], float] | None = None


@dataclass
class LoopResult:
    history: list = field(default_factory=list)
    evals: list = field(default_factory=list)
    steps: int = 0
    seconds: float = 0.0
    examples: int = 0  # rows trained on in this run (all ranks together; not counting steps before a resume)
    select_seconds: float = 0.0  # of ``seconds``, the time in selection evaluations (rank 0)
    best: Optional[dict] = None
    best_test: Optional[dict] = None
    resumed_from_step: int = 0


def seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


def fingerprint(*parts) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(json.dumps(p, sort_keys=True, default=str).encode())
    return h.hexdigest()[:20]


STATE_FORMAT = 2  # resume state layout (bumped when its meaning changes: older states are ignored)


def train(model, enc: Encoded, cfg: LoopConfig, pad_id: int, evaluator: Evaluator | None = None,
          resume_dir: Path | None = None, fp: str = "", desc: str = "train") -> tuple[torch.nn.Module, LoopResult]:
    """Train ``model`` on ``enc`` (see the module docstring for the data, step and selection rules);
    returns the unwrapped model, loaded with the selected weights on rank 0, and the result (rank 0's
    holds the evaluations)."""
    device = cfg.device
    on_cuda = device.startswith("cuda")
    if on_cuda:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    seed_everything(cfg.seed)
    rank, world, local = dist_info()
    model.to(device)
    model.train()
    core = model
    if world > 1:
        import torch.distributed as dist
        from torch.nn.parallel import DistributedDataParallel as DDP

        init_distributed(device)
        model = DDP(model, device_ids=[local] if on_cuda else None)
    ga = cfg.grad_accum
    global_bs = world * cfg.batch_size
    n_batches = math.ceil(len(enc) / global_bs)  # global batches per epoch
    total_steps = cfg.steps if cfg.steps else max(1, math.ceil(n_batches * cfg.epochs / ga))
    if cfg.max_steps:
        total_steps = min(total_steps, cfg.max_steps)
    has_eval = evaluator is not None and evaluator.valid is not None
    eval_at = set(selection_steps(cfg.eval_every, n_batches, ga, total_steps, cfg.eval_every_steps)) if has_eval else set()
    opt_kw = {"fused": True} if on_cuda else {}
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, **opt_kw)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: max(0.0, 1.0 - s / total_steps))
    res = LoopResult()
    step = 0
    best_state = None
    state_file = resume_dir / "state.pt" if resume_dir else None

    def rng_state():
        return {"cpu": torch.get_rng_state(), "cuda": torch.cuda.get_rng_state(device) if on_cuda else None}

    if state_file and state_file.exists():
        st = torch.load(state_file, map_location="cpu", weights_only=False)
        if st.get("fingerprint") == fp and st.get("format") == STATE_FORMAT and st.get("world") == world:
            core.load_state_dict(st["model"])
            opt.load_state_dict(st["optimizer"])
            sched.load_state_dict(st["scheduler"])
            step = st["step"]
            res.history, res.evals, res.best, res.best_test = st["history"], st["evals"], st["best"], st["best_test"]
            best_state = st.get("best_state")
            rng = st["rng"][rank]
            torch.set_rng_state(rng["cpu"])
            if on_cuda and rng["cuda"] is not None:
                torch.cuda.set_rng_state(rng["cuda"], device)
            res.resumed_from_step = step
            if rank == 0:
                _say(f"[{desc}] resumed from step {step} (epoch {step * ga / n_batches:.4f})")
        elif rank == 0:
            _say(f"[{desc}] {state_file}: another run's state (settings, data, format or world size differ), starting afresh")
    autocast = (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if (on_cuda and cfg.bf16) else nullcontext
    epoch_at = lambda s: round(s * ga / n_batches, 4)  # noqa: E731  (epochs done after optimiser step s)

    def save_state():
        """Called at the same steps on every rank (it gathers the ranks' RNG states)."""
        if not state_file:
            return
        rngs = [rng_state()]
        if world > 1:
            rngs = [None] * world
            dist.all_gather_object(rngs, rng_state())
        if rank != 0:
            return
        state_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = state_file.with_suffix(".tmp")
        torch.save({"format": STATE_FORMAT, "fingerprint": fp, "world": world, "model": core.state_dict(),
                    "optimizer": opt.state_dict(), "scheduler": sched.state_dict(), "step": step,
                    "epoch": epoch_at(step), "history": res.history, "evals": res.evals, "best": res.best,
                    "best_test": res.best_test, "best_state": best_state, "rng": rngs}, tmp)
        os.replace(tmp, state_file)

    def run_eval():
        """Called at the same steps on every rank: rank 0 evaluates, the others wait for it."""
        nonlocal best_state
        if rank == 0:
            t_eval = time.perf_counter()
            core.eval()
            with autocast():
                v = evaluator.valid(core)
                t = evaluator.test(core) if evaluator.test else None
            core.train()
            e = {"step": step, "epoch": epoch_at(step), "valid_accuracy": v, "test_accuracy": t}
            res.evals.append(e)
            if res.best is None or v > res.best["valid_accuracy"]:
                res.best = e
                best_state = {k: t_.detach().to("cpu", copy=True) for k, t_ in core.state_dict().items()}
            if t is not None and (res.best_test is None or t > res.best_test["test_accuracy"]):
                res.best_test = e
            res.select_seconds += time.perf_counter() - t_eval
            _say(f"[{desc}] step {step}: valid {v:.4f}" + ("" if t is None else f", test {t:.4f}"))
        if world > 1:
            dist.barrier()

    t0 = time.perf_counter()
    bar = tqdm(total=total_steps, initial=step, desc=desc, dynamic_ncols=True, mininterval=1.0, disable=rank != 0)
    micro, step_examples, step_expl = 0, 0, False
    # this rank's parts of the loss, pred loss, expl loss and its rows: read back only when logged
    acc = torch.zeros(4, device=device)
    epoch, pos = divmod(step * ga, n_batches)  # saves happen at optimiser steps, where micro == 0
    while step < total_steps:
        order = length_grouped_batches(enc, global_bs, cfg.seed, epoch)
        assert len(order) == n_batches
        while pos < n_batches and step < total_steps:
            gb = order[pos]
            idx = rank_slice(gb, rank, world) if world > 1 else gb
            weight = 1.0 if idx else 0.0  # an empty part runs one row with weight 0 (matched all-reduce)
            denoms = None
            n_expl = sum(1 for i in gb if enc.expl_target[i] is not None)
            if world > 1:
                denoms = (sum(len(enc.pred_target[i]) for i in gb),
                          sum(len(enc.expl_target[i]) for i in gb if enc.expl_target[i] is not None))
            b = {k: v.to(device, non_blocking=True) for k, v in collate(enc, idx or gb[:1], pad_id).items()}
            sync = model.no_sync if (world > 1 and micro + 1 < ga) else nullcontext
            with sync():
                with autocast():
                    loss, lp, le = multitask_loss(model, b, cfg.alpha, pad_id, cfg.forward, denoms)
                (loss * (weight * world / ga) if world > 1 else loss / ga).backward()
            zero = torch.zeros((), device=device)
            acc += torch.stack([weight * loss.detach(), weight * lp, weight * le if le is not None else zero,
                                zero + len(idx)]).float()
            step_examples += len(gb)
            step_expl |= n_expl > 0
            micro += 1
            pos += 1
            if micro < ga:
                continue
            opt.step(); sched.step(); opt.zero_grad(set_to_none=True)
            step += 1; micro = 0
            res.examples += step_examples
            bar.update(1)
            if step % cfg.log_every == 0 or step == total_steps:
                if world > 1:
                    dist.all_reduce(acc)  # sums: global losses and rows
                a = (acc[:3] / ga).tolist()
                rows = round(float(acc[3]))
                assert rows == step_examples, f"step {step}: ranks trained on {rows} rows, expected {step_examples}"
                rec = {"step": step, "epoch": epoch_at(step), "loss": a[0], "pred_loss": a[1],
                       "expl_loss": a[2] if step_expl else None, "lr": sched.get_last_lr()[0], "examples": rows}
                res.history.append(rec)
                bar.set_postfix(loss=f"{rec['loss']:.4f}")
            acc.zero_()
            step_examples, step_expl = 0, False
            evaluated = step in eval_at
            if evaluated:
                run_eval()
            if evaluated or (cfg.save_every_steps and step % cfg.save_every_steps == 0):
                save_state()
        if pos >= n_batches:
            epoch += 1
            pos = 0
    bar.close()
    res.steps = step
    res.seconds = time.perf_counter() - t0
    if best_state is not None:
        core.load_state_dict(best_state)
    return core, res
