"""The multi-task objective, batching and the training loop on a tiny T5 built from a config."""
from __future__ import annotations

import json

import pytest
import torch
from transformers import AutoTokenizer, T5Config, T5ForConditionalGeneration

from pipeline.student.batches import Encoded, collate, length_grouped_batches
from pipeline.student.decode import decode
from pipeline.training.loop import LoopConfig, train
from pipeline.training.loss import multitask_loss
from support import SHARED
from support.tiny import rand_batch


def tiny_model(seed=0):
    cfg = json.loads((SHARED / "models/t5-v1_1-small-config/config.json").read_text())
    cfg.update(d_model=32, d_ff=64, d_kv=8, num_heads=4, num_layers=2, num_decoder_layers=2, dropout_rate=0.0)
    c = T5Config(**cfg)
    c.tie_word_embeddings = False
    torch.manual_seed(seed)
    return T5ForConditionalGeneration(c)


def test_multitask_loss_matches_the_reference_two_pass_objective():
    m = tiny_model().eval()
    b = rand_batch()
    with torch.no_grad():
        sep = multitask_loss(m, b, 0.3, 0, "separate")[0]
        joint = multitask_loss(m, b, 0.3, 0, "joint")[0]
        attn = lambda x: (x != 0).long()  # noqa: E731
        lp = m(input_ids=b["pred_input_ids"], attention_mask=attn(b["pred_input_ids"]), labels=b["pred_labels"]).loss
        le = m(input_ids=b["expl_input_ids"], attention_mask=attn(b["expl_input_ids"]), labels=b["expl_labels"]).loss
    ref = 0.3 * lp + 0.7 * le  # each half's own token mean, as the official TaskPrefixTrainer
    assert float(sep) == pytest.approx(float(ref), rel=1e-5)
    assert float(joint) == pytest.approx(float(ref), rel=1e-5)
    # a single mean over all target tokens is a different objective: make sure we are not computing it
    n_p, n_e = int((b["pred_labels"] != -100).sum()), int((b["expl_labels"] != -100).sum())
    pooled = (lp * n_p + le * n_e) / (n_p + n_e)
    assert abs(float(pooled) - float(ref)) > 1e-3


def test_label_only_batches_use_the_label_loss_alone():
    m = tiny_model().eval()
    b = {k: v for k, v in rand_batch().items() if k.startswith("pred")}
    with torch.no_grad():
        loss, lp, le = multitask_loss(m, b, 0.5, 0, "separate")
        ref = m(input_ids=b["pred_input_ids"], attention_mask=(b["pred_input_ids"] != 0).long(), labels=b["pred_labels"]).loss
    assert le is None and float(loss) == pytest.approx(float(ref), rel=1e-5)


def _encoded(n=96, seed=0):
    g = torch.Generator().manual_seed(seed)
    L = lambda a, b: int(torch.randint(a, b, (1,), generator=g))  # noqa: E731
    ids = lambda k: torch.randint(2, 32000, (k,), generator=g).tolist()  # noqa: E731
    pi = [ids(L(10, 60)) + [1] for _ in range(n)]
    return Encoded(pi, [ids(L(2, 6)) + [1] for _ in range(n)], [[5] + p for p in pi],
                   [ids(L(5, 40)) + [1] if i % 3 else None for i in range(n)])


def test_length_grouping_covers_every_row_once_and_pads_less_than_random():
    enc = _encoded()
    batches = length_grouped_batches(enc, 8, seed=0, epoch=0)
    assert sorted(i for b in batches for i in b) == list(range(len(enc)))
    assert batches != length_grouped_batches(enc, 8, seed=0, epoch=1)  # reshuffled every epoch

    def pad_cells(bs):
        tot = 0
        for b in bs:
            t = collate(enc, b, 0)
            tot += int((t["pred_input_ids"] == 0).sum()) + int((t.get("expl_labels", torch.zeros(0)) == -100).sum())
        return tot

    import random
    idx = list(range(len(enc)))
    random.Random(0).shuffle(idx)
    assert pad_cells(batches) < pad_cells([idx[i:i + 8] for i in range(0, len(idx), 8)])


def test_training_reduces_the_loss_and_is_seeded():
    enc = _encoded(48)
    cfg = LoopConfig(lr=3e-3, batch_size=8, grad_accum=1, alpha=0.5, epochs=6, max_steps=None, weight_decay=0.0,
                     seed=3, device="cpu", bf16=False, log_every=1)
    _, r1 = train(tiny_model(), enc, cfg, 0)
    _, r2 = train(tiny_model(), enc, cfg, 0)
    first, last = r1.history[0]["loss"], r1.history[-1]["loss"]
    assert r1.steps == 36 and last < 0.8 * first
    assert [h["loss"] for h in r1.history] == [h["loss"] for h in r2.history]


def test_generate_is_batched_greedy_and_order_preserving():
    tok = AutoTokenizer.from_pretrained(str(SHARED / "models/t5-tokenizer"))
    m = tiny_model()
    texts = ["a short one", "a much longer question about apples and oranges " * 3, "mid length text here"]
    batched = decode(m, tok, texts, batch_size=2, max_new_tokens=5, max_input=64, device="cpu")
    single = [decode(m, tok, [t], batch_size=1, max_new_tokens=5, max_input=64, device="cpu")[0] for t in texts]
    # the outputs differ from one another, so a batch returned in another order (decode sorts by
    # length inside) could not pass as this one
    assert len(set(single)) == len(texts), single
    assert batched == single
    backwards = decode(m, tok, texts[::-1], batch_size=2, max_new_tokens=5, max_input=64, device="cpu")
    assert backwards == single[::-1]
