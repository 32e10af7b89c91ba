"""Tokenising, length-grouped batching and dynamic padding for multi-task T5 training."""
from __future__ import annotations

import random
from dataclasses import dataclass

import torch

PREDICT, EXPLAIN = "predict: ", "explain: "


@dataclass
class Encoded:
    """Tokenised rows: ``pred_*`` for ``predict:`` -> label, ``expl_*`` for ``explain:`` -> rationale
    (``expl_target[i]`` is None for rows without a rationale)."""

    pred_input: list[list[int]]
    pred_target: list[list[int]]
    expl_input: list[list[int]]
    expl_target: list[list[int] | None]

    def __len__(self) -> int:
        return len(self.pred_input)


def encode_rows(tok, rows: list[dict], max_input: int, max_target: int) -> Encoded:
    inputs = [r["input"] for r in rows]
    enc = lambda texts, n: tok(texts, max_length=n, truncation=True)["input_ids"]  # noqa: E731
    pred_in = enc([PREDICT + x for x in inputs], max_input)
    pred_t = enc([r["label"] for r in rows], max_target)
    has_r = [i for i, r in enumerate(rows) if r.get("rationale")]
    expl_in_all = enc([EXPLAIN + inputs[i] for i in has_r], max_input) if has_r else []
    expl_t_all = enc([rows[i]["rationale"] for i in has_r], max_target) if has_r else []
    expl_in: list = [None] * len(rows)
    expl_t: list = [None] * len(rows)
    for k, i in enumerate(has_r):
        expl_in[i], expl_t[i] = expl_in_all[k], expl_t_all[k]
    return Encoded(pred_in, pred_t, expl_in, expl_t)


def length_grouped_batches(enc: Encoded, batch_size: int, seed: int, epoch: int, mega: int = 50,
                           strip: int = 8) -> list[list[int]]:
    """Shuffle, then inside mega-chunks of ``mega * batch_size`` rows sort by input length, and
    inside strips of ``strip`` batches by target length (inputs and rationales vary independently,
    so one key alone leaves much padding), then shuffle the batches: little padding, still random."""
    rng = random.Random(seed * 1_000_003 + epoch)
    idx = list(range(len(enc)))
    rng.shuffle(idx)
    chunk = mega * batch_size
    target_len = lambda i: len(enc.expl_target[i] or enc.pred_target[i])  # noqa: E731
    batches = []
    for s in range(0, len(idx), chunk):
        part = sorted(idx[s : s + chunk], key=lambda i: len(enc.pred_input[i]), reverse=True)
        for t in range(0, len(part), strip * batch_size):
            band = sorted(part[t : t + strip * batch_size], key=target_len, reverse=True)
            batches += [band[i : i + batch_size] for i in range(0, len(band), batch_size)]
    rng.shuffle(batches)
    return batches


def pad(seqs: list[list[int]], pad_id: int, fill_label: bool = False) -> torch.Tensor:
    n = max(len(s) for s in seqs)
    out = torch.full((len(seqs), n), -100 if fill_label else pad_id, dtype=torch.long)
    for i, s in enumerate(seqs):
        out[i, : len(s)] = torch.tensor(s, dtype=torch.long)
    return out


def collate(enc: Encoded, idx: list[int], pad_id: int) -> dict:
    """Padded tensors for one batch: the ``predict:`` half and, if any row has a rationale, the
    ``explain:`` half (padded only to its own batch maxima)."""
    b = {
        "pred_input_ids": pad([enc.pred_input[i] for i in idx], pad_id),
        "pred_labels": pad([enc.pred_target[i] for i in idx], pad_id, fill_label=True),
    }
    ex = [i for i in idx if enc.expl_target[i] is not None]
    if ex:
        b["expl_input_ids"] = pad([enc.expl_input[i] for i in ex], pad_id)
        b["expl_labels"] = pad([enc.expl_target[i] for i in ex], pad_id, fill_label=True)
    return b
