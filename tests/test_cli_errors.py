"""The CLI's contract for user errors: one `error: ...` line on stderr, exit code 2, and no output of
an earlier stage touched. Runs `python -m pipeline` in a temporary copy of the project with the
offline profile pointed at ../shared/data (absolute paths)."""
from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from ruamel.yaml import YAML

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
DATA = SHARED / "data"


def _load(text: str):
    return YAML(typ="rt").load(text)


def _dump(doc) -> str:
    buf = io.StringIO()
    YAML(typ="rt").dump(doc, buf)
    return buf.getvalue()


@pytest.fixture
def proj(tmp_path) -> Path:
    if not DATA.is_dir():
        pytest.fail(f"{DATA} is missing: these tests read the shared reference data in place")
    p = tmp_path / "proj"
    p.mkdir()
    for d in ("pipeline", "schemas", "profiles", "prompts"):
        shutil.copytree(ROOT / d, p / d, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    text = (ROOT / "profiles" / "offline.yaml").read_text(encoding="utf-8")
    assert "../shared/" in text
    (p / "params.yaml").write_text(text.replace("../shared/", f"{SHARED}/"), encoding="utf-8")
    return p


def edit_params(proj: Path, fn) -> None:
    path = proj / "params.yaml"
    doc = _load(path.read_text(encoding="utf-8"))
    fn(doc)
    path.write_text(_dump(doc), encoding="utf-8")


def cli(proj: Path, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    for k in ("MLFLOW_TRACKING_URI", "OPENAI_API_KEY", "OPENAI_BASE_URL", "MM_TIMING"):
        env.pop(k, None)
    env.update(DVC_ROOT=str(proj), TOKENIZERS_PARALLELISM="false", PYTHONDONTWRITEBYTECODE="1")
    return subprocess.run([sys.executable, "-m", "pipeline", *args], cwd=proj, env=env,
                          capture_output=True, text=True, timeout=120)


def user_error(r: subprocess.CompletedProcess) -> str:
    """Assert the CLI's user-error contract and return the message."""
    assert r.returncode == 2, f"exit {r.returncode}\nstdout: {r.stdout}\nstderr: {r.stderr}"
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, f"expected one stderr line, got:\n{r.stderr}"
    assert lines[0].startswith("error: ")
    assert "Traceback" not in r.stderr
    return lines[0]


def ok(r: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert r.returncode == 0, f"exit {r.returncode}\nstdout: {r.stdout}\nstderr: {r.stderr}"
    return r


def snapshot(folder: Path) -> dict:
    return {p.relative_to(folder).as_posix(): (p.read_bytes(), p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file()}


# --------------------------------------------------------------------------- tests
def test_copy_is_valid(proj):
    r = ok(cli(proj, "validate"))
    assert "profile offline" in r.stdout


def test_malformed_params(proj):
    path = proj / "params.yaml"
    path.write_text(path.read_text(encoding="utf-8") + "train: [oops\n  lr: 1\n", encoding="utf-8")
    msg = user_error(cli(proj, "prepare", "--dataset", "svamp_dss"))
    assert "params.yaml" in msg and "YAML" in msg
    assert not (proj / "data").exists()


def test_invalid_params_value(proj):
    edit_params(proj, lambda d: d["train"].__setitem__("lr", 0))
    msg = user_error(cli(proj, "prepare", "--dataset", "svamp_dss"))
    assert "train.lr: must be > 0" in msg
    assert not (proj / "data").exists()


def test_missing_data_file(proj, tmp_path):
    missing = tmp_path / "nowhere" / "svamp_train.json"
    edit_params(proj, lambda d: d["datasets"]["svamp_dss"]["source"]["files"].__setitem__("train", str(missing)))
    msg = user_error(cli(proj, "prepare", "--dataset", "svamp_dss"))
    assert str(missing) in msg
    assert "not found" in msg
    assert not (proj / "data" / "prepared" / "svamp_dss").exists()


def test_corrupt_json_line_in_data_file(proj, tmp_path):
    src = (DATA / "svamp" / "svamp_train.json").read_text(encoding="utf-8").splitlines(keepends=True)
    src[2] = src[2][: len(src[2]) // 2] + "\n"  # line 3 cut in half
    bad = tmp_path / "svamp_train_broken.json"
    bad.write_text("".join(src), encoding="utf-8")
    edit_params(proj, lambda d: d["datasets"]["svamp_dss"]["source"]["files"].__setitem__("train", str(bad)))
    msg = user_error(cli(proj, "prepare", "--dataset", "svamp_dss"))
    assert f"{bad}:3:" in msg
    assert not (proj / "data" / "prepared" / "svamp_dss").exists()


def test_unknown_dataset(proj):
    msg = user_error(cli(proj, "prepare", "--dataset", "nope"))
    assert "nope" in msg
    msg = user_error(cli(proj, "teach", "--dataset", "nope"))
    assert "nope" in msg
    assert not (proj / "data").exists()


def _short_teacher(d):
    # train_CoT_1 forgotten: 500 outputs for the 800-row train split
    d["datasets"]["svamp_dss"]["teacher"]["sources"][0]["files"]["train"] = [str(DATA / "svamp" / "palm" / "train_CoT_0.json")]


def test_teacher_length_mismatch(proj):
    ok(cli(proj, "prepare", "--dataset", "svamp_dss"))
    edit_params(proj, _short_teacher)
    msg = user_error(cli(proj, "teach", "--dataset", "svamp_dss"))
    assert "500 teacher outputs for 800 train examples" in msg
    assert "length" in msg
    assert "train_CoT_0.json" in msg


def test_failed_stage_leaves_earlier_outputs_untouched(proj):
    r = ok(cli(proj, "prepare", "--dataset", "svamp_dss"))
    assert "prepare svamp_dss" in r.stdout
    prepared = proj / "data" / "prepared" / "svamp_dss"
    assert sorted(p.name for p in prepared.glob("*.jsonl")) == ["test.jsonl", "train.jsonl", "valid.jsonl"]
    before = snapshot(proj / "data")
    metrics_before = snapshot(proj / "metrics")
    assert (proj / "metrics" / "prepare" / "svamp_dss.json").exists()

    edit_params(proj, _short_teacher)
    user_error(cli(proj, "teach", "--dataset", "svamp_dss"))

    assert snapshot(proj / "data") == before  # prepared files: same bytes, same mtimes, nothing new
    assert snapshot(proj / "metrics") == metrics_before
    assert not (proj / "data" / "teacher" / "svamp_dss" / "train.jsonl").exists()
    assert not list((proj / "data").rglob("*.tmp"))


def test_teach_succeeds_after_fix(proj):
    """The control for the failure tests above: the unmodified copy runs prepare and teach."""
    ok(cli(proj, "prepare", "--dataset", "svamp_dss"))
    r = ok(cli(proj, "teach", "--dataset", "svamp_dss"))
    assert "teach svamp_dss/test: 200 questions" in r.stdout
    assert "(148/200)" in r.stdout  # the PaLM reference accuracy on the test split
    assert (proj / "data" / "teacher" / "svamp_dss" / "train.jsonl").exists()
