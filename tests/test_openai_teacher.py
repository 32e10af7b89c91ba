"""The live (openai) teacher against a real local HTTP server (tests/fake_openai.py), through the CLI.

Each test runs ``python -m pipeline ...`` in a temporary copy of the project (pipeline/, schemas/,
prompts/, a params.yaml whose svamp teacher is ``openai``), on the real SVAMP files in
``../shared/data``, with the fake endpoint injecting the faults under test.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from fake_openai import answer_for
from pipeline.core.records import Example
from pipeline.tasks import get_task
from pipeline.teacher.openai import parse_completion, read_answer, scrub
from pipeline.teacher.prompts import example_values, load_template
from pipeline.teacher.ratelimit import RateLimiter
from support.teacher import (SVAMP, TEACHER, TEST_Q, TRAIN_Q, env_for, error_line, journal_file, journal_rows,
                             teacher_cli, write_params)

# the fixtures (`teacher_project` from the module's `base_project`, `srv` from the module's `server`) are in
# conftest.py

pytestmark = [
    pytest.mark.skipif(not (SVAMP / "svamp_train.json").exists(), reason=f"shared data not found at {SVAMP}"),
    pytest.mark.timeout(120),
]

def journaled(proj: Path) -> dict[str, set]:
    """prompt hash -> sample indices in the journal"""
    out: dict[str, set] = {}
    for h, i in journal_rows(proj, "SELECT prompt_hash, sample FROM samples"):
        out.setdefault(h, set()).add(i)
    return out


def records(proj: Path, split: str) -> list[dict]:
    return [json.loads(line) for line in (proj / "data/teacher/svamp/live" / f"{split}.jsonl").read_text().splitlines()]


def metrics(proj: Path) -> dict:
    return json.loads((proj / "metrics/teach/svamp/live.json").read_text())


def assert_complete(proj: Path, cots: int = 2, evals: int = 2) -> None:
    for rec in records(proj, "train"):
        assert len(rec["cots"]) == cots
        assert all(len(c["evaluations"]) == (evals if c["status"] == "ok" else 0) for c in rec["cots"])
    for rec in records(proj, "test"):
        assert len(rec["cots"]) == cots and all(not c["evaluations"] for c in rec["cots"])
    assert all(rec["cots"] == [] for rec in records(proj, "valid"))  # valid is not in teacher.splits


# --------------------------------------------------------------------------- happy path and n
def test_teach_generates_complete_records_and_a_rerun_sends_nothing(teacher_project, srv):
    r = teacher_cli(teacher_project, srv, "teach", "--dataset", "svamp")
    assert r.returncode == 0, r.stderr
    assert_complete(teacher_project)
    train = records(teacher_project, "train")
    assert {c["source"] for rec in train for c in rec["cots"]} == {"fake-model"}
    # CoT i of each question is choice i of the answer to that question's own prompt
    task, tmpl = get_task("svamp"), load_template("svamp", "cot")
    prepared = [json.loads(x) for x in (teacher_project / "data/prepared/svamp/train.jsonl").read_text().splitlines()]
    for ex, rec in zip(prepared, train, strict=True):
        assert rec["id"] == ex["id"]
        prompt = tmpl.render(example_values(task, Example(**ex)))
        assert [c["text"] for c in rec["cots"]] == [answer_for(prompt, i) for i in range(2)]
    m = metrics(teacher_project)
    u = m["usage"]
    n_samples = (TRAIN_Q + TEST_Q) * 2 + TRAIN_Q * 2 * 2
    assert u["samples"] == n_samples and u["cached_samples"] == 0
    assert u["requests"] == srv.stats.ok == TRAIN_Q + TEST_Q + TRAIN_Q * 2  # n=2 samples per request
    assert u["n_per_request"] is True
    assert u["prompts"] == {"svamp/cot.txt": "1", "svamp/self_eval.txt": "1"}
    assert u["prompt_tokens"] > 0 and u["completion_tokens"] > 0 and u["cost_usd"] > 0
    assert m["splits"]["train"]["evaluations"] == TRAIN_Q * 2 * 2
    # every request carried the template's stop sequences and the sampling params
    assert {tuple(e["stop"]) for e in srv.stats.log} == {("\nQ:",), ("\nQuestion:",)}
    assert {(e["max_tokens"], e["temperature"]) for e in srv.stats.log} == {(64, 0.7)}
    before = srv.stats.requests
    r2 = teacher_cli(teacher_project, srv, "teach", "--dataset", "svamp")
    assert r2.returncode == 0, r2.stderr
    assert srv.stats.requests == before  # fully cached
    assert records(teacher_project, "train") == train
    assert (metrics(teacher_project)["usage"]["cached_samples"] == n_samples
            and metrics(teacher_project)["usage"]["requests"] == 0)


@pytest.mark.parametrize("n_mode", ["ignore", "reject", "never"])
def test_endpoint_without_n_falls_back_to_one_request_per_sample(teacher_project, srv, n_mode):
    if n_mode == "never":  # n works, but params say not to use it
        write_params(teacher_project, cots=3, self_evals=0, use_n="never")
    else:
        srv.config.n_mode = n_mode
        write_params(teacher_project, cots=3, self_evals=0)
    r = teacher_cli(teacher_project, srv, "teach", "--dataset", "svamp")
    assert r.returncode == 0, r.stderr
    assert_complete(teacher_project, cots=3, evals=0)
    needed = (TRAIN_Q + TEST_Q) * 3
    assert srv.stats.choices == needed  # nothing asked twice, nothing thrown away
    asked_n = [e for e in srv.stats.log if e["n"] > 1]
    assert len(asked_n) <= 2 if n_mode == "ignore" else not asked_n  # the first tries only
    assert metrics(teacher_project)["usage"]["n_per_request"] is False
    remembered = journal_rows(teacher_project, "SELECT n_supported FROM capabilities")
    assert remembered == ([] if n_mode == "never" else [(0,)])
    if n_mode == "ignore":  # remembered: a later run does not try n again
        write_params(teacher_project, cots=4, self_evals=0)
        seen = len(srv.stats.log)
        assert teacher_cli(teacher_project, srv, "teach", "--dataset", "svamp").returncode == 0
        assert [e["n"] for e in srv.stats.log[seen:]] == [1] * (TRAIN_Q + TEST_Q)


# --------------------------------------------------------------------------- durability
def test_sigkill_mid_run_then_rerun_loses_nothing_and_repeats_nothing(teacher_project, srv):
    srv.config.latency = 0.1
    write_params(teacher_project, cots=3, self_evals=2)
    proc = subprocess.Popen([sys.executable, "-m", "pipeline", "teach", "--dataset", "svamp"], cwd=teacher_project,
                            env=env_for(teacher_project, srv, "sk-test-local"), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 30
        while srv.stats.ok < 12 and time.time() < deadline and proc.poll() is None:
            time.sleep(0.005)
        assert proc.poll() is None, "the run finished before it could be killed"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    time.sleep(0.3)  # let the server finish answering the requests that were in flight
    want = {"cot": 3, "self_eval": 2}
    after_kill = journaled(teacher_project)
    n_after_kill = sum(len(v) for v in after_kill.values())
    total = (TRAIN_Q + TEST_Q) * 3 + TRAIN_Q * 3 * 2
    assert 0 < n_after_kill < total, "kill -9 should land mid-run"
    seen = len(srv.stats.log)

    r = teacher_cli(teacher_project, srv, "teach", "--dataset", "svamp")
    assert r.returncode == 0, r.stderr
    rerun = srv.stats.log[seen:]
    asked: dict[str, int] = {}
    for e in rerun:
        asked[e["hash"]] = asked.get(e["hash"], 0) + e["n"]
    kinds = {e["hash"]: e["kind"] for e in srv.stats.log}
    for h, n in asked.items():  # the rerun asked exactly for what the journal did not have
        assert n == want[kinds[h]] - len(after_kill.get(h, ())), (h, n, after_kill.get(h))
    # only answers that were in flight when the process died may be asked again: at most `concurrency`
    asked_again = [e for e in srv.stats.log[:seen] if e["hash"] in asked]
    assert len(asked_again) <= 2, asked_again
    assert_complete(teacher_project, cots=3, evals=2)
    final = journaled(teacher_project)
    assert all(final[h] >= after_kill[h] for h in after_kill)  # nothing journaled before the kill was lost
    assert sum(len(v) for v in final.values()) == total
    u = metrics(teacher_project)["usage"]
    assert u["cached_samples"] == n_after_kill and u["samples"] == total


# --------------------------------------------------------------------------- failures
@pytest.mark.parametrize("fault", ["500", "timeout"])
def test_persistent_failures_end_with_a_one_line_summary_and_keep_successes(teacher_project, srv, fault):
    if fault == "500":
        srv.config.status_after = 4  # the first 4 requests succeed, then every answer is a 500
        write_params(teacher_project, max_retries=1)
    else:
        srv.config.slow_first, srv.config.slow_s = 1000, 2.0  # every answer comes after the timeout
        write_params(teacher_project, max_retries=0, timeout_s=0.3)
    r = teacher_cli(teacher_project, srv, "teach", "--dataset", "svamp")
    assert r.returncode == 2, r.stderr
    line = error_line(r)
    m = re.search(r"teacher requests failed: (\d+) succeeded, (\d+) failed", line)
    assert m, line
    ok, failed = int(m.group(1)), int(m.group(2))
    assert failed >= 1 and "rerun to send only the missing ones" in line
    assert not (teacher_project / "data/teacher/svamp/live/train.jsonl").exists()  # no partial outputs
    if fault == "500":
        assert ok == srv.stats.ok >= 4 and "HTTP 500" in line
        assert srv.stats.errors[500] == failed * 2  # each failed request was retried once by the client
        assert journal_rows(teacher_project, "SELECT COUNT(*) FROM requests") == [(ok,)]
        # the endpoint recovers: the rerun sends only what the journal lacks
        kept = journaled(teacher_project)
        srv.reset(latency=0.02)
        r2 = teacher_cli(teacher_project, srv, "teach", "--dataset", "svamp")
        assert r2.returncode == 0, r2.stderr
        assert not {e["hash"] for e in srv.stats.log} & set(kept)
        assert_complete(teacher_project)
    else:
        assert ok == 0 and "timeout" in line and "consecutive failures" in line


def test_unparseable_outputs_are_quarantined_without_shifting_rows(teacher_project, srv):
    srv.config.garbage_every = 4
    r = teacher_cli(teacher_project, srv, "teach", "--dataset", "svamp")
    assert r.returncode == 0, r.stderr
    quarantine = [json.loads(x)
                  for x in (teacher_project / "data/teacher/svamp/live/quarantine.jsonl").read_text().splitlines()]
    assert srv.stats.garbage > 0 and len(quarantine) == srv.stats.garbage
    u = metrics(teacher_project)["usage"]
    assert u["quarantined"]["cot"] + u["quarantined"]["self_eval"] == len(quarantine)
    by_id = {rec["id"]: rec for split in ("train", "test") for rec in records(teacher_project, split)}
    for q in quarantine:
        cot = by_id[q["id"]]["cots"][q["cot_index"]]
        if q["kind"] == "cot":
            assert cot["status"] == "no_answer" and cot["text"] == q["text"] and q["reason"]
        else:
            assert cot["evaluations"][q["eval_index"]]["status"] == "no_verdict"
    bad_train_cots = sum(q["kind"] == "cot" and q["split"] == "train" for q in quarantine)
    assert u["skipped_self_evals"] == bad_train_cots
    assert_complete(teacher_project)  # every question keeps its k CoTs, in order
    parsed = sum(c["status"] == "ok" for split in ("train", "test") for rec in records(teacher_project, split)
                 for c in rec["cots"])
    assert parsed == (TRAIN_Q + TEST_Q) * 2 - u["quarantined"]["cot"]


def test_429s_are_retried_by_the_client(teacher_project, srv):
    srv.config.status_first, srv.config.status = 3, 429
    write_params(teacher_project, concurrency=1, max_retries=3)
    r = teacher_cli(teacher_project, srv, "teach", "--dataset", "svamp")
    assert r.returncode == 0, r.stderr
    assert srv.stats.errors == {429: 3}
    u = metrics(teacher_project)["usage"]
    assert u["rate_limited"] == 3 and u["http_attempts"] == u["requests"] + 3
    assert_complete(teacher_project)


def test_the_api_key_is_never_written_anywhere(teacher_project, srv):
    key = f"sk-sentinel-{uuid.uuid4().hex}"
    r1 = teacher_cli(teacher_project, srv, "teach", "--dataset", "svamp", key=key)
    assert r1.returncode == 0, r1.stderr
    srv.reset(status_first=1000, status=401, echo_auth=True)  # a server that quotes the key in its errors
    shutil.rmtree(teacher_project / "data" / "teacher")
    journal = journal_file(teacher_project)
    for p in journal.parent.glob(journal.name + "*"):
        p.unlink()
    r2 = teacher_cli(teacher_project, srv, "teach", "--dataset", "svamp", key=key)
    assert r2.returncode == 2 and "HTTP 401" in error_line(r2)
    assert any(key in a for a in srv.stats.auth)  # the key was really sent...
    r3 = teacher_cli(teacher_project, srv, "estimate", "--dataset", "svamp", key=key)
    assert r3.returncode == 0, r3.stderr
    secret = key.encode()
    tail = key.rsplit("-", 1)[1][-12:].encode()
    for out in (r1.stdout, r1.stderr, r2.stdout, r2.stderr, r3.stdout, r3.stderr):  # ...and never shown
        assert key not in out and tail.decode() not in out
    files = [p for p in teacher_project.rglob("*") if p.is_file()]
    assert any(p.name.startswith("teacher_journal.sqlite") for p in files)
    for p in files:
        data = p.read_bytes()
        assert secret not in data and tail not in data, p


# --------------------------------------------------------------------------- cost
def test_estimate_sends_nothing_and_counts_the_cache(teacher_project, srv):
    r = teacher_cli(teacher_project, srv, "estimate", "--dataset", "svamp")
    assert r.returncode == 0, r.stderr
    assert srv.stats.requests == 0
    out = r.stdout
    assert re.search(rf"CoTs: +to send {TRAIN_Q + TEST_Q} requests for {(TRAIN_Q + TEST_Q) * 2} samples", out), out
    assert re.search(rf"self-evaluations: +to send {TRAIN_Q * 2} requests for {TRAIN_Q * 2 * 2} samples", out), out
    assert re.search(r"prompt tokens: +~[\d,]+ \((chars/4|tiktoken)\)", out), out
    cost_max = float(re.search(r"cost: +<= \$([\d.]+)", out).group(1))
    assert cost_max > 0
    assert not journal_file(teacher_project).exists()  # estimating creates nothing

    r = teacher_cli(teacher_project, srv, "teach", "--dataset", "svamp")
    assert r.returncode == 0, r.stderr
    u = metrics(teacher_project)["usage"]
    assert u["cost_usd"] <= cost_max  # the estimate is an upper bound
    sent = srv.stats.requests
    r = teacher_cli(teacher_project, srv, "estimate", "--dataset", "svamp")
    assert r.returncode == 0, r.stderr
    assert srv.stats.requests == sent
    assert re.search(r"requests: +0\b", r.stdout), r.stdout
    m = re.search(r"already cached: +(\d+) samples from (\d+) requests \(\$([\d.]+) spent\)", r.stdout)
    assert m and int(m.group(1)) == u["samples"] and int(m.group(2)) == sent
    assert abs(float(m.group(3)) - u["total_cost_usd"]) < 1e-4


PRICED = {"price_per_1m_input": 1000, "price_per_1m_output": 1000}  # $0.001 per token


def one_sample_worst_case(proj) -> float:
    """The most one more sample of any prompt sent so far can cost: its prompt (as the endpoint
    counted it, plus the few tokens of chat overhead we count) and 64 max_tokens, at PRICED."""
    (max_prompt,), = journal_rows(proj, "SELECT MAX(prompt_tokens) FROM requests")
    return (max_prompt + 8 + TEACHER["max_tokens"]) / 1000


@pytest.mark.parametrize("concurrency", [2, 8])
def test_budget_cap_stops_cleanly_close_to_the_cap_and_a_rerun_finishes(teacher_project, srv, concurrency):
    # $1000 per 1M tokens: a CoT request (~600 prompt tokens + 2 x 64 max) may cost up to about $0.73
    write_params(teacher_project, **PRICED, budget_usd=3.0, concurrency=concurrency)
    r = teacher_cli(teacher_project, srv, "teach", "--dataset", "svamp")
    assert r.returncode == 2, r.stderr
    line = error_line(r)
    assert "budget_usd $3 reached" in line and "raise budget_usd to continue" in line
    assert "$0.0000 before this run" in line
    (n, spent), = journal_rows(teacher_project, "SELECT COUNT(*), SUM(cost_usd) FROM requests")
    assert n >= 1 and spent <= 3.0  # stopped before the cap, not after ...
    assert 3.0 - spent < one_sample_worst_case(teacher_project)  # ... and only when not one more sample fitted
    assert srv.stats.requests == srv.stats.ok == n  # nothing was sent and lost
    stopped = metrics(teacher_project)  # the stop still writes the teach metrics, with the spend
    assert "budget_usd $3 reached" in stopped["stopped"] and stopped["splits"] == {}
    assert stopped["usage"]["budget"]["budget_usd"] == 3.0
    assert stopped["usage"]["budget"]["spent_usd"] == pytest.approx(spent, abs=1e-5)
    kept = journaled(teacher_project)
    write_params(teacher_project, **PRICED)
    r2 = teacher_cli(teacher_project, srv, "teach", "--dataset", "svamp")
    assert r2.returncode == 0, r2.stderr
    assert not {e["hash"] for e in srv.stats.log[n:]} & set(kept)
    assert_complete(teacher_project)
    b = metrics(teacher_project)["usage"]["budget"]
    assert b["budget_usd"] is None and b["left_usd"] is None
    assert abs(b["spent_before_usd"] - spent) < 1e-4 and b["spent_usd"] > 0 and b["reserved_peak_usd"] > 0


def test_budget_caps_the_total_across_runs(teacher_project, srv):
    def spent_in_journal() -> float:
        return journal_rows(teacher_project, "SELECT COALESCE(SUM(cost_usd), 0) FROM requests")[0][0]

    # run 1: one CoT per question, well under the cap
    write_params(teacher_project, **PRICED, cots=1, self_evals=0, budget_usd=100.0)
    r = teacher_cli(teacher_project, srv, "teach", "--dataset", "svamp")
    assert r.returncode == 0, r.stderr
    first = spent_in_journal()
    b = metrics(teacher_project)["usage"]["budget"]
    assert b == {"budget_usd": 100.0, "spent_before_usd": 0.0, "spent_usd": pytest.approx(first, abs=1e-5),
                 "uncertain_usd": 0.0, "uncertain_requests": 0,
                 "reserved_peak_usd": b["reserved_peak_usd"], "left_usd": pytest.approx(100.0 - first, abs=1e-5)}
    # the worst case of at most `concurrency` (2) requests in flight at once
    assert 0 < b["reserved_peak_usd"] <= 2 * one_sample_worst_case(teacher_project) + 1e-9

    # run 2: a second CoT per question, with $2 left of a cap on the TOTAL: it can spend only that
    cap = round(first + 2.0, 4)
    write_params(teacher_project, **PRICED, cots=2, self_evals=0, budget_usd=cap)
    before = srv.stats.requests
    r = teacher_cli(teacher_project, srv, "teach", "--dataset", "svamp")
    assert r.returncode == 2, r.stderr
    line = error_line(r)
    assert f"budget_usd ${cap:g} reached" in line and f"${first:.4f} before this run" in line, line
    second = spent_in_journal() - first
    assert 0 < second <= 2.0 and spent_in_journal() <= cap
    assert 2.0 - second < one_sample_worst_case(teacher_project)
    assert srv.stats.requests > before

    # run 3, same cap: nothing is left, so nothing is sent (not even a fresh per-run allowance)
    sent = srv.stats.requests
    r = teacher_cli(teacher_project, srv, "teach", "--dataset", "svamp")
    assert r.returncode == 2 and "budget_usd" in error_line(r)
    assert srv.stats.requests == sent and spent_in_journal() == pytest.approx(first + second)

    # the estimate says what is left of the cap
    r = teacher_cli(teacher_project, srv, "estimate", "--dataset", "svamp")
    assert r.returncode == 0, r.stderr
    assert re.search(rf"budget_usd: \${cap:g} in all .* \${first + second:.4f} of it spent so far", r.stdout), r.stdout

    # a higher cap lets the run finish; its metrics count what the earlier runs spent
    write_params(teacher_project, **PRICED, cots=2, self_evals=0, budget_usd=100.0)
    r = teacher_cli(teacher_project, srv, "teach", "--dataset", "svamp")
    assert r.returncode == 0, r.stderr
    assert_complete(teacher_project, cots=2, evals=0)
    b = metrics(teacher_project)["usage"]["budget"]
    assert b["spent_before_usd"] == pytest.approx(first + second, abs=1e-5)
    assert b["spent_before_usd"] + b["spent_usd"] == pytest.approx(spent_in_journal(), abs=1e-5)


def test_missing_key_is_a_one_line_error(teacher_project, srv):
    r = teacher_cli(teacher_project, srv, "teach", "--dataset", "svamp", key="")
    assert r.returncode == 2
    assert "OPENAI_API_KEY is not set" in error_line(r)
    assert srv.stats.requests == 0


# --------------------------------------------------------------------------- rate limiter (no server)
def test_rate_limiter_spaces_requests_and_tokens():
    now = [100.0]
    rl = RateLimiter(requests_per_minute=600, clock=lambda: now[0])
    assert [round(rl.reserve(10), 6) for _ in range(4)] == [0, 0.1, 0.2, 0.3]
    rl = RateLimiter(tokens_per_minute=6000, clock=lambda: now[0])
    assert [round(rl.reserve(500), 6) for _ in range(3)] == [0, 5.0, 10.0]  # 100 tokens/s
    now[0] += 20  # idle time is not banked as a burst
    assert rl.reserve(500) == 0 and rl.reserve(500) == 5.0
    assert not RateLimiter().active


# --------------------------------------------------------------------------- answer parsing and scrubbing (no server)
def test_answers_are_read_as_typed_chat_completions():
    from openai.types.chat import ChatCompletion

    def read(body, n):
        completion = parse_completion(json.dumps(body).encode())
        assert isinstance(completion, ChatCompletion)
        a = read_answer(completion, n)
        return a.texts, a.usage, a.response_id

    body = {"id": "x1", "choices": [
        {"index": 1, "message": {"content": "second"}, "finish_reason": "length"},
        {"index": 0, "message": {"content": "first"}, "finish_reason": "stop"},
        {"index": 2, "message": {"content": None, "refusal": "no"}, "finish_reason": "content_filter"}],
        "usage": {"prompt_tokens": 10, "completion_tokens": 7}}
    assert read(body, 3) == ([("first", "stop"), ("second", "length"), ("", "content_filter")], (10, 7), "x1")
    assert read({"choices": []}, 2) == ([], None, None)
    assert read(body, 1)[0] == [("first", "stop")]
    # a complete answer validates; a compatible server's own finish_reason is read as the SDK reads it
    full = {"id": "c", "object": "chat.completion", "created": 1, "model": "m", "choices": [
        {"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "eos", "logprobs": None}]}
    assert read(full, 1) == ([("hi", "eos")], None, "c")
    for bad in (b"<html>oops</html>", b"{}", b"[1]", b'{"choices": 3}'):
        with pytest.raises(ValueError):
            parse_completion(bad)


def test_scrub_removes_keys_and_url_credentials(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "plain-key-without-prefix-123")
    monkeypatch.setenv("OPENAI_BASE_URL", "https://bob:hunter2secret@proxy.example/v1")
    from pipeline.core.spec import OpenAITeacher

    out = scrub("bad key plain-key-without-prefix-123, sk-proj-AbC_12 and Bearer xyz\n at hunter2secret",
                OpenAITeacher(backend="openai", model="m"))
    assert "plain-key" not in out and "sk-proj" not in out and "xyz" not in out and "hunter2" not in out
    assert "\n" not in out
