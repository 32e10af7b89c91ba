"""Greedy decoding of the student: batched, with the KV cache, in length-sorted batches."""
from __future__ import annotations

import torch
from tqdm.auto import tqdm

from .batches import PREDICT


@torch.no_grad()
def decode(model, tok, texts: list[str], batch_size: int, max_new_tokens: int, max_input: int,
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
