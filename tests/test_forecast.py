"""The compute plan (``python -m pipeline forecast``, pipeline/stages/forecast.py) on a project whose svamp
teacher is the live ``openai`` backend (the real SVAMP files, 6/2/3 questions): its question counts are the
prepare stage's, its steps and selection points the training loop's, its teacher bill the ``estimate``
command's, its hours the calibration's arithmetic; the limits refuse in one line and keep the file; bad
calibrations and sizes are one line."""
from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.training.loop import selection_steps
from support.teacher import SVAMP, write_params

pytestmark = pytest.mark.skipif(not (SVAMP / "svamp_train.json").exists(), reason=f"shared data not found at {SVAMP}")

RUN = "svamp-none-std-tiny-gold-k0-m0-s0"
TH = {"student": "t5-small", "device": "cuda", "device_name": "test GPU", "precision": "bf16", "parameters": 1,
      "train_examples_per_s": 2.0, "answer_decodes_per_s": 4.0, "rationale_decodes_per_s": 1.0,
      "lengths": "test", "source": "measured", "measured": "nowhere (a test figure)", "command": "none"}


def _cli(proj: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("OPENAI_API_KEY", "OPENAI_BASE_URL")}
    return subprocess.run([sys.executable, "-m", "pipeline", *args], cwd=proj, capture_output=True, text=True,
                          env={**env, "DVC_ROOT": str(proj), "PYTHONPATH": str(proj)}, timeout=120)


@pytest.fixture
def proj(teacher_project) -> Path:
    write_params(teacher_project, price_per_1m_input=1000.0, price_per_1m_output=2000.0)  # dollars, not cents
    assert _cli(teacher_project, "plan").returncode == 0
    (teacher_project / "th.json").write_text(json.dumps(TH))
    return teacher_project


def _forecast(proj: Path, *args: str) -> dict:
    r = _cli(proj, "forecast", *args)
    assert r.returncode == 0, r.stderr
    return json.loads((proj / "reports" / "forecast.json").read_text())


def _number(text: str, label: str) -> float:
    m = re.search(re.escape(label) + r"\s*~?(?:<= )?\$?([\d,.]+)", text)
    assert m, (label, text)
    return float(m.group(1).replace(",", "").rstrip("."))


def test_counts_steps_and_selection_are_the_stages_own(proj):
    fc = _forecast(proj, "--calibration", "th.json")
    prepared = {s: len((proj / "data/prepared/svamp" / f"{s}.jsonl").read_text().splitlines()) for s in ("train", "valid", "test")}
    assert fc["questions"]["svamp"] == prepared == {"train": 6, "valid": 2, "test": 3}
    (run,) = [r for r in fc["runs"] if r["run"] == RUN]
    (st,) = run["stages"]
    n_batches = math.ceil(6 / 2)  # train.batch_size 2, 1 epoch
    points = selection_steps(1.0, n_batches, 1, n_batches)
    assert (st["rows"], st["steps"], st["selection_points"]) == (6, n_batches, len(points))
    assert st["decodes"] == len(points) * (2 + 3)  # valid + test (the paper protocol) at each point
    assert run["answer_decodes"] == st["decodes"] + 3 and run["rationale_decodes"] == 0  # + evaluate's test answers
    seconds = st["examples"] / TH["train_examples_per_s"] + run["answer_decodes"] / TH["answer_decodes_per_s"]
    assert run["hours"] == round(seconds / 3600, 6)
    assert fc["throughputs"]["tiny"]["measured"] == TH["measured"]


def test_the_teacher_bill_is_the_estimate_commands(proj):
    fc = _forecast(proj, "--calibration", "th.json")
    (t,) = fc["teachers"]
    est = _cli(proj, "estimate", "--dataset", "svamp")
    assert est.returncode == 0, est.stderr
    assert t["requests"] == _number(est.stdout, "requests:") > 0
    assert t["prompt_tokens"] == _number(est.stdout, "prompt tokens:") > 0
    assert t["completion_tokens_max"] == _number(est.stdout, "completion tokens:")
    assert t["usd_max"] == round(_number(est.stdout, "cost:"), 2) > 0
    assert fc["usd_max"] == t["usd_max"]


def test_stated_sizes_scale_rows_and_the_teachers_tokens(proj):
    base = _forecast(proj, "--calibration", "th.json")
    fc = _forecast(proj, "--calibration", "th.json", "--sizes", "svamp:train=12")
    assert fc["questions"]["svamp"] == {"train": 12, "valid": 2, "test": 3}
    (st,) = [r for r in fc["runs"] if r["run"] == RUN][0]["stages"]
    assert st["rows"] == 12 and st["steps"] == 6
    (t0,), (t1,) = base["teachers"], fc["teachers"]
    # split by split: a train question costs 1 CoT request (n=2) and 2 self-evaluation requests (n=2 each), a
    # test question (no self-evaluations) its CoT request only
    assert (t0["requests"], t1["requests"]) == (6 * 3 + 3, 12 * 3 + 3)
    assert (t0["samples"], t1["samples"]) == (6 * 6 + 3 * 2, 12 * 6 + 3 * 2)
    assert "scaled" in t1["note"] and "train x2.000" in t1["note"] and "scaled" not in t0["note"]


def test_limits_refuse_in_one_line_and_keep_the_forecast(proj):
    out = proj / "reports" / "forecast.json"
    for args, why in ((("--max-hours", "0.000001"), "--max-hours 1e-06"), (("--max-usd", "0.0000001"), "--max-usd 1e-07")):
        out.unlink(missing_ok=True)
        r = _cli(proj, "forecast", "--calibration", "th.json", *args)
        lines = r.stderr.strip().splitlines()
        assert r.returncode == 2 and len(lines) == 1, r.stderr
        assert lines[0].startswith("error: forecast: profile openai-teacher-test: 1 runs, ") and why in lines[0], lines
        assert out.exists()
    assert _cli(proj, "forecast", "--calibration", "th.json", "--max-hours", "100", "--max-usd", "100").returncode == 0


def test_without_a_throughput_hours_are_not_guessed_and_a_limit_says_so(proj):
    fc = _forecast(proj)
    assert fc["hours"] is None and fc["throughputs"] == {}
    r = _cli(proj, "forecast", "--max-hours", "1000")
    assert r.returncode == 2 and "no throughput for tiny on cuda" in r.stderr, r.stderr


@pytest.mark.parametrize("change,expected", [
    ({"student": "google/t5-v1_1-large"}, r"th\.json: measured for google/t5-v1_1-large on cuda, not for a student of this profile \(t5-small\) on cuda"),
    ({"device": "cpu"}, r"th\.json: measured for t5-small on cpu, not for a student of this profile \(t5-small\) on cuda"),
])
def test_a_calibration_for_another_student_or_device_is_one_line(proj, change, expected):
    (proj / "th.json").write_text(json.dumps({**TH, **change}))
    r = _cli(proj, "forecast", "--calibration", "th.json")
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and re.search(expected, r.stderr), r.stderr


@pytest.mark.parametrize("args,expected", [
    (("--sizes", "gsm8k:train=5"), "--sizes: 'gsm8k' is not a key of datasets (known: svamp)"),
    (("--sizes", "svamp"), "--sizes: 'svamp' is not <dataset>:<split>=<count>,..."),
    (("--sizes", "svamp:dev=5"), "--sizes: 'dev=5' in 'svamp:dev=5' is not <split>=<count> (train, valid or test)"),
    (("--device", "tpu"), "--device: 'tpu' is not cpu or cuda"),
    (("--max-usd", "lots"), "--max-usd: 'lots' is not a number"),
])
def test_bad_options_are_one_line(proj, args, expected):
    r = _cli(proj, "forecast", *args)
    assert r.returncode == 2 and r.stderr.strip() == f"error: {expected}", r.stderr
