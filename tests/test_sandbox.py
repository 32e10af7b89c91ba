"""The sandbox's synthetic source and simulated teacher (pipeline/sources/synthetic.py,
pipeline/teacher/simulated.py): seeded, in SVAMP's format (the real svamp task parses and scores every
row and every CoT), and with the error rates, error kinds and verdict accuracy the settings ask for."""
from __future__ import annotations

import pytest
from pydantic import ValidationError

from pipeline.core.records import Example
from pipeline.core.spec import SyntheticSource
from pipeline.core.spec_teachers import SimulatedTeacher
from pipeline.sources.synthetic import generate
from pipeline.tasks import get_task
from pipeline.tasks.arith import safe_eval
from pipeline.teacher.simulated import simulate

SVAMP = get_task("svamp")
SOURCE = dict(kind="synthetic", train=400, test=50, min_steps=2, max_steps=4, max_number=9, seed=0)


def examples(n=400) -> list[Example]:
    rows = generate(SyntheticSource(**{**SOURCE, "train": n}))["train"]
    return [Example(split="train", origin="train", index=i, **{**SVAMP.from_hub_row(r)}) for i, r in enumerate(rows)]


def test_generator_is_seeded_and_in_svamp_format():
    a, b = generate(SyntheticSource(**SOURCE)), generate(SyntheticSource(**SOURCE))
    assert a == b and a != generate(SyntheticSource(**{**SOURCE, "seed": 1}))
    for row in a["train"] + a["test"]:
        ex = SVAMP.from_hub_row(row)
        v = safe_eval(ex["label"])
        assert v is not None and v >= 0 and v == int(v), row
        ops = sum(ex["label"].count(op) for op in "+-*")
        assert 2 <= ops <= 4, row
    texts = [f"{r['Body']} {r['Question']}" for r in a["train"] + a["test"]]
    assert len(set(texts)) == len(texts)


def test_simulated_teacher_has_the_error_rates_it_is_set_to():
    t = SimulatedTeacher(backend="simulated", cots=5, self_evals=3, error_rate=0.3, spottable_share=0.7,
                         verdict_accuracy=0.9, seed=0, splits=["train"], self_eval_splits=["train"])
    exs = examples()
    out = simulate(SVAMP, t, {"train": exs})
    cots = [c for r in out.records["train"] for c in r["cots"]]
    assert len(cots) == 5 * len(exs) and all(c["status"] == "ok" for c in cots)  # the svamp task parses every CoT
    wrong = [c for c in cots if not c["correct"]]
    assert abs(len(wrong) / len(cots) - 0.3) < 0.04
    kinds = out.error_kinds
    assert abs((kinds["operand"] + kinds["operator"]) / max(1, len(wrong)) - 0.7) < 0.06
    assert sum(kinds.values()) == len(cots) and kinds["none"] == len(cots) - len(wrong)
    # the answer of an arithmetic slip is wrong in its rationale: the student's checker finds the false step
    slips = [c for c in cots if c["source"].split(":")[1].startswith("arithmetic")]
    assert slips and all(SVAMP.error_kind(c["rationale"]) == "arithmetic" for c in slips)
    verdicts = [(e["verdict"], c["correct"]) for c in cots for e in c["evaluations"]]
    assert all(v in ("correct", "wrong") for v, _ in verdicts)
    right = sum((v == "correct") == ok for v, ok in verdicts)
    assert abs(right / len(verdicts) - 0.9) < 0.03
    again = simulate(SVAMP, t, {"train": exs})
    assert again.records == out.records  # seeded


@pytest.mark.parametrize("key,value", [("error_rate", 1.5), ("verdict_accuracy", -0.1), ("spottable_share", 2)])
def test_rates_outside_0_1_are_refused(key, value):
    base = dict(backend="simulated", cots=5, self_evals=5, error_rate=0.3, spottable_share=0.7, verdict_accuracy=0.9,
                seed=0)
    with pytest.raises(ValidationError, match=key):
        SimulatedTeacher(**{**base, key: value})
