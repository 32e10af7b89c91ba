"""Cheaper selection (``train.select_cap``): decoding every row to the longest training label first and
only the rows still going to ``select_max_new_tokens`` gives exactly the uncapped predictions (so the
same selection), on a tiny T5 whose answers end at different lengths."""
from __future__ import annotations

import json

import pytest
import torch
from transformers import AutoTokenizer, T5Config, T5ForConditionalGeneration

from pipeline.student import decode as decode_mod
from support import SHARED

pytestmark = pytest.mark.skipif(not (SHARED / "models/t5-tokenizer").exists(), reason="shared tokenizer not found")


@pytest.fixture(scope="module")
def model_and_tok():
    torch.set_num_threads(1)
    cfg = json.loads((SHARED / "models/t5-v1_1-small-config/config.json").read_text())
    cfg.update(d_model=32, d_ff=64, d_kv=8, num_heads=4, num_layers=2, num_decoder_layers=2, dropout_rate=0.0)
    torch.manual_seed(0)
    m = T5ForConditionalGeneration(T5Config(**cfg))
    with torch.no_grad():  # an end-of-sequence row that wins at some steps of some inputs: answers of mixed lengths
        m.lm_head.weight[1] = torch.randn(32) * 3.0
    return m, AutoTokenizer.from_pretrained(SHARED / "models/t5-tokenizer")


def test_capped_decoding_gives_the_uncapped_predictions(model_and_tok, monkeypatch):
    m, tok = model_and_tok
    texts = [f"question {i} " + "word " * (i % 7) for i in range(40)]
    full = decode_mod.decode(m, tok, texts, 8, 32, 64, "cpu")
    calls = []
    real = decode_mod._greedy
    monkeypatch.setattr(decode_mod, "_greedy", lambda *a: calls.append((len(a[2]), a[4])) or real(*a))
    capped = decode_mod.decode(m, tok, texts, 8, 32, 64, "cpu", cap=6)
    assert capped == full
    lengths = [len(tok(x).input_ids) for x in full]  # with the end of sequence
    short, long_ = sum(n <= 6 for n in lengths), sum(n > 6 for n in lengths)
    assert short and long_, lengths  # both branches: answers ending within the cap, and rows decoded again
    assert calls == [(40, 6), (long_, 32)]  # one capped pass, then only the unfinished rows, uncapped


def test_a_cap_at_or_above_the_limit_is_one_pass(model_and_tok, monkeypatch):
    m, tok = model_and_tok
    calls = []
    real = decode_mod._greedy
    monkeypatch.setattr(decode_mod, "_greedy", lambda *a: calls.append(a[4]) or real(*a))
    decode_mod.decode(m, tok, ["a", "b"], 8, 16, 64, "cpu", cap=16)
    assert calls == [16]
