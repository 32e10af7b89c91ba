"""Split manifests: ``manifests/svamp_dss.json`` is exactly the Distilling step-by-step SVAMP split
(checked against the shared files through SVAMP.json), and the generic ``manifest`` option of a
source re-splits rows by id, with one clear line for every kind of bad manifest."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.core.errors import PipelineError
from pipeline.core.spec import HubSource, LocalSource, load_params
from pipeline.tasks import get_task
from pipeline.tasks.base import normalize_text as norm
from support import load_script
from pipeline.sources import load, load_source
from pipeline.sources.manifest import apply_manifest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
SVAMP = SHARED / "data" / "svamp"
MANIFEST = ROOT / "manifests" / "svamp_dss.json"


@pytest.fixture(scope="module")
def manifest() -> dict:
    return json.loads(MANIFEST.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def text_of_id() -> dict[str, str]:
    if not SVAMP.is_dir():
        pytest.fail(f"{SVAMP} is missing: these tests read the shared data in place")
    return {p["ID"]: norm(f"{p['Body']} {p['Question']}") for p in json.loads((SVAMP / "SVAMP.json").read_text())}


def dss_texts(split: str) -> list[str]:
    lines = (SVAMP / f"svamp_{split}.json").read_text(encoding="utf-8").splitlines()
    return [norm(json.loads(line)["input"]) for line in lines if line.strip()]


# --------------------------------------------------------------------------- the SVAMP manifest
@pytest.mark.parametrize("split,n", [("test", 200), ("train", 800)])
def test_manifest_selects_exactly_the_dss_split_in_row_order(manifest, text_of_id, split, n):
    ids = manifest["splits"][split]
    assert len(ids) == len(set(ids)) == n
    # the same questions, in the DSS file's row order (so DSS PaLM CoT files stay aligned by row)
    assert [text_of_id[i] for i in ids] == dss_texts(split)


def test_manifest_splits_are_disjoint_and_cover_svamp(manifest, text_of_id):
    train, test = set(manifest["splits"]["train"]), set(manifest["splits"]["test"])
    assert not train & test
    assert train | test == set(text_of_id)
    assert manifest["dataset"] == "ChilleD/SVAMP" and manifest["id_field"] == "ID"
    counts = manifest["provenance"]["counts"]
    assert counts["train"] == 800 and counts["test"] == 200 and counts["ambiguous_rows"] == 0
    assert manifest["provenance"]["ambiguous"] == []


def test_manifest_is_what_the_script_derives(manifest):
    """The committed file is up to date with the shared files (sha256s included); only its date is free."""
    built = load_script("make_split_manifest").build(SHARED)
    committed = json.loads(json.dumps(manifest))
    committed["provenance"].pop("date")
    assert committed == built


def test_ambiguous_rows_resolve_deterministically_in_train_and_fail_in_test():
    msm = load_script("make_split_manifest")
    index = msm.index_svamp([{"ID": "a", "Body": "Same", "Question": "q?"},
                             {"ID": "b", "Body": "same ", "Question": "Q?"},
                             {"ID": "c", "Body": "Other", "Question": "q?"}])
    taken = {"a"}  # e.g. taken by the test split
    ids, amb = msm.match_split(["same q?", "other q?"], index, taken, "train", strict=False)
    assert ids == ["b", "c"]
    assert amb == [{"split": "train", "row": 0, "candidates": ["a", "b"], "chosen": "b"}]
    with pytest.raises(msm.ManifestError, match="test row 0: ambiguous, matches a, b"):
        msm.match_split(["SAME  q?"], index, set(), "test", strict=True)
    with pytest.raises(msm.ManifestError, match="no SVAMP problem"):
        msm.match_split(["nowhere"], index, set(), "train", strict=False)


def test_paper_profile_uses_the_manifest():
    for path in (ROOT / "params.yaml", ROOT / "profiles" / "paper.yaml"):
        src = load_params(path).datasets["svamp"].source
        assert isinstance(src, HubSource) and src.id == "ChilleD/SVAMP"
        assert src.splits == {"train": "train", "test": "test"}
        assert src.manifest == "manifests/svamp_dss.json"
    assert (ROOT / "params.yaml").read_bytes() == (ROOT / "profiles" / "paper.yaml").read_bytes()


# --------------------------------------------------------------------------- the generic option
def rows(*ids: str) -> list[dict]:
    return [{"id": i, "question": f"q {i}", "label": "1"} for i in ids]


def write_manifest(tmp_path: Path, splits, name: str = "m.json") -> str:
    p = tmp_path / name
    p.write_text(json.dumps({"dataset": "x", "id_field": "id", "splits": splits}), encoding="utf-8")
    return str(p)


def test_apply_manifest_pools_orders_and_drops(tmp_path):
    m = write_manifest(tmp_path, {"train": ["d", "a"], "test": ["b"]})
    out = apply_manifest({"train": rows("a", "b", "x"), "test": rows("d", "y")}, m)
    assert {s: [r["id"] for r in v] for s, v in out.splits.items()} == {"train": ["d", "a"], "test": ["b"]}
    assert out.manifest_dropped == 2 and out.loaded_rows == {"train": 3, "test": 2}


@pytest.mark.parametrize("splits,expected", [
    ({"train": ["a", "b"], "test": ["b"]}, "ID 'b' is in both train and test"),
    ({"train": ["a", "a"]}, "ID 'a' is listed twice in train"),
    ({"train": ["a"], "test": ["zz"]}, "ID 'zz' (test) is not in the dataset"),
    ({"dev": ["a"]}, "unknown split 'dev'"),
    ({"train": "a"}, "splits.train: expected a list of id strings"),
    ({}, "not a split manifest"),
])
def test_bad_manifest_is_one_line_naming_file_and_id(tmp_path, splits, expected):
    m = write_manifest(tmp_path, splits)
    with pytest.raises(PipelineError) as e:
        apply_manifest({"train": rows("a", "b", "c")}, m)
    msg = str(e.value)
    assert msg.startswith(f"{m}: ") and expected in msg and "\n" not in msg


def test_id_on_several_rows_is_an_error(tmp_path):
    m = write_manifest(tmp_path, {"train": ["a"]})
    with pytest.raises(PipelineError, match=r"ID 'a' matches several rows"):
        apply_manifest({"train": rows("a"), "test": rows("a")}, m)


def test_missing_and_corrupt_manifest_files(tmp_path):
    missing = str(tmp_path / "nope.json")
    with pytest.raises(PipelineError, match=r"nope\.json: split manifest not found$"):
        apply_manifest({"train": rows("a")}, missing)
    bad = tmp_path / "bad.json"
    bad.write_text('{"splits": {"train": ["a",\n', encoding="utf-8")
    with pytest.raises(PipelineError) as e:
        apply_manifest({"train": rows("a")}, str(bad))
    assert str(e.value).startswith(f"{bad}:2: corrupt split manifest") and "\n" not in str(e.value)


def test_local_source_with_a_manifest(tmp_path):
    """The same option on a local source: ANLI rows (ids = uid) from two files, re-split."""
    for name, uids in (("a.jsonl", ["u1", "u2", "u3"]), ("b.jsonl", ["u4", "u5"])):
        (tmp_path / name).write_text("".join(
            json.dumps({"uid": u, "premise": "p", "hypothesis": f"h {u}", "label": 0}) + "\n" for u in uids))
    m = write_manifest(tmp_path, {"train": ["u5", "u1"], "valid": ["u2"], "test": ["u4"]})
    src = LocalSource(kind="local", format="dss", files={"train": str(tmp_path / "a.jsonl"),
                                                        "test": str(tmp_path / "b.jsonl")}, manifest=m)
    loaded = load_source(get_task("anli"), src)
    assert {s: [r["id"] for r in v] for s, v in loaded.splits.items()} == {"train": ["u5", "u1"], "valid": ["u2"], "test": ["u4"]}
    assert loaded.manifest_dropped == 1
    assert load(get_task("anli"), src) == loaded.splits


def test_cli_bad_manifest_one_line_exit_2(tmp_path):
    """`python -m pipeline prepare` with a manifest that puts one id in two splits: one error line,
    exit 2, nothing written."""
    from ruamel.yaml import YAML

    (tmp_path / "v.jsonl").write_text(json.dumps({"uid": "u1", "premise": "p", "hypothesis": "h", "label": 1}) + "\n")
    (tmp_path / "manifests").mkdir()
    (tmp_path / "manifests" / "m.json").write_text(json.dumps({"splits": {"train": ["u1"], "test": ["u1"]}}))
    yaml = YAML(typ="rt")
    doc = yaml.load((ROOT / "profiles" / "offline.yaml").read_text(encoding="utf-8"))
    doc["datasets"]["anli1"]["source"] = {"kind": "local", "format": "dss", "files": {"valid": str(tmp_path / "v.jsonl")},
                                          "manifest": "manifests/m.json"}
    with open(tmp_path / "params.yaml", "w", encoding="utf-8") as f:
        yaml.dump(doc, f)
    env = {k: v for k, v in os.environ.items() if k not in ("DVC_ROOT", "MM_TIMING")}
    r = subprocess.run([sys.executable, "-m", "pipeline", "prepare", "--dataset", "anli1"], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2, r.stderr
    assert r.stderr.strip() == "error: manifests/m.json: ID 'u1' is in both train and test"
    assert not (tmp_path / "data").exists() and not (tmp_path / "metrics").exists()
