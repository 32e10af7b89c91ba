"""Decoding of the student: batched greedy decoding with the KV cache, in length-sorted batches; seeded
sampling (k answers or rationales per input); and its verdicts as a judge.

Sampling draws from torch's global generator, re-seeded before each batch from (seed, batch), so the
same seed and batch size give the same samples, in any process. A judge's P(correct) is the student's
``predict:`` probability of the verdict word ``correct`` against the other verdict words (each a whole
target sequence, teacher-forced): no generation, no parsing of free text."""
from __future__ import annotations

import torch
from tqdm.auto import tqdm

from .batches import PREDICT


@torch.no_grad()
def decode(model, tok, texts: list[str], batch_size: int, max_new_tokens: int, max_input: int,
           device: str, prefix: str = PREDICT, desc: str | None = None, cap: int | None = None) -> list[str]:
    """Batched greedy decoding with the KV cache, in length-sorted batches (little padding).

    ``cap`` (< ``max_new_tokens``): decode every row to at most ``cap`` tokens, then decode again, to
    ``max_new_tokens``, only the rows that reached ``cap`` without ending. The result is the uncapped
    decoding's (greedy decoding is a function of the input), while a batch no longer waits for its
    one long row: selection decodes with ``cap`` = the longest training label. The second pass batches the
    unfinished rows together, so their padding differs from the first pass's; in exact arithmetic that
    changes nothing, and the tests find the same predictions on CPU (fp32). Under bf16 a near-tie between
    two tokens could in principle break the other way, as it can for any change of batch size."""
    if cap is not None and cap < max_new_tokens:
        out, unfinished = _greedy(model, tok, texts, batch_size, cap, max_input, device, prefix, desc)
        if unfinished:
            rest, _ = _greedy(model, tok, [texts[i] for i in unfinished], batch_size, max_new_tokens, max_input, device,
                              prefix, None)
            for i, t in zip(unfinished, rest):
                out[i] = t
        return out
    return _greedy(model, tok, texts, batch_size, max_new_tokens, max_input, device, prefix, desc)[0]


def _greedy(model, tok, texts, batch_size, max_new_tokens, max_input, device, prefix, desc) -> tuple[list[str], list[int]]:
    """The decoded texts, and the indices of the rows that ended without an end of sequence."""
    model.eval()
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]), reverse=True)
    out: list = [None] * len(texts)
    unfinished: list[int] = []
    eos = model.generation_config.eos_token_id
    eos = torch.tensor([] if eos is None else eos if isinstance(eos, list) else [eos], dtype=torch.long)
    it = range(0, len(order), batch_size)
    for s in (tqdm(it, desc=desc, dynamic_ncols=True, mininterval=1.0) if desc else it):
        idx = order[s : s + batch_size]
        enc = tok([prefix + texts[i] for i in idx], max_length=max_input, truncation=True, padding=True, return_tensors="pt").to(device)
        gen = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False, num_beams=1, use_cache=True)
        ended = torch.isin(gen, eos.to(gen.device)).any(dim=1).tolist()
        for i, t, done in zip(idx, tok.batch_decode(gen, skip_special_tokens=True), ended):
            out[i] = t.strip()
            if not done:
                unfinished.append(i)
    return out, sorted(unfinished)


def _batches(n: int, batch_size: int, desc: str | None):
    it = range(0, n, batch_size)
    return tqdm(it, desc=desc, dynamic_ncols=True, mininterval=1.0) if desc else it


@torch.no_grad()
def sample(model, tok, texts: list[str], k: int, prefix: str, *, batch_size: int, max_new_tokens: int,
           max_input: int, device: str, temperature: float, top_p: float, seed: int,
           desc: str | None = None) -> list[list[str]]:
    """k samples per text (ancestral sampling at ``temperature``, nucleus ``top_p``), in input order."""
    model.eval()
    out: list[list[str]] = []
    for b, s in enumerate(_batches(len(texts), batch_size, desc)):
        chunk = [prefix + t for t in texts[s : s + batch_size]]
        enc = tok(chunk, max_length=max_input, truncation=True, padding=True, return_tensors="pt").to(device)
        torch.manual_seed(seed * 1_000_003 + b)
        gen = model.generate(**enc, do_sample=True, temperature=temperature, top_p=top_p, top_k=0,
                             num_return_sequences=k, max_new_tokens=max_new_tokens, num_beams=1, use_cache=True)
        texts_out = [t.strip() for t in tok.batch_decode(gen, skip_special_tokens=True)]
        out += [texts_out[i * k : (i + 1) * k] for i in range(len(chunk))]
    return out


@torch.no_grad()
def verdict_probabilities(model, tok, texts: list[str], verdicts: list[str], prefix: str, *, batch_size: int,
                          max_input: int, device: str, desc: str | None = None) -> list[list[float]]:
    """For each text, the softmax over ``verdicts`` of the student's log-likelihood of each verdict as the
    whole ``predict:`` target (its tokens and the end of sequence)."""
    model.eval()
    targets = tok(verdicts, return_tensors="pt", padding=True).to(device)
    cand, cand_mask = targets["input_ids"], targets["attention_mask"]
    out: list[list[float]] = []
    for s in _batches(len(texts), batch_size, desc):
        chunk = [prefix + t for t in texts[s : s + batch_size]]
        enc = tok(chunk, max_length=max_input, truncation=True, padding=True, return_tensors="pt").to(device)
        encoded = model.get_encoder()(**enc)
        scores = []
        for v in range(len(verdicts)):
            labels = cand[v : v + 1].expand(len(chunk), -1)
            mask = cand_mask[v : v + 1].expand(len(chunk), -1)
            logits = model(encoder_outputs=encoded, attention_mask=enc["attention_mask"],
                           labels=labels.masked_fill(mask == 0, -100)).logits.float()
            logp = torch.log_softmax(logits, -1).gather(-1, labels.unsqueeze(-1)).squeeze(-1)
            scores.append((logp * mask).sum(-1))
        out += torch.softmax(torch.stack(scores, -1), -1).tolist()
    return out
