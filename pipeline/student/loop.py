"""The training loop: multi-task T5 loss, AdamW with linear decay, length-grouped dynamic padding,
bf16 autocast + TF32 + fused AdamW on CUDA (fp32 on CPU), per-epoch selection on the validation
split (and the paper's best-on-test number beside it), and resumable checkpoints."""
from __future__ import annotations

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
import torch.nn.functional as F
from tqdm.auto import tqdm

from .batches import PREDICT, Encoded, collate, length_grouped_batches


@dataclass
class LoopConfig:
    lr: float
    batch_size: int
    grad_accum: int
    alpha: float
    epochs: float
    max_steps: Optional[int]
    weight_decay: float
    seed: int
    device: str
    bf16: bool
    forward: str = "separate"  # separate | joint
    log_every: int = 10
    eval_every: float = 1.0  # epochs between selection evaluations (0 = only at the end)
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
    examples: int = 0
    best: Optional[dict] = None
    best_test: Optional[dict] = None
    resumed_from_step: int = 0


def dist_info() -> tuple[int, int, int]:
    """(rank, world size, local rank) under ``torchrun`` / ``accelerate launch``; (0, 1, 0) otherwise."""
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)), int(os.environ.get("LOCAL_RANK", 0))


def pick_device(pref: str) -> str:
    if pref == "cuda" or (pref == "auto" and torch.cuda.is_available()):
        _, world, local = dist_info()
        return f"cuda:{local}" if world > 1 else "cuda"
    return "cpu"


def init_distributed(device: str) -> None:
    """One process per GPU (DDP), started by ``torchrun`` or ``accelerate launch``."""
    import torch.distributed as dist

    _, world, local = dist_info()
    if world > 1 and not dist.is_initialized():
        if device.startswith("cuda"):
            torch.cuda.set_device(local)
        dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


def _token_ce(model, input_ids, labels, pad_id):
    """Summed token cross entropy and the number of target tokens.

    Unwrapped models run the encoder and decoder, then ``lm_head`` and the loss on the non-pad
    target positions only (the predict: labels are a few tokens; computing vocabulary logits for
    every padded position is most of the waste). A DDP-wrapped model goes through its own forward so
    that gradients are synchronised."""
    attn = (input_ids != pad_id).long()
    core = getattr(model, "module", model)
    dec_in = core._shift_right(labels.masked_fill(labels == -100, pad_id))
    keep = labels != -100
    if core is not model:
        logits = model(input_ids=input_ids, attention_mask=attn, decoder_input_ids=dec_in).logits
        ce = F.cross_entropy(logits.float().flatten(0, 1), labels.flatten(), ignore_index=-100, reduction="sum")
        return ce, keep.sum()
    enc = core.encoder(input_ids=input_ids, attention_mask=attn).last_hidden_state
    dec = core.decoder(input_ids=dec_in, encoder_hidden_states=enc, encoder_attention_mask=attn).last_hidden_state
    h = dec[keep]
    if core.config.tie_word_embeddings:  # T5 rescales before a tied lm_head (t5-v1_1 is untied)
        h = h * (core.model_dim ** -0.5)
    logits = core.lm_head(h)
    return F.cross_entropy(logits.float(), labels[keep], reduction="sum"), keep.sum()


def _joint_ce(model, input_ids, labels, pad_id):
    """Per-token cross entropy of one forward pass over both halves (for ``forward: joint``)."""
    attn = (input_ids != pad_id).long()
    core = getattr(model, "module", model)
    dec_in = core._shift_right(labels.masked_fill(labels == -100, pad_id))
    logits = model(input_ids=input_ids, attention_mask=attn, decoder_input_ids=dec_in).logits
    ce = F.cross_entropy(logits.float().flatten(0, 1), labels.flatten(), ignore_index=-100, reduction="none")
    return ce.view(labels.shape)


def multitask_loss(model, batch: dict, alpha: float, pad_id: int, forward: str):
    """alpha * mean CE of the predict half + (1 - alpha) * mean CE of the explain half, each a token
    mean over its own half (like the reference's two passes); label loss alone without rationales."""
    p_in, p_lab = batch["pred_input_ids"], batch["pred_labels"]
    if "expl_input_ids" not in batch:
        ce, n = _token_ce(model, p_in, p_lab, pad_id)
        l_pred = ce / n
        return l_pred, l_pred.detach(), None
    e_in, e_lab = batch["expl_input_ids"], batch["expl_labels"]
    if forward == "joint":
        n_in = max(p_in.shape[1], e_in.shape[1])
        n_lab = max(p_lab.shape[1], e_lab.shape[1])
        inp = torch.cat([F.pad(p_in, (0, n_in - p_in.shape[1]), value=pad_id), F.pad(e_in, (0, n_in - e_in.shape[1]), value=pad_id)])
        lab = torch.cat([F.pad(p_lab, (0, n_lab - p_lab.shape[1]), value=-100), F.pad(e_lab, (0, n_lab - e_lab.shape[1]), value=-100)])
        b = p_in.shape[0]
        ce_all = _joint_ce(model, inp, lab, pad_id)
        l_pred = ce_all[:b].sum() / (lab[:b] != -100).sum()
        l_expl = ce_all[b:].sum() / (lab[b:] != -100).sum()
    else:
        ce_p, n_p = _token_ce(model, p_in, p_lab, pad_id)
        ce_e, n_e = _token_ce(model, e_in, e_lab, pad_id)
        l_pred, l_expl = ce_p / n_p, ce_e / n_e
    return alpha * l_pred + (1 - alpha) * l_expl, l_pred.detach(), l_expl.detach()


def fingerprint(*parts) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(json.dumps(p, sort_keys=True, default=str).encode())
    return h.hexdigest()[:20]


def train(model, enc: Encoded, cfg: LoopConfig, pad_id: int, evaluator: Evaluator | None = None,
          resume_dir: Path | None = None, fp: str = "", desc: str = "train") -> tuple[torch.nn.Module, LoopResult]:
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
        from torch.nn.parallel import DistributedDataParallel as DDP

        init_distributed(device)
        model = DDP(model, device_ids=[local] if on_cuda else None)
    n_batches = math.ceil(len(enc) / cfg.batch_size) // world
    total_steps = max(1, math.ceil(n_batches * cfg.epochs / cfg.grad_accum))
    if cfg.max_steps:
        total_steps = min(total_steps, cfg.max_steps)
    opt_kw = {"fused": True} if on_cuda else {}
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, **opt_kw)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: max(0.0, 1.0 - s / total_steps))
    res = LoopResult()
    step, epoch, batch_pos = 0, 0, 0
    best_state = None
    state_file = resume_dir / "state.pt" if resume_dir else None
    if state_file and state_file.exists():
        st = torch.load(state_file, map_location="cpu", weights_only=False)
        if st.get("fingerprint") == fp:
            core.load_state_dict(st["model"])
            opt.load_state_dict(st["optimizer"])
            sched.load_state_dict(st["scheduler"])
            step, epoch, batch_pos = st["step"], st["epoch"], st["batch_pos"]
            res.history, res.evals, res.best, res.best_test = st["history"], st["evals"], st["best"], st["best_test"]
            best_state = st.get("best_state")
            torch.set_rng_state(st["rng"])
            res.resumed_from_step = step
            tqdm.write(f"[{desc}] resumed from step {step} (epoch {epoch}, batch {batch_pos})")
    autocast = (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if (on_cuda and cfg.bf16) else nullcontext
    eval_every_batches = max(1, round(cfg.eval_every * n_batches)) if cfg.eval_every > 0 else None

    def save_state(final: bool = False):
        if not state_file or final or rank != 0:
            return
        state_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = state_file.with_suffix(".tmp")
        torch.save({"fingerprint": fp, "model": core.state_dict(), "optimizer": opt.state_dict(),
                    "scheduler": sched.state_dict(), "step": step, "epoch": epoch, "batch_pos": batch_pos,
                    "history": res.history, "evals": res.evals, "best": res.best, "best_test": res.best_test,
                    "best_state": best_state, "rng": torch.get_rng_state()}, tmp)
        os.replace(tmp, state_file)

    def run_eval():
        nonlocal best_state
        if evaluator is None or evaluator.valid is None:
            return
        if rank != 0:  # rank 0 evaluates and keeps the best weights; the others wait
            torch.distributed.barrier()
            return
        core.eval()
        with autocast():
            v = evaluator.valid(core)
            t = evaluator.test(core) if evaluator.test else None
        core.train()
        e = {"step": step, "epoch": round(epoch + batch_pos / n_batches, 4), "valid_accuracy": v, "test_accuracy": t}
        res.evals.append(e)
        if res.best is None or v > res.best["valid_accuracy"]:
            res.best = e
            best_state = {k: t_.detach().to("cpu", copy=True) for k, t_ in core.state_dict().items()}
        if t is not None and (res.best_test is None or t > res.best_test["test_accuracy"]):
            res.best_test = e
        tqdm.write(f"[{desc}] step {step}: valid {v:.4f}" + ("" if t is None else f", test {t:.4f}"))
        if world > 1:
            torch.distributed.barrier()

    t0 = time.perf_counter()
    bar = tqdm(total=total_steps, initial=step, desc=desc, dynamic_ncols=True, mininterval=1.0, disable=rank != 0)
    micro = 0
    acc = torch.zeros(3, device=device)  # loss, pred loss, expl loss: read back only when logged
    while step < total_steps:
        batches = length_grouped_batches(enc, cfg.batch_size, cfg.seed, epoch)
        if world > 1:  # each rank takes its share of the same (seeded) batch order
            batches = batches[rank::world][:n_batches]
        while batch_pos < len(batches) and step < total_steps:
            idx = batches[batch_pos]
            b = {k: v.to(device, non_blocking=True) for k, v in collate(enc, idx, pad_id).items()}
            with autocast():
                loss, lp, le = multitask_loss(model, b, cfg.alpha, pad_id, cfg.forward)
            (loss / cfg.grad_accum).backward()
            res.examples += len(idx)
            acc += torch.stack([loss.detach(), lp, le if le is not None else torch.zeros((), device=device)]).float()
            micro += 1
            batch_pos += 1
            if micro == cfg.grad_accum:
                opt.step(); sched.step(); opt.zero_grad(set_to_none=True)
                step += 1; micro = 0
                bar.update(1)
                if step % cfg.log_every == 0 or step == total_steps:
                    a = (acc / cfg.grad_accum).tolist()
                    rec = {"step": step, "epoch": round(epoch + batch_pos / n_batches, 4), "loss": a[0],
                           "pred_loss": a[1], "expl_loss": a[2] if le is not None else None,
                           "lr": sched.get_last_lr()[0]}
                    res.history.append(rec)
                    bar.set_postfix(loss=f"{rec['loss']:.4f}")
                acc.zero_()
                if cfg.save_every_steps and step % cfg.save_every_steps == 0:
                    save_state()
            if eval_every_batches and batch_pos % eval_every_batches == 0 and micro == 0:
                run_eval()
                save_state()
        if batch_pos >= len(batches):
            epoch += 1
            batch_pos = 0
    bar.close()
    if evaluator is not None and evaluator.valid is not None and (not res.evals or res.evals[-1]["step"] != step):
        run_eval()
    res.steps = step
    res.seconds = time.perf_counter() - t0
    if best_state is not None:
        core.load_state_dict(best_state)
    return core, res


@torch.no_grad()
def generate(model, tok, texts: list[str], batch_size: int, max_new_tokens: int, max_input: int,
             device: str, prefix: str = PREDICT, desc: str | None = None) -> list[str]:
    """Batched greedy decoding with the KV cache, in length-sorted batches (little padding)."""
    model.eval()
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]), reverse=True)
    out: list = [None] * len(texts)
    it = range(0, len(order), batch_size)
    for s in (tqdm(it, desc=desc, dynamic_ncols=True, mininterval=1.0) if desc else it):
        idx = order[s : s + batch_size]
        enc = tok([prefix + texts[i] for i in idx], max_length=max_input, truncation=True, padding=True, return_tensors="pt").to(device)
        gen = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False, num_beams=1, use_cache=True)
        for i, t in zip(idx, tok.batch_decode(gen, skip_special_tokens=True)):
            out[i] = t.strip()
    return out
