"""The CLI's contract for user errors: one `error: ...` line on stderr, exit code 2, and no output of
an earlier stage touched. Runs `python -m pipeline` in a temporary copy of the project with the
offline profile pointed at ../shared/data (absolute paths)."""
from __future__ import annotations

import subprocess
from pathlib import Path

from support import DATA
from support.cli import cli, edit_params, ok

# the `cli_project` fixture (a copy of the project) is in conftest.py


def user_error(r: subprocess.CompletedProcess) -> str:
    """Assert the CLI's user-error contract and return the message."""
    assert r.returncode == 2, f"exit {r.returncode}\nstdout: {r.stdout}\nstderr: {r.stderr}"
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, f"expected one stderr line, got:\n{r.stderr}"
    assert lines[0].startswith("error: ")
    assert "Traceback" not in r.stderr
    return lines[0]


def snapshot(folder: Path) -> dict:
    return {p.relative_to(folder).as_posix(): (p.read_bytes(), p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file()}


# --------------------------------------------------------------------------- tests
def test_copy_is_valid(cli_project):
    r = ok(cli(cli_project, "validate"))
    assert "profile offline" in r.stdout


def test_malformed_params(cli_project):
    path = cli_project / "params.yaml"
    path.write_text(path.read_text(encoding="utf-8") + "train: [oops\n  lr: 1\n", encoding="utf-8")
    msg = user_error(cli(cli_project, "prepare", "--dataset", "svamp_dss"))
    assert "params.yaml" in msg and "YAML" in msg
    assert not (cli_project / "data").exists()


def test_invalid_params_value(cli_project):
    edit_params(cli_project, lambda d: d["train"].__setitem__("lr", 0))
    msg = user_error(cli(cli_project, "prepare", "--dataset", "svamp_dss"))
    assert "train.lr: must be > 0" in msg
    assert not (cli_project / "data").exists()


def test_missing_data_file(cli_project, tmp_path):
    missing = tmp_path / "nowhere" / "svamp_train.json"
    edit_params(cli_project, lambda d: d["datasets"]["svamp_dss"]["source"]["files"].__setitem__("train", str(missing)))
    msg = user_error(cli(cli_project, "prepare", "--dataset", "svamp_dss"))
    assert str(missing) in msg
    assert "not found" in msg
    assert not (cli_project / "data" / "prepared" / "svamp_dss").exists()


def test_corrupt_json_line_in_data_file(cli_project, tmp_path):
    src = (DATA / "svamp" / "svamp_train.json").read_text(encoding="utf-8").splitlines(keepends=True)
    src[2] = src[2][: len(src[2]) // 2] + "\n"  # line 3 cut in half
    bad = tmp_path / "svamp_train_broken.json"
    bad.write_text("".join(src), encoding="utf-8")
    edit_params(cli_project, lambda d: d["datasets"]["svamp_dss"]["source"]["files"].__setitem__("train", str(bad)))
    msg = user_error(cli(cli_project, "prepare", "--dataset", "svamp_dss"))
    assert f"{bad}:3:" in msg
    assert not (cli_project / "data" / "prepared" / "svamp_dss").exists()


def test_unknown_dataset(cli_project):
    msg = user_error(cli(cli_project, "prepare", "--dataset", "nope"))
    assert "nope" in msg
    msg = user_error(cli(cli_project, "teach", "--dataset", "nope"))
    assert "nope" in msg
    assert not (cli_project / "data").exists()


def _short_teacher(d):
    # train_CoT_1 forgotten: 500 outputs for the 800-row train split
    d["datasets"]["svamp_dss"]["teachers"]["palm"]["sources"][0]["files"]["train"] = [str(DATA / "svamp" / "palm" / "train_CoT_0.json")]


def test_teacher_length_mismatch(cli_project):
    ok(cli(cli_project, "prepare", "--dataset", "svamp_dss"))
    edit_params(cli_project, _short_teacher)
    msg = user_error(cli(cli_project, "teach", "--dataset", "svamp_dss"))
    assert "500 teacher outputs for 800 train examples" in msg
    assert "length" in msg
    assert "train_CoT_0.json" in msg


def test_failed_stage_leaves_earlier_outputs_untouched(cli_project):
    r = ok(cli(cli_project, "prepare", "--dataset", "svamp_dss"))
    assert "prepare svamp_dss" in r.stdout
    prepared = cli_project / "data" / "prepared" / "svamp_dss"
    assert sorted(p.name for p in prepared.glob("*.jsonl")) == ["test.jsonl", "train.jsonl", "valid.jsonl"]
    before = snapshot(cli_project / "data")
    metrics_before = snapshot(cli_project / "metrics")
    assert (cli_project / "metrics" / "prepare" / "svamp_dss.json").exists()

    edit_params(cli_project, _short_teacher)
    user_error(cli(cli_project, "teach", "--dataset", "svamp_dss"))

    assert snapshot(cli_project / "data") == before  # prepared files: same bytes, same mtimes, nothing new
    assert snapshot(cli_project / "metrics") == metrics_before
    assert not (cli_project / "data" / "teacher" / "svamp_dss" / "palm" / "train.jsonl").exists()
    assert not list((cli_project / "data").rglob("*.tmp"))


def test_teach_succeeds_after_fix(cli_project):
    """The control for the failure tests above: the unmodified copy runs prepare and teach."""
    ok(cli(cli_project, "prepare", "--dataset", "svamp_dss"))
    r = ok(cli(cli_project, "teach", "--dataset", "svamp_dss"))
    assert "teach svamp_dss/palm/test: 200 questions" in r.stdout
    assert "first CoT correct 148/200 questions with CoTs (74.00%)" in r.stdout  # the PaLM reference accuracy on test
    assert (cli_project / "data" / "teacher" / "svamp_dss" / "palm" / "train.jsonl").exists()
