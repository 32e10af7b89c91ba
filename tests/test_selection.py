"""Checkpoint selection happens where ``train.select_every`` says: every ``select_every`` epochs counted
across epoch boundaries and for fractions of an epoch, plus once at the end; with gradient accumulation
and ``max_steps``; the selected weights are those of the best evaluation; and a resumed run evaluates
where the uninterrupted one did. A tiny T5 from a config and a stub evaluator keep these fast."""
from __future__ import annotations

import pytest
import torch

from pipeline.training.loop import Evaluator, LoopConfig, selection_steps, train
from support.tiny import Stub, cfg, small_enc, tiny_model, weights_hash


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models on a shared 2-core machine: one intra-op thread is several times faster."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def run(c: LoopConfig, enc=None, stub=None, **kw):
    stub = stub or Stub()
    model, res = train(tiny_model(), enc or small_enc(), c, 0, Evaluator(valid=stub), **kw)
    return model, res, stub


def test_select_every_2_5_epochs_over_10_evaluates_after_2_5_5_7_5_and_10():
    _, res, stub = run(cfg(10, 2.5))  # 16 rows / batch 4: 4 steps an epoch, 40 steps
    assert res.steps == 40
    assert [e["step"] for e in res.evals] == [10, 20, 30, 40]
    assert [e["epoch"] for e in res.evals] == [2.5, 5.0, 7.5, 10.0]
    assert stub.calls == 4  # the end is a selection point: evaluated once, not twice


@pytest.mark.parametrize("every, epochs", [
    (0.5, [0.5 * k for k in range(1, 15)]),
    (1, [1, 2, 3, 4, 5, 6, 7]),
    (3, [3, 6, 7]),
    (2.5, [2.5, 5, 7]),
    (10, [7]),
    (0, [7]),
])
def test_selection_points_over_7_epochs(every, epochs):
    _, res, stub = run(cfg(7, every))
    assert res.steps == 28
    assert [e["epoch"] for e in res.evals] == epochs
    assert [e["step"] for e in res.evals] == [round(4 * x) for x in epochs]
    assert stub.calls == len(epochs)


def test_selection_with_gradient_accumulation_and_a_partial_batch():
    # 18 rows / batch 4: 5 batches an epoch (the last of 2 rows); 3 per optimiser step; 3 epochs: 5 steps.
    # Selection points at 5, 10, 15 batches are reached after steps 2 (6 batches), 4 (12) and 5 (15).
    _, res, _ = run(cfg(3, 1, grad_accum=3), enc=small_enc(18))
    assert res.steps == 5
    assert [e["step"] for e in res.evals] == [2, 4, 5]
    assert [e["epoch"] for e in res.evals] == [1.2, 2.4, 3.0]
    assert sum(h["examples"] for h in res.history) == 3 * 18


def test_max_steps_cuts_the_run_and_still_evaluates_at_its_end():
    _, res, _ = run(cfg(10, 2, max_steps=13))  # points at steps 8, 16, ...: only 8 exists; the end is 13
    assert res.steps == 13
    assert [e["step"] for e in res.evals] == [8, 13]
    _, res, _ = run(cfg(10, 2, max_steps=16))  # the cut falls on a selection point: once
    assert [e["step"] for e in res.evals] == [8, 16]


def test_selection_steps_rounding():
    assert selection_steps(0.1, 10, 1, 25) == list(range(1, 26))
    assert selection_steps(1 / 3, 9, 1, 18) == [3, 6, 9, 12, 15, 18]
    assert selection_steps(0.7, 10, 1, 30) == [7, 14, 21, 28, 30]
    assert selection_steps(0.01, 4, 1, 5) == [1, 2, 3, 4, 5]  # several points within a step: one evaluation
    assert selection_steps(1, 10, 4, 8) == [3, 5, 8]  # points at 10, 20, 30 batches: steps ceil(b / 4)
    assert selection_steps(0, 10, 1, 7) == [7]


def test_the_returned_model_is_the_best_evaluation():
    stub = Stub(scores=(0.1, 0.9, 0.3, 0.2))
    model, res, _ = run(cfg(4, 1), stub=stub)
    assert [e["valid_accuracy"] for e in res.evals] == [0.1, 0.9, 0.3, 0.2]
    assert res.best["step"] == 8 and res.best is res.evals[1]
    assert weights_hash(model) == stub.hashes[1] != stub.hashes[-1]


def test_a_resumed_run_evaluates_where_the_uninterrupted_one_did(tmp_path):
    c = cfg(10, 2.5, save_every_steps=3)
    _, straight, _ = run(c)
    # crash in the third evaluation (step 30), resume from the state saved after step 27
    with pytest.raises(RuntimeError, match="simulated crash"):
        run(c, stub=Stub(fail_at=3), resume_dir=tmp_path, fp="x")
    _, resumed, stub = run(c, resume_dir=tmp_path, fp="x")
    assert resumed.resumed_from_step == 27 and stub.calls == 2
    assert [(e["step"], e["epoch"]) for e in resumed.evals] == [(e["step"], e["epoch"]) for e in straight.evals]
    assert [h["loss"] for h in resumed.history] == pytest.approx([h["loss"] for h in straight.history], abs=1e-6)
