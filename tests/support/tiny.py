"""A tiny T5 built from a config, short encoded rows, a loop config and a stub evaluator: the training
loop's tests (tests/test_selection.py, tests/test_ddp.py and its torchrun worker) run on these in
seconds. Imports no pytest: the torchrun worker imports this module."""
from __future__ import annotations

import hashlib
import json

import torch
from transformers import T5Config, T5ForConditionalGeneration

from pipeline.student.batches import Encoded
from pipeline.training.loop import LoopConfig
from pipeline.student.model import tie_input_embeddings
from support import SHARED

VOCAB = 256


def tiny_model(seed=0):
    """tests/test_student.py's tiny T5 with a 256-token vocabulary (the 32k one is most of its time),
    its input embeddings tied like every T5 checkpoint's and ``build_model``'s (an untied, unused
    ``shared`` would be a parameter without gradient, which DDP refuses)."""
    cfg = json.loads((SHARED / "models/t5-v1_1-small-config/config.json").read_text())
    cfg.update(d_model=32, d_ff=64, d_kv=8, num_heads=4, num_layers=2, num_decoder_layers=2, dropout_rate=0.0,
               vocab_size=VOCAB)
    c = T5Config(**cfg)
    c.tie_word_embeddings = False
    torch.manual_seed(seed)
    model = T5ForConditionalGeneration(c)
    tie_input_embeddings(model)
    return model


def small_enc(n=16, seed=0) -> Encoded:
    """``n`` short rows, every third without a rationale."""
    g = torch.Generator().manual_seed(seed)
    L = lambda a, b: int(torch.randint(a, b, (1,), generator=g))  # noqa: E731
    ids = lambda k: torch.randint(2, VOCAB, (k,), generator=g).tolist()  # noqa: E731
    pi = [ids(L(3, 9)) + [1] for _ in range(n)]
    return Encoded(pi, [ids(L(1, 3)) + [1] for _ in range(n)], [[5] + p for p in pi],
                   [ids(L(2, 7)) + [1] if i % 3 else None for i in range(n)])


def cfg(epochs, every, batch_size=4, grad_accum=1, max_steps=None, **kw) -> LoopConfig:
    return LoopConfig(lr=1e-3, batch_size=batch_size, grad_accum=grad_accum, alpha=0.5, epochs=epochs,
                      max_steps=max_steps, weight_decay=0.0, seed=1, device="cpu", bf16=False, log_every=1,
                      eval_every=every, **kw)


def weights_hash(model) -> str:
    h = hashlib.sha256()
    for k, v in sorted(model.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().cpu().numpy().tobytes())
    return h.hexdigest()


class Stub:
    """A validation "accuracy" per call from ``scores`` (cycled); remembers the weights it saw."""

    def __init__(self, scores=(0.5,), fail_at: int | None = None):
        self.scores, self.fail_at, self.calls, self.hashes = list(scores), fail_at, 0, []

    def __call__(self, model) -> float:
        self.calls += 1
        if self.fail_at is not None and self.calls == self.fail_at:
            raise RuntimeError("simulated crash")
        self.hashes.append(weights_hash(model))
        return self.scores[(self.calls - 1) % len(self.scores)]


def rand_batch(seed=1, pad_expl_inputs=False) -> dict:
    """A multi-task batch of random ids (T5 vocabulary) with masked label tails and padded inputs:
    the loss tests' input (``pad_expl_inputs`` also pads one ``explain:`` input row)."""
    g = torch.Generator().manual_seed(seed)
    r = lambda n, length: torch.randint(2, 32000, (n, length), generator=g)  # noqa: E731
    b = {"pred_input_ids": r(4, 20), "pred_labels": r(4, 5), "expl_input_ids": r(4, 22), "expl_labels": r(4, 30)}
    b["pred_labels"][0, 3:] = -100
    b["expl_labels"][1, 10:] = -100
    b["pred_input_ids"][2, 15:] = 0
    if pad_expl_inputs:
        b["expl_input_ids"][3, 12:] = 0
    return b
