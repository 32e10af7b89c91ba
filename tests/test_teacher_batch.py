"""The live teacher in batch mode (``mode: batch``) against the fake server's Batch API (tests/fake_batches.py):
a completed batch; an expired one with partial output, whose missing lines go in the next batch; one
failed line; an output line with an unknown ``custom_id`` (quarantined, counted); a SIGKILL while
polling, after which the rerun follows the same batch and submits none; a phase that mixes online and
batch answers; an endpoint without ``/v1/batches`` (one line, nothing uploaded); the request file
exported and an engine's output imported offline; the batch price in the cost and the forecast."""
from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from fake_openai import FakeOpenAI
from support.teacher import isolated_key, made_up_examples as examples
from pipeline.core.errors import PipelineError
from pipeline.core.records import TeacherUsage
from pipeline.core.spec import OpenAITeacher
from pipeline.tasks import get_task
from pipeline.teacher.openai import generate
from pipeline.teacher.openai.backend import batch_files

pytestmark = pytest.mark.timeout(120)

KEY_ENV = "TEST_TEACHER_KEY"
SVAMP = get_task("svamp")
PRICES = {"price_per_1m_input": 1000.0, "price_per_1m_output": 1000.0}  # $0.001 a token online
COT_LINES, SE_LINES = 9, 12  # 6 train + 3 test questions x 2 CoTs (n=2 a line); 12 train CoTs x 2 evaluations


@pytest.fixture(autouse=True)
def env(monkeypatch):
    with isolated_key(monkeypatch, KEY_ENV, "sk-test-batch") as m:
        yield m


@pytest.fixture
def srv():
    with FakeOpenAI(latency=0.0) as s:
        yield s


def teacher(srv: FakeOpenAI, tmp_path: Path, **kw) -> OpenAITeacher:
    return OpenAITeacher(**{"backend": "openai", "model": "fake-model", "base_url": srv.base_url, "api_key_env": KEY_ENV,
                            "cots": 2, "self_evals": 2, "max_tokens": 64, "max_retries": 1, "timeout_s": 5,
                            "mode": "batch", "batch_poll_s": 0.01, "journal": str(tmp_path / "journal.sqlite"),
                            **PRICES, **kw})


def rows(t: OpenAITeacher, sql: str) -> list:
    con = sqlite3.connect(t.journal)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def lines_of_file(srv: FakeOpenAI, batch_id: str) -> list[dict]:
    data = srv.batches.files[srv.batches.batches[batch_id]["input_file_id"]]
    return [json.loads(x) for x in data.splitlines()]


def test_completed_batches_at_the_batch_price(srv, tmp_path):
    out = generate("svamp", SVAMP, teacher(srv, tmp_path), examples(), name="live")
    u = TeacherUsage(**out.usage)
    assert srv.batches.created == 2 and srv.batches.uploads == 2  # the CoTs, then their self-evaluations
    assert [len(lines_of_file(srv, b)) for b in srv.batches.batches] == [COT_LINES, SE_LINES]
    first = lines_of_file(srv, "batch_1")[0]
    assert first["method"] == "POST" and first["url"] == "/v1/chat/completions" and first["body"]["n"] == 2
    assert first["custom_id"].endswith(":0:2")  # the journal key of the samples: group, first index, count
    assert u.batch.submitted == 2 and u.batch.resumed == u.batch.expired == u.batch.failed_lines == 0
    assert u.samples == 9 * 2 + 12 * 2 and u.requests == COT_LINES + SE_LINES
    assert u.cost_usd == pytest.approx(0.5 * (u.prompt_tokens + u.completion_tokens) * 1e-3)  # x0.5 of $0.001
    assert all(len(r["cots"]) == 2 for r in out.records["train"] + out.records["test"])
    assert rows(out_teacher := teacher(srv, tmp_path), "SELECT COUNT(*), SUM(closed) FROM batches") == [(2, 2)]
    assert rows(out_teacher, "SELECT COUNT(*) FROM pending") == [(0,)]  # each batch's worst case released
    again = generate("svamp", SVAMP, out_teacher, examples(), name="live")  # all cached: nothing submitted
    assert srv.batches.created == 2 and again.usage["batch"]["submitted"] == 0 and again.usage["cost_usd"] == 0


def test_an_expired_batch_resubmits_only_what_is_missing(srv, tmp_path):
    srv.batches.expire_next = 3  # the CoT batch expires with 3 of its 9 lines answered
    out = generate("svamp", SVAMP, teacher(srv, tmp_path), examples(), name="live")
    u = out.usage["batch"]
    assert u["expired"] == 1 and u["submitted"] == 3 and srv.batches.batches["batch_1"]["status"] == "expired"
    first, second = lines_of_file(srv, "batch_1"), lines_of_file(srv, "batch_2")
    assert len(second) == COT_LINES - 3 and {x["custom_id"] for x in second} == {x["custom_id"] for x in first[3:]}
    assert out.usage["samples"] == 42 and out.usage["requests"] == COT_LINES + SE_LINES


def test_one_failed_line_goes_in_the_next_batch(srv, tmp_path):
    srv.batches.fail_next = 1
    out = generate("svamp", SVAMP, teacher(srv, tmp_path), examples(), name="live")
    u = out.usage["batch"]
    assert u["failed_lines"] == 1 and u["submitted"] == 3
    assert [x["custom_id"] for x in lines_of_file(srv, "batch_2")] == [lines_of_file(srv, "batch_1")[0]["custom_id"]]
    assert out.usage["samples"] == 42


def test_an_unknown_custom_id_is_quarantined_and_counted(srv, tmp_path):
    srv.batches.unknown_next = True
    t = teacher(srv, tmp_path)
    out = generate("svamp", SVAMP, t, examples(), name="live")
    assert out.usage["batch"]["quarantined_lines"] == 1 and out.usage["samples"] == 42
    assert rows(t, "SELECT custom_id, reason FROM batch_quarantine") == [("no-such-request:0:1", "unknown custom_id")]


def test_a_phase_mixes_online_and_batch_answers(srv, tmp_path):
    online = generate("svamp", SVAMP, teacher(srv, tmp_path, mode="online", cots=1, self_evals=0), examples(), name="live")
    assert online.usage["batch"] is None and srv.batches.created == 0  # each question's first CoT, online
    out = generate("svamp", SVAMP, teacher(srv, tmp_path), examples(), name="live")
    cot_lines = lines_of_file(srv, "batch_1")
    assert len(cot_lines) == COT_LINES and all(x["custom_id"].endswith(":1:1") for x in cot_lines)  # the second CoTs
    assert "n" not in cot_lines[0]["body"]
    assert out.usage["cached_samples"] == 9 and out.usage["samples"] == 42
    assert all(len(r["cots"]) == 2 for r in out.records["train"] + out.records["test"])


def test_a_cancelled_batch_keeps_its_answers_and_stops_in_one_line(srv, tmp_path):
    from pipeline.teacher.openai import TeacherStopped

    srv.batches.cancel_next = 4
    t = teacher(srv, tmp_path)
    with pytest.raises(TeacherStopped) as ei:
        generate("svamp", SVAMP, t, examples(), name="live")
    msg = str(ei.value)
    assert "\n" not in msg and "batch mode: batch batch_1 was cancelled on the endpoint (4 lines answered" in msg
    assert "10 samples missing" in msg and srv.batches.created == 1
    assert rows(t, "SELECT COUNT(*) FROM samples") == [(8,)] and rows(t, "SELECT COUNT(*) FROM pending") == [(0,)]
    assert ei.value.usage["stopped"] and ei.value.usage["batch"]["submitted"] == 1


def test_the_budget_cuts_files_to_what_fits_and_never_goes_over(srv, tmp_path):
    from pipeline.teacher.openai import TeacherStopped

    t = teacher(srv, tmp_path, budget_usd=1.5)
    with pytest.raises(TeacherStopped) as ei:
        generate("svamp", SVAMP, t, examples(), name="live")
    u = ei.value.usage
    assert "budget_usd $1.5 reached" in str(ei.value) and u["budget"]["left_usd"] >= 0
    assert u["total_cost_usd"] <= 1.5 and srv.batches.created >= 2  # cut, then more once the real costs were in
    assert rows(t, "SELECT COUNT(*) FROM pending") == [(0,)]
    assert 0 < u["samples"] < 42


def test_an_endpoint_without_the_batch_api_is_one_line(srv, tmp_path):
    srv.batches.enabled = False
    with pytest.raises(PipelineError) as ei:
        generate("svamp", SVAMP, teacher(srv, tmp_path), examples(), name="live")
    msg = str(ei.value)
    assert "\n" not in msg and "mode: batch, but the endpoint has no /v1/batches (HTTP 404)" in msg
    assert "`mode: online` under teachers.live" in msg and "teach-batch" in msg
    assert srv.batches.uploads == 0 and srv.stats.requests == 0


KILLED = textwrap.dedent("""
    import json, sys
    sys.path[:0] = [sys.argv[1], sys.argv[2]]
    from test_teacher_batch import SVAMP, examples
    from pipeline.core.spec import OpenAITeacher
    from pipeline.teacher.openai import generate
    generate("svamp", SVAMP, OpenAITeacher(**json.loads(sys.argv[3])), examples(), name="live")
""")


def test_a_kill_while_polling_resumes_the_same_batch(srv, tmp_path):
    t = teacher(srv, tmp_path, self_evals=0, batch_poll_s=0.05)  # one phase: one batch
    srv.batches.hold = True
    env = {**os.environ, KEY_ENV: "sk-test-batch"}
    p = subprocess.Popen([sys.executable, "-c", KILLED, str(Path(__file__).parent), str(Path(__file__).parents[1]),
                          t.model_dump_json()], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    end = time.monotonic() + 60
    while srv.batches.retrieves < 3 and time.monotonic() < end and p.poll() is None:
        time.sleep(0.05)
    assert p.poll() is None, p.stderr.read()
    p.send_signal(signal.SIGKILL)
    p.wait(timeout=10)
    assert srv.batches.created == 1 and rows(t, "SELECT status, closed FROM batches") == [("in_progress", 0)]
    assert rows(t, "SELECT state, COUNT(*) FROM pending") == [("batch", 1)]  # its worst case still counted
    srv.batches.hold = False
    out = generate("svamp", SVAMP, t, examples(), name="live")
    assert srv.batches.created == 1  # the rerun sent 0 new batches
    assert out.usage["batch"]["resumed"] == 1 and out.usage["batch"]["submitted"] == 0 and out.usage["samples"] == 18
    assert rows(t, "SELECT COUNT(*) FROM pending") == [(0,)]


def test_a_kill_between_create_and_its_id_is_adopted_on_resume(srv, tmp_path, monkeypatch):
    from pipeline.teacher.openai import batch_store

    t = teacher(srv, tmp_path, self_evals=0)

    def killed(*a, **k):
        raise KeyboardInterrupt  # the process dies once the endpoint has created the batch
    with monkeypatch.context() as m, pytest.raises(KeyboardInterrupt):
        m.setattr(batch_store, "adopt", killed)
        generate("svamp", SVAMP, t, examples(), name="live")
    assert srv.batches.created == 1 and rows(t, "SELECT status FROM batches") == [("submitting",)]
    out = generate("svamp", SVAMP, t, examples(), name="live")
    assert srv.batches.created == 1 and out.usage["batch"]["resumed"] == 1 and out.usage["samples"] == 18
    assert rows(t, "SELECT id, closed FROM batches") == [("batch_1", 1)]


def test_online_refuses_a_phase_whose_batch_is_still_open(srv, tmp_path):
    t = teacher(srv, tmp_path, self_evals=0, batch_poll_s=0.05)
    srv.batches.hold = True
    import threading

    done = []
    th = threading.Thread(target=lambda: done.append(generate("svamp", SVAMP, t, examples(), name="live")), daemon=True)
    th.start()
    end = time.monotonic() + 30
    while srv.batches.retrieves < 2 and time.monotonic() < end:
        time.sleep(0.02)
    with pytest.raises(PipelineError) as ei:
        generate("svamp", SVAMP, teacher(srv, tmp_path, mode="online", self_evals=0), examples(), name="live")
    assert "batch batch_1 of these requests is still open" in str(ei.value) and srv.stats.requests == 0
    srv.batches.hold = False
    th.join(timeout=30)
    assert done and done[0].usage["samples"] == 18 and srv.batches.created == 1  # the batch run, unharmed


def test_export_then_import_offline_sends_nothing(srv, tmp_path):
    t = teacher(srv, tmp_path)
    req = tmp_path / "requests.jsonl"
    batch_files("svamp", SVAMP, t, examples(), "live", export=req)
    lines = [json.loads(x) for x in req.read_text().splitlines()]
    assert len(lines) == COT_LINES and srv.batches.uploads == 0 and srv.stats.requests == 0

    def engine(requests: list[dict], path: Path) -> None:  # an offline engine: one output line per request
        with open(path, "w") as f:
            for k, r in enumerate(reversed(requests)):
                _, body, _ = srv.complete(r["body"], sleep=False)
                f.write(json.dumps({"id": f"o{k}", "custom_id": r["custom_id"], "error": None,
                                    "response": {"status_code": 200, "request_id": f"r{k}", "body": body}}) + "\n")
            f.write(json.dumps({"id": "x", "custom_id": "not-ours", "response": {"status_code": 200, "body": {}}}) + "\n")

    engine(lines, tmp_path / "out.jsonl")
    said = batch_files("svamp", SVAMP, t, examples(), "live", import_=tmp_path / "out.jsonl", export=req)
    assert said[0].startswith(f"imported {tmp_path / 'out.jsonl'}: {COT_LINES} lines recorded, 0 failed, 1 quarantined")
    se = [json.loads(x) for x in req.read_text().splitlines()]  # the export after the CoTs: their self-evaluations
    assert len(se) == SE_LINES
    engine(se, tmp_path / "out2.jsonl")
    batch_files("svamp", SVAMP, t, examples(), "live", import_=tmp_path / "out2.jsonl")
    calls = srv.stats.requests
    out = generate("svamp", SVAMP, t, examples(), name="live")  # everything from the journal
    assert srv.batches.uploads == 0 and srv.stats.requests == calls and out.usage["cached_samples"] == 42


def test_the_forecast_and_estimate_show_the_batch_price(srv, tmp_path):
    from pipeline.core.stageio import by_origin
    from pipeline.teacher.openai.estimate import estimate
    from pipeline.stages.forecast import teacher_forecast

    on = estimate(SVAMP, teacher(srv, tmp_path, mode="online"), examples(), use_journal=False)
    off = estimate(SVAMP, teacher(srv, tmp_path), examples(), use_journal=False)
    assert off.requests == on.requests and off.usd_max == pytest.approx(0.5 * on.usd_max)

    class P:  # the forecast's view of params: one teacher of one dataset
        datasets = {"svamp": type("D", (), {"task": "svamp"})()}

        def __init__(self, t):
            self.t = t

        def teacher(self, ds, name):
            return self.t

    ex = {s: v for s, v in examples().items()} | {"valid": []}
    f_on = teacher_forecast(P(teacher(srv, tmp_path, mode="online")), "svamp", "live", ex, {})
    f_off = teacher_forecast(P(teacher(srv, tmp_path)), "svamp", "live", ex, {})
    assert f_off.usd_max == pytest.approx(0.5 * f_on.usd_max, abs=0.01) and f_off.requests == f_on.requests
    assert "batch mode: at the batch price, x0.5" in f_off.note and "batch" not in f_on.note
    assert by_origin
    with pytest.raises(ValueError):
        OpenAITeacher(**{**teacher(srv, tmp_path).model_dump(), "batch_price_factor": 0})


def test_teach_batch_cli_bad_input_is_one_line(cli_project):
    from support.cli import cli

    for args, words in [(("--dataset", "svamp"), ("batch files are for the openai backend",)),
                        (("--dataset", "nope", "--export", "x.jsonl"), ("nope",))]:
        r = cli(cli_project, "teach-batch", *args)
        lines = r.stderr.strip().splitlines()
        assert r.returncode == 2 and len(lines) == 1 and all(w in lines[0] for w in words), (args, r.stderr)
