"""The profiles: ``params.yaml`` is the paper's configuration, and ``profiles/paper-local.yaml`` (run
end to end by ``tests/test_e2e_paper_path.py``) is that same configuration with only locations and
sizes changed, so that what the test exercises is the code path a researcher runs."""
from __future__ import annotations

import fnmatch
from pathlib import Path

from pipeline.core.spec import _plain, _yaml

ROOT = Path(__file__).resolve().parents[1]

#: where things are: the Hub ids become local directories in the Hub's own layout
LOCATIONS = (
    "profile",
    "datasets.*.source.id",
    "students.*.id",
    "students.*.tokenizer",
    "teachers.*.base_url",
)
#: how much is done: rows, samples, steps, lengths; never a method, a rate or a loss weight
SIZES = (
    "datasets.*.limit",
    "datasets.*.limit.*",
    "teachers.*.cots",
    "teachers.*.self_evals",
    "teachers.*.max_tokens",
    "teachers.*.concurrency",
    "teachers.*.budget_usd",
    "methods.*.epochs",
    "methods.*.se_epochs",
    "methods.*.datasets.*.steps",          # per-dataset budgets (spec_budget.py) and their selection cadence
    "methods.*.datasets.*.select_every_steps",
    "train.max_steps",
    "train.max_input_length",
    "train.max_target_length",
    "train.log_every",
    "train.save_every_steps",
    "train.select_batch_size",
    "train.select_max_new_tokens",
    "evaluate.limit",
    "evaluate.batch_size",
    "evaluate.max_new_tokens",
    "evaluate.rationale_max_new_tokens",
)


def _flat(obj, prefix=""):
    if isinstance(obj, dict):
        out = {}
        for k, v in obj.items():
            out.update(_flat(v, f"{prefix}{k}."))
        if not obj and prefix:
            out[prefix[:-1]] = {}
        return out
    return {prefix[:-1]: obj}


def _load(path: Path) -> dict:
    return _plain(_yaml().load(path.read_text()))


def differences(a: dict, b: dict) -> set[str]:
    fa, fb = _flat(a), _flat(b)
    return {k for k in fa.keys() | fb.keys() if fa.get(k, "<absent>") != fb.get(k, "<absent>")}


def test_params_yaml_is_the_paper_profile():
    assert (ROOT / "params.yaml").read_bytes() == (ROOT / "profiles/paper.yaml").read_bytes()


def test_paper_local_differs_from_paper_only_in_locations_and_sizes():
    paper, local = _load(ROOT / "profiles/paper.yaml"), _load(ROOT / "profiles/paper-local.yaml")
    diff = differences(paper, local)
    other = sorted(k for k in diff if not any(fnmatch.fnmatchcase(k, p) for p in LOCATIONS + SIZES))
    assert not other, f"profiles/paper-local.yaml differs from profiles/paper.yaml beyond locations and sizes: {other}"
    # and it is the same kind of run: Hub sources, a pretrained student, the live teacher
    for name, ds in local["datasets"].items():
        assert ds["source"]["kind"] == "hub", name
        assert all(local["teachers"][t]["backend"] == "openai" for t in ds["teachers"]), name
    assert len(local["teachers"]) >= 2  # two live teachers, on two endpoints
    assert len({t.get("base_url") for t in local["teachers"].values()}) >= 2
    assert all(not st.get("from_config") for st in local["students"].values())
    # the locations it swaps are local stand-ins of the very Hub ids the paper profile names
    for name, ds in local["datasets"].items():
        assert ds["source"]["id"].endswith(paper["datasets"][name]["source"]["id"]), name
    for size, st in local["students"].items():
        assert st["id"].endswith(paper["students"][size]["id"]), size


def test_the_comparison_sees_a_changed_method_or_rate():
    paper = _load(ROOT / "profiles/paper.yaml")
    changed = _load(ROOT / "profiles/paper.yaml")
    changed["train"]["lr"] = 1e-3
    changed["methods"]["cot5"]["cots"] = 2
    changed["teachers"]["luna"]["model"] = "gpt-4"
    assert differences(paper, changed) == {"train.lr", "methods.cot5.cots", "teachers.luna.model"}
