"""``scripts/make_local_hub.py``: local stand-ins of the paper's Hub datasets and student, read by the
unchanged paper code path (``kind: hub`` sources, ``from_config: false``), and the paper's SVAMP
split (720 / 80 / 200, DSS's 200 test questions) prepared from the local ChilleD/SVAMP by manifest."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.core.spec import HubSource
from pipeline.core.spec_tables import StudentSpec
from pipeline.tasks import get_task
from pipeline.tasks.base import normalize_text as norm
from support import load_script
from pipeline.sources import load
from pipeline.sources.hub import hub_path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"


@pytest.fixture(scope="module")
def hub(tmp_path_factory) -> Path:
    if not (SHARED / "data").is_dir():
        pytest.fail(f"{SHARED} is missing: these tests read the shared data in place")
    out = tmp_path_factory.mktemp("hub") / "local_hub"
    assert load_script("make_local_hub").build(out, SHARED)
    return out


def test_build_is_idempotent(hub):
    before = {p: p.read_bytes() for p in hub.rglob("*") if p.is_file()}
    assert load_script("make_local_hub").build(hub, SHARED) == []
    assert {p: p.read_bytes() for p in hub.rglob("*") if p.is_file()} == before


@pytest.mark.parametrize("task,hub_id,splits,counts,columns", [
    ("svamp", "ChilleD/SVAMP", {"train": "train", "test": "test"}, {"train": 700, "test": 300},
     ["ID", "Body", "Question", "Equation", "Answer", "Type", "question_concat"]),
    ("cqa", "tau/commonsense_qa", {"train": "train", "test": "validation"}, {"train": 9741, "test": 1221},
     ["id", "question", "question_concept", "choices", "answerKey"]),
    ("anli", "facebook/anli", {"train": "train_r1", "valid": "dev_r1", "test": "test_r1"},
     {"train": 600, "valid": 200, "test": 200}, ["uid", "premise", "hypothesis", "label", "reason"]),
])
def test_dataset_loads_through_the_pipeline_loader(hub, task, hub_id, splits, counts, columns):
    import datasets

    d = hub / hub_id
    for hub_split in splits.values():  # the call pipeline/tasks/base.py makes
        assert datasets.load_dataset(str(d), None, split=hub_split).column_names == columns
    loaded = load(get_task(task), HubSource(kind="hub", id=str(d), splits=splits))
    assert {s: len(v) for s, v in loaded.items()} == counts
    ids = [r["id"] for v in loaded.values() for r in v]
    assert len(ids) == len(set(ids))


def test_hub_rows_carry_the_original_ids_and_labels(hub):
    svamp = load(get_task("svamp"), HubSource(kind="hub", id=str(hub / "ChilleD/SVAMP"), splits={"test": "test"}))
    problems = {p["ID"]: p for p in json.loads((SHARED / "data/svamp/SVAMP.json").read_text())}
    for ex in svamp["test"]:
        p = problems[ex["id"]]
        assert ex["label"] == p["Equation"] and norm(ex["question"]) == norm(f"{p['Body']} {p['Question']}")
    mcckd_test = [norm(r["instruction"]) for f in ("dev", "test")
                  for r in json.loads((SHARED / f"data/svamp-mcckd/{f}.json").read_text())]
    assert [norm(ex["question"]) for ex in svamp["test"]] == mcckd_test
    anli = load(get_task("anli"), HubSource(kind="hub", id=str(hub / "facebook/anli"), splits={"valid": "dev_r1"}))
    assert {ex["label"] for ex in anli["valid"]} <= {"entailment", "neutral", "contradiction"}
    import datasets

    test = datasets.load_dataset(str(hub / "tau/commonsense_qa"), None, split="test")
    assert len(test) == 100 and set(test["answerKey"]) == {""}
    assert (hub / "facebook/anli/README.md").read_text().count("train_r1") >= 2


def test_relative_id_resolves_to_a_local_folder_and_hub_ids_pass_through(hub, monkeypatch):
    monkeypatch.chdir(hub.parent)
    assert Path(hub_path("local_hub/ChilleD/SVAMP")) == (hub / "ChilleD/SVAMP").resolve()
    assert hub_path("ChilleD/SVAMP-not-here") == "ChilleD/SVAMP-not-here"
    loaded = load(get_task("svamp"), HubSource(kind="hub", id="local_hub/ChilleD/SVAMP", splits={"train": "train"}))
    assert len(loaded["train"]) == 700


def test_student_loads_untied_with_no_reinitialised_keys(hub):
    import torch
    from safetensors.torch import load_file
    from transformers import T5ForConditionalGeneration

    from pipeline.student.model import build_model, load_tokenizer

    d = hub / "google/t5-v1_1-base"
    raw = json.loads((d / "config.json").read_text())
    real = json.loads((SHARED / "models/t5-v1_1-base-config/config.json").read_text())
    sizes = {"d_model": 64, "d_ff": 128, "d_kv": 16, "num_heads": 4, "num_layers": 2, "num_decoder_layers": 2}
    assert raw == {**real, **sizes} and raw["tie_word_embeddings"] is False

    _, info = T5ForConditionalGeneration.from_pretrained(str(d), output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]

    spec = StudentSpec(id=str(d), from_config=False)
    model = build_model(spec)
    assert model.config.scale_decoder_outputs is False
    assert model.lm_head.weight.data_ptr() != model.shared.weight.data_ptr()
    assert not torch.equal(model.lm_head.weight, model.shared.weight)
    assert model.encoder.embed_tokens.weight.data_ptr() == model.shared.weight.data_ptr()
    assert model.decoder.embed_tokens.weight.data_ptr() == model.shared.weight.data_ptr()
    saved, state = load_file(str(d / "model.safetensors")), model.state_dict()
    assert "lm_head.weight" in saved and "shared.weight" in saved
    for k, v in saved.items():
        assert torch.equal(state[k], v), k
    assert set(state) - set(saved) == {"encoder.embed_tokens.weight", "decoder.embed_tokens.weight"}
    tok = load_tokenizer(spec)
    assert len(tok) == 32100 and tok("hello world").input_ids == [21820, 296, 1]


def test_prepare_paper_svamp_from_the_local_hub(hub, tmp_path):
    """`python -m pipeline prepare --dataset svamp` on the paper profile with only the svamp source id
    swapped to the local ChilleD/SVAMP: 720 / 80 / 200, the test split exactly DSS's 200 questions."""
    from ruamel.yaml import YAML

    proj = tmp_path / "proj"
    shutil.copytree(ROOT / "manifests", proj / "manifests")
    yaml = YAML(typ="rt")
    doc = yaml.load((ROOT / "profiles" / "paper.yaml").read_text(encoding="utf-8"))
    doc["datasets"]["svamp"]["source"]["id"] = str(hub / "ChilleD/SVAMP")
    with open(proj / "params.yaml", "w", encoding="utf-8") as f:
        yaml.dump(doc, f)
    env = {k: v for k, v in os.environ.items() if k not in ("DVC_ROOT", "MM_TIMING")}
    env.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", HF_DATASETS_CACHE=str(tmp_path / "hf_cache"))
    r = subprocess.run([sys.executable, "-m", "pipeline", "prepare", "--dataset", "svamp"], cwd=proj, env=env,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr

    metrics = json.loads((proj / "metrics/prepare/svamp.json").read_text())
    assert metrics["rows"] == {"train": 720, "valid": 80, "test": 200}
    assert metrics["source_rows"] == {"train": 800, "test": 200}
    assert metrics["manifest"] == "manifests/svamp_dss.json" and metrics["manifest_dropped"] == 0
    assert metrics["manifest_loaded_rows"] == {"train": 700, "test": 300}  # the Hub's own split, pooled

    def prepared(split):
        lines = (proj / f"data/prepared/svamp/{split}.jsonl").read_text().splitlines()
        return [json.loads(line) for line in lines]

    def dss(split):
        return [json.loads(line) for line in (SHARED / f"data/svamp/svamp_{split}.json").read_text().splitlines()]

    test = prepared("test")
    assert [norm(e["question"]) for e in test] == [norm(r["input"]) for r in dss("test")]
    assert [e["label"] for e in test] == [r["label"] for r in dss("test")]
    assert [e["index"] for e in test] == list(range(200))  # row i = DSS row i (PaLM CoT files align)
    train = prepared("train") + prepared("valid")
    assert sorted(norm(e["question"]) for e in train) == sorted(norm(r["input"]) for r in dss("train"))
    assert {e["origin"] for e in train} == {"train"}
