"""Per-dataset training budgets (``methods.<m>.datasets.<d>``, pipeline/core/spec_budget.py): a stage's
epochs or steps and stage 2's selection cadence, overriding the method's defaults for one dataset; the
run's name unchanged; runs.yaml naming exactly the params keys each stage's budget reads; the loop
training for the steps and selecting at the cadence; bad overrides one line naming the key."""
from __future__ import annotations

import io
import re
from pathlib import Path

import pytest
import torch
from ruamel.yaml import YAML

from pipeline.core.errors import PipelineError
from pipeline.core.spec import load_params
from pipeline.runs import Plan, plan
from pipeline.training.loop import Evaluator, train
from support import ROOT
from support.tiny import Stub, cfg, small_enc, tiny_model

RUN = "svamp-gpt35-cot5_se-base-teacher-k5-m5-s42"  # a two-stage run of the offline profile


def _params(tmp_path: Path, edit=None, profile: str = "offline"):
    doc = YAML(typ="rt").load((ROOT / "profiles" / f"{profile}.yaml").read_text(encoding="utf-8"))
    if edit:
        edit(doc)
    buf = io.StringIO()
    YAML(typ="rt").dump(doc, buf)
    tmp_path.mkdir(parents=True, exist_ok=True)
    p = tmp_path / "params.yaml"
    p.write_text(buf.getvalue(), encoding="utf-8")
    return load_params(p)


def _override(method: str, dataset: str, budget: dict):
    return lambda d: d["methods"][method].__setitem__("datasets", {dataset: budget})


def test_without_an_override_a_stage_keeps_the_methods_epochs_and_the_train_cadence(tmp_path):
    p = _params(tmp_path)
    m = p.methods["cot5_se"]
    b1, b2 = p.budget("cot5_se", "svamp", "stage1"), p.budget("cot5_se", "svamp", "stage2")
    assert (b1.epochs, b1.steps) == (m.se_epochs, None)
    assert (b2.epochs, b2.steps, b2.select_every, b2.select_every_steps) == (m.epochs, None, p.train.select_every, None)


def test_an_override_sets_steps_and_cadence_for_its_dataset_only_and_keeps_the_run_name(tmp_path):
    base = _params(tmp_path / "a")
    p = _params(tmp_path / "b", _override("cot5_se", "svamp", {"stage1": {"steps": 7}, "stage2": {"epochs": 3, "select_every_steps": 5}}))
    assert p.budget("cot5_se", "svamp", "stage1").steps == 7
    b2 = p.budget("cot5_se", "svamp", "stage2")
    assert (b2.epochs, b2.steps, b2.select_every, b2.select_every_steps) == (3, None, None, 5)
    assert p.budget("cot5_se", "cqa", "stage2").epochs == p.methods["cot5_se"].epochs  # another dataset: the default
    assert list(Plan(p).runs) == list(Plan(base).runs)


def test_runs_yaml_names_the_keys_each_stage_reads_and_dvc_yaml_lists_them(tmp_path):
    p = _params(tmp_path, _override("cot5_se", "svamp", {"stage2": {"select_every_steps": 5}}))
    run = plan(p)["runs"][RUN]
    # stage 2: the override (its cadence) and the default epochs (its length); stage 1: the default
    assert run["stage2_budget"] == "methods.cot5_se.datasets.svamp.stage2"
    assert run["stage2_length"] == "methods.cot5_se.epochs"
    assert run["stage1_budget"] == run["stage1_length"] == "methods.cot5_se.se_epochs"
    p = _params(tmp_path, _override("cot5_se", "svamp", {"stage1": {"steps": 9}}))
    run = plan(p)["runs"][RUN]
    assert run["stage1_budget"] == run["stage1_length"] == "methods.cot5_se.datasets.svamp.stage1"
    one_stage = plan(p)["runs"]["svamp-gpt35-cot1-base-teacher-k1-m0-s42"]
    assert "stage1_budget" not in one_stage and one_stage["stage2_budget"] == "methods.cot1.epochs"
    stages = YAML(typ="safe").load((ROOT / "dvc.yaml").read_text(encoding="utf-8"))["stages"]
    for stage in ("stage1", "stage2"):
        params = stages[stage]["do"]["params"]
        assert f"${{item.{stage}_budget}}" in params and f"${{item.{stage}_length}}" in params, params
        assert not any("epochs" in str(x) for x in params), params  # no default key listed beside the override


def test_the_paper_profile_keeps_svamps_official_epochs_and_budgets_cqa_and_anli_in_steps():
    p = load_params(ROOT / "profiles" / "paper.yaml")
    for name, m in p.methods.items():
        assert not m.datasets.get("svamp"), name
        for ds in ("cqa", "anli1"):
            assert p.budget(name, ds, "stage2").steps and p.budget(name, ds, "stage2").select_every_steps == 2000
    # the SVAMP budget in rows seen x 640,000 / 216,000 (DSS's 10,000 steps at batch 64), at batch 16
    svamp_rows = {"standard_ft": 720 * 300, "cot1": 720 * 300, "cot5": 3600 * 60, "cot5_se": 3600 * 80}
    for name, rows in svamp_rows.items():
        assert p.budget(name, "anli1", "stage2").steps == round(rows * 640_000 / 216_000 / 16), name
    assert p.budget("cot5_se", "cqa", "stage1").steps == round(18_000 * 50 * 640_000 / 216_000 / 16)


def test_a_budget_in_steps_trains_exactly_those_steps_and_selects_every_n_steps():
    torch.set_num_threads(1)
    stub = Stub()
    # 16 rows / batch 4 = 4 steps an epoch; 10 steps whatever the epochs; selection every 3 steps and at the end
    _, res = train(tiny_model(), small_enc(), cfg(None, 0, steps=10, eval_every_steps=3), 0, Evaluator(valid=stub))
    assert res.steps == 10
    assert [e["step"] for e in res.evals] == [3, 6, 9, 10]
    assert res.evals[-1]["epoch"] == 2.5
    _, res = train(tiny_model(), small_enc(), cfg(None, 0, steps=10, max_steps=4), 0, Evaluator(valid=Stub()))
    assert res.steps == 4  # train.max_steps still caps a budget in steps


@pytest.mark.parametrize("edit,expected", [
    (_override("cot5", "gsm8k", {"stage2": {"steps": 5}}),
     r"methods\.cot5\.datasets\.gsm8k: not a key of datasets .*known: svamp"),
    (_override("cot5", "svamp", {"stage2": {"steps": 5, "epochs": 2}}),
     r"methods\.cot5\.datasets\.svamp\.stage2: .*set epochs or steps, not both"),
    (_override("cot5", "svamp", {"stage2": {"select_every": 1, "select_every_steps": 5}}),
     r"methods\.cot5\.datasets\.svamp\.stage2: .*set select_every or select_every_steps, not both"),
    (_override("cot5", "svamp", {"stage1": {"steps": 5}}),
     r"params\.yaml:\d+: methods\.cot5\.datasets\.svamp\.stage1: this method has no stage 1"),
    (_override("cot5", "svamp", {"stage2": {"steps": 0}}),
     r"methods\.cot5\.datasets\.svamp\.stage2\.steps: must be >= 1"),
    (_override("cot5", "svamp", {"stage3": {"steps": 5}}),
     r"methods\.cot5\.datasets\.svamp\.stage3: unknown key"),
])
def test_a_bad_override_is_one_line_naming_its_key(tmp_path, edit, expected):
    with pytest.raises(PipelineError) as ei:
        _params(tmp_path, edit)
    msg = str(ei.value)
    assert "\n" not in msg and re.search(expected, msg), msg
