"""The live teacher in process (``generate``, ``estimate_lines``) against local servers
(tests/fake_openai.py, one per test): a retired model, the model-list check, 4xx never retried, two
teachers on two endpoints, snapshots, ``TeacherStopped`` and spend that may have been billed unseen.

The examples are SVAMP-like questions made up here, so these tests need no shared data."""
from __future__ import annotations

import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from fake_openai import FakeOpenAI
from support.teacher import isolated_key, made_up_examples as examples
from pipeline.core.errors import PipelineError
from pipeline.core.records import TeacherUsage
from pipeline.core.spec import OpenAITeacher
from pipeline.tasks import get_task
from pipeline.teacher.openai import TeacherStopped, estimate_lines, generate
from pipeline.teacher.openai.models import forget_checks

pytestmark = pytest.mark.timeout(120)

ROOT = Path(__file__).resolve().parents[1]
KEY_ENV = "TEST_TEACHER_KEY"
KEY = "sk-proj-Zx81LmQ0ab7Cd9Ef2Gh4Ij6Kl8Mn0Op"
RETIRED = "gpt-3.5-turbo"
SERVED = ["gpt-4o-mini", "gpt-4o", "gpt-3.5-turbo-instruct", "o3-mini", "text-embedding-3-small", "dall-e-3"]
PRICED = {"price_per_1m_input": 1000, "price_per_1m_output": 1000}  # $0.001 per token
SVAMP = get_task("svamp")


@pytest.fixture(autouse=True)
def env(monkeypatch):
    with isolated_key(monkeypatch, KEY_ENV, KEY) as m:
        yield m


@pytest.fixture
def srv():
    with FakeOpenAI(latency=0.01) as s:
        yield s


def teacher(srv: FakeOpenAI, tmp_path: Path, **kw) -> OpenAITeacher:
    return OpenAITeacher(**{"backend": "openai", "model": "fake-model", "base_url": srv.base_url, "api_key_env": KEY_ENV,
                            "cots": 2, "self_evals": 2, "concurrency": 2, "max_tokens": 64, "max_retries": 2,
                            "timeout_s": 5, "journal": str(tmp_path / "journal.sqlite"), **kw})


def rows(t: OpenAITeacher, sql: str) -> list:
    con = sqlite3.connect(t.journal)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again when the socket is


def key_parts_in(text: str) -> list[str]:
    return [KEY[i:i + 8] for i in range(len(KEY) - 7) if KEY[i:i + 8] in text]


# --------------------------------------------------------------------------- 2. a retired model
def test_a_retired_model_the_model_list_lacks_stops_before_any_completion(srv, tmp_path):
    srv.config.served_models, srv.config.retired_models = SERVED, [RETIRED]
    t = teacher(srv, tmp_path, model=RETIRED, max_retries=6, timeout_s=60, concurrency=8)
    t0 = time.perf_counter()
    with pytest.raises(PipelineError) as ei:
        generate("svamp", SVAMP, t, examples(), name="gpt35")
    wall = time.perf_counter() - t0
    msg = str(ei.value)
    print(f"\nretired model, model list served: failed in {wall:.2f} s")
    assert wall < 5 and srv.stats.requests == 0 and srv.stats.models_requests == 1
    assert not isinstance(ei.value, TeacherStopped) and "\n" not in msg
    assert msg.startswith(f"teacher gpt35 (model {RETIRED} at {srv.base_url}): the endpoint does not serve model "
                          f"'{RETIRED}' (its model list has 6: gpt-3.5-turbo-instruct, "), msg
    assert "nothing was sent (18 samples to request)" in msg
    assert "set `model` under teachers.gpt35 in params.yaml (or datasets.svamp.teachers.gpt35)" in msg


def test_a_retired_model_without_a_model_list_fails_after_one_request(srv, tmp_path, capsys):
    srv.config.retired_models = [RETIRED]  # and /v1/models answers 404
    t = teacher(srv, tmp_path, model=RETIRED, max_retries=6, timeout_s=60, concurrency=8)
    t0 = time.perf_counter()
    with pytest.raises(TeacherStopped) as ei:
        generate("svamp", SVAMP, t, examples(), name="gpt35")
    wall = time.perf_counter() - t0
    msg = str(ei.value)
    with capsys.disabled():
        print(f"\nretired model, no model list: failed in {wall:.2f} s after {srv.stats.requests} completion request(s)")
    assert wall < 5 and srv.stats.requests == 1 and srv.stats.errors == {404: 1}
    assert msg.startswith(f"teacher gpt35 (model {RETIRED} at {srv.base_url}): HTTP 404 model_not_found: The model "
                          f"`{RETIRED}` does not exist or you do not have access to it."), msg
    assert msg.endswith("set `model` under teachers.gpt35 in params.yaml (or datasets.svamp.teachers.gpt35) to a "
                        "model the endpoint serves"), msg
    assert "rerun to send only the missing ones" not in msg and "after the client's retries" not in msg
    assert ei.value.usage["http_attempts"] == 1 and ei.value.usage["stopped"] == "HTTP 404 model_not_found"
    assert ei.value.usage["model_check"] == "skipped (/models answered HTTP 404: no model list)"
    err = capsys.readouterr().err
    assert err.count("model check skipped (/models answered HTTP 404: no model list)") == 1
    assert rows(t, "SELECT COUNT(*) FROM pending") == [(0,)]  # a definite 4xx answer: not billed


@pytest.mark.parametrize("status", [403, 404, 413])
def test_4xx_answers_are_never_retried_even_when_the_server_asks_for_it(srv, tmp_path, status):
    srv.config.served_models = ["fake-model"]
    srv.config.status_first, srv.config.status = 1000, status
    srv.config.error_headers = {"x-should-retry": "true"}  # the SDK would obey this on its own
    t = teacher(srv, tmp_path, max_retries=4, concurrency=4)
    with pytest.raises(TeacherStopped) as ei:
        generate("svamp", SVAMP, t, examples(), name="local")
    assert sum(srv.stats.errors.values()) == srv.stats.requests  # every attempt reached the server ...
    assert srv.stats.requests <= 4 and ei.value.usage["http_attempts"] == srv.stats.requests  # ... once per request
    msg = str(ei.value)
    assert f"HTTP {status} " in msg and "never retried" in msg and "rerun to send only the missing ones" not in msg
    if status == 403:
        assert f"set {KEY_ENV} to a key this endpoint accepts" in msg


def test_a_listed_model_sends_its_first_requests_concurrently_and_429s_are_still_retried(srv, tmp_path):
    srv.config.served_models = ["fake-model"]
    srv.config.status_first, srv.config.status = 2, 429
    t = teacher(srv, tmp_path, max_retries=3)
    out = generate("svamp", SVAMP, t, examples(), name="local")
    assert out.usage["model_check"] == "listed" and out.usage["rate_limited"] == 2
    assert out.usage["http_attempts"] == out.usage["requests"] + 2


# --------------------------------------------------------------------------- 2. the check, 401s and scrubbing
@pytest.mark.parametrize("where", ["models", "completions"])
def test_a_refused_key_is_one_line_naming_its_variable_and_never_shown(srv, tmp_path, where):
    echo = f"Incorrect API key provided: {KEY[3:]} (or {KEY[5:20]}). You can find your API key at ..."
    srv.config.error_message = echo
    if where == "models":
        srv.config.models_status = 401
    else:
        srv.config.served_models = ["fake-model"]
        srv.config.status_first, srv.config.status = 1000, 401
    with pytest.raises(PipelineError) as ei:
        generate("svamp", SVAMP, teacher(srv, tmp_path, max_retries=3, concurrency=1), examples(), name="local")
    msg = str(ei.value)
    assert KEY_ENV in msg and "HTTP 401" in msg and "Incorrect API key provided: ***" in msg, msg
    assert not key_parts_in(msg), msg
    assert srv.stats.requests == (0 if where == "models" else 1)


def test_an_endpoint_without_a_model_list_is_checked_once_per_process(srv, tmp_path, capsys):
    srv.config.models_status = 200  # an answer that is not a model list
    t = teacher(srv, tmp_path)
    out = generate("svamp", SVAMP, t, examples(), name="local")  # two phases: CoTs, self-evaluations
    assert out.usage["model_check"] == "skipped (/models answered, but not with a model list)"
    t2 = teacher(srv, tmp_path, journal=str(tmp_path / "other.sqlite"), cots=1, self_evals=0)
    assert generate("svamp", SVAMP, t2, examples(), name="local").usage["model_check"] == out.usage["model_check"]
    assert srv.stats.models_requests == 1
    assert capsys.readouterr().err.count("model check skipped") == 1
    TeacherUsage(**out.usage)


def test_a_refused_connection_at_the_check_names_base_url_in_params(tmp_path):
    port = closed_port()
    t = OpenAITeacher(backend="openai", model="m", base_url=f"http://127.0.0.1:{port}/v1", api_key_env=KEY_ENV,
                      max_retries=6, journal=str(tmp_path / "j.sqlite"))
    t0 = time.perf_counter()
    with pytest.raises(PipelineError) as ei:
        generate("svamp", SVAMP, t, examples(), name="vllm")
    msg = str(ei.value)
    assert time.perf_counter() - t0 < 10
    assert msg.startswith(f"cannot connect to 127.0.0.1:{port} (connection refused): teacher vllm"), msg
    assert "nothing was sent" in msg and "set `base_url` under teachers.vllm in params.yaml" in msg


def test_estimate_warns_first_about_a_model_the_endpoint_does_not_serve(srv, tmp_path, env):
    srv.config.served_models = SERVED
    t = teacher(srv, tmp_path, model=RETIRED)
    lines = estimate_lines("svamp", SVAMP, t, examples(), name="gpt35")
    assert lines[0].startswith(f"warning: teacher gpt35 (model {RETIRED} at {srv.base_url}): the endpoint does not "
                               f"serve model '{RETIRED}'"), lines[0]
    assert lines[0].endswith("the teach stage would stop before sending anything")
    assert lines[1].startswith(f"estimate svamp: teacher gpt35, {RETIRED} at {srv.base_url};")
    assert any("model check:      FAILED (model not served)" in x for x in lines)
    assert srv.stats.requests == 0 and srv.stats.models_requests == 1 and not Path(t.journal).exists()
    forget_checks()
    ok = teacher(srv, tmp_path, model="gpt-4o")
    assert "  model check:      gpt-4o is in the endpoint's model list" in estimate_lines("svamp", SVAMP, ok, examples())
    env.delenv(KEY_ENV)
    assert f"  model check:      not done ({KEY_ENV} is not set)" in estimate_lines("svamp", SVAMP, ok, examples())
    env.setenv(KEY_ENV, KEY)
    port = closed_port()
    down = ok.model_copy(update={"base_url": f"http://127.0.0.1:{port}/v1"})
    assert (f"  model check:      not done (cannot connect to 127.0.0.1:{port} (connection refused))"
            in estimate_lines("svamp", SVAMP, down, examples()))


# --------------------------------------------------------------------------- 1. two teachers, two endpoints
def test_two_teachers_on_two_endpoints_in_one_process_do_not_interfere(tmp_path, env):
    env.setenv("OPENAI_API_KEY", "sk-the-openai-key-nobody-here-should-see")
    env.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    env.setenv("VLLM_API_KEY", "vllm-token-0123456789")
    with FakeOpenAI(latency=0.02, served_models=["llama"]) as a, FakeOpenAI(latency=0.02, answer_model="gpt-x-2024") as b:
        ta = OpenAITeacher(backend="openai", model="llama", base_url=a.base_url, api_key_env="VLLM_API_KEY", cots=2,
                           self_evals=1, max_tokens=64, journal=str(tmp_path / "j.sqlite"))
        tb = OpenAITeacher(backend="openai", model="gpt-x", base_url=b.base_url, api_key_env=KEY_ENV, cots=1,
                           self_evals=0, max_tokens=64, journal=str(tmp_path / "j.sqlite"))
        out, errors = {}, []

        def run(name, t):
            try:
                out[name] = generate("svamp", SVAMP, t, examples(), name=name)
            except BaseException as e:  # pragma: no cover - reported below
                errors.append(e)

        threads = [threading.Thread(target=run, args=(n, t)) for n, t in (("llama", ta), ("gpt", tb))]
        for th in threads:
            th.start()
        for th in threads:
            th.join(60)
        assert not errors, errors
        assert a.stats.auth == {"Bearer vllm-token-0123456789"} and b.stats.auth == {f"Bearer {KEY}"}
        assert {e["model"] for e in a.stats.log} == {"llama"} and {e["model"] for e in b.stats.log} == {"gpt-x"}
    ua, ub = out["llama"].usage, out["gpt"].usage
    assert (ua["endpoint"], ua["model_check"]) == (a.base_url, "listed")
    assert (ub["endpoint"], ub["model_check"][:8]) == (b.base_url, "skipped ")
    assert ub["snapshots"] == [{"model": "gpt-x-2024", "system_fingerprint": "fp_fake0001", "requests": 9}]
    assert sorted(rows(ta, "SELECT DISTINCT endpoint FROM requests")) == sorted([(a.base_url,), (b.base_url,)])
    data = b"".join(p.read_bytes() for p in tmp_path.glob("j.sqlite*"))
    assert b"vllm-token" not in data and KEY.encode() not in data and b"sk-the-openai" not in data


# --------------------------------------------------------------------------- 3. snapshots
def test_the_snapshots_behind_the_records_are_counted(srv, tmp_path):
    srv.config.answer_model, srv.config.system_fingerprint = "fake-model-2024-07-18", "fp_a"
    t = teacher(srv, tmp_path, cots=1, self_evals=0)
    first = generate("svamp", SVAMP, t, examples(), name="local").usage
    assert first["snapshots"] == [{"model": "fake-model-2024-07-18", "system_fingerprint": "fp_a", "requests": 9}]
    srv.config.system_fingerprint = None  # the second CoT of each question: no fingerprint reported
    t2 = teacher(srv, tmp_path, cots=2, self_evals=0, use_n="never")
    u = generate("svamp", SVAMP, t2, examples(), name="local").usage
    assert u["snapshots"] == [{"model": "fake-model-2024-07-18", "system_fingerprint": "fp_a", "requests": 9},
                              {"model": "fake-model-2024-07-18", "system_fingerprint": None, "requests": 9}]
    assert rows(t, "SELECT DISTINCT response_model, system_fingerprint FROM requests ORDER BY 2") == [
        ("fake-model-2024-07-18", None), ("fake-model-2024-07-18", "fp_a")]
    assert TeacherUsage(**u).snapshots[1].system_fingerprint is None


# --------------------------------------------------------------------------- 4a. TeacherStopped at the budget
def test_a_budget_stop_raises_teacher_stopped_with_the_spend(srv, tmp_path):
    t = teacher(srv, tmp_path, **PRICED, budget_usd=3.0)
    with pytest.raises(TeacherStopped) as ei:
        generate("svamp", SVAMP, t, examples(), name="local")
    (n, spent), = rows(t, "SELECT COUNT(*), SUM(cost_usd) FROM requests")
    u = ei.value.usage
    TeacherUsage(**u)  # what the teach stage writes
    b = u["budget"]
    assert b["budget_usd"] == 3.0 and b["spent_before_usd"] == 0 and b["uncertain_usd"] == 0
    assert b["spent_usd"] == pytest.approx(spent, abs=1e-6) and b["left_usd"] == pytest.approx(3.0 - spent, abs=1e-6)
    assert u["requests"] == n == srv.stats.ok and u["cost_usd"] == pytest.approx(spent, abs=1e-6)
    assert u["samples"] == 2 * n and u["stopped"] == "budget_usd $3 reached"
    msg = str(ei.value)
    m = re.search(r"\$([\d.]+) left, less than one more sample could cost \(\$([\d.]+)\)", msg)
    assert m and m.group(1) != m.group(2) and float(m.group(1)) < float(m.group(2)), msg


# --------------------------------------------------------------------------- 4b. spend that may have been billed unseen
def billed(srv: FakeOpenAI) -> float:
    """What the server charged, at PRICED: every answer it produced, read by the client or not."""
    return sum(e["prompt_tokens"] + e["completion_tokens"] for e in srv.stats.log) / 1000


def test_requests_abandoned_at_the_timeout_count_against_the_budget(srv, tmp_path):
    srv.config.slow_every, srv.config.slow_s = 3, 0.8  # every third request stalls past timeout_s, and is billed
    cap = 4.0
    t = teacher(srv, tmp_path, **PRICED, budget_usd=cap, timeout_s=0.3, max_retries=2, self_evals=0)
    with pytest.raises(TeacherStopped) as ei:
        generate("svamp", SVAMP, t, examples(train=12), name="local")
    time.sleep(1.0)  # the stalled answers are produced (and billed) after the client gave up on them
    u = ei.value.usage
    (recorded,), = rows(t, "SELECT SUM(cost_usd) FROM requests")
    assert srv.stats.slow >= 2 and billed(srv) > recorded + 0.5  # the abandoned requests were billed too ...
    assert billed(srv) <= cap, (billed(srv), recorded)  # ... and the cap holds counting them
    assert u["uncertain_requests"] == u["budget"]["uncertain_requests"] == srv.stats.slow
    assert recorded + u["uncertain_usd"] <= cap and u["budget"]["left_usd"] < 1.0
    assert rows(t, "SELECT COUNT(*), SUM(attempts) FROM pending WHERE state='abandoned'")[0][1] == srv.stats.slow


def test_a_retry_the_budget_cannot_cover_is_not_sent(srv, tmp_path):
    from pipeline.teacher.openai import Planner, cost_usd

    srv.config.served_models, srv.config.slow_first, srv.config.slow_s = ["fake-model"], 1, 0.8
    t = teacher(srv, tmp_path, **PRICED, cots=1, self_evals=0, timeout_s=0.3, max_retries=3)
    one = examples(train=1, test=0)
    groups, _ = Planner(SVAMP, t, srv.base_url).cot_slots(one["train"])
    (g,) = groups.values()
    worst = cost_usd(t, g.prompt_tokens, t.max_tokens)
    t = t.model_copy(update={"budget_usd": round(1.5 * worst, 6)})  # room for one attempt, not two
    with pytest.raises(TeacherStopped) as ei:
        generate("svamp", SVAMP, t, one, name="local")
    time.sleep(1.0)
    assert srv.stats.requests == 1 and billed(srv) <= t.budget_usd  # the retry was never sent
    msg, b = str(ei.value), ei.value.usage["budget"]
    assert "a retry after an attempt abandoned at timeout_s could cost up to" in msg, msg
    assert b["uncertain_requests"] == 1 and b["uncertain_usd"] == pytest.approx(worst, abs=1e-6) and b["spent_usd"] == 0


KILLED_RUN = """
import os, sys
sys.path[:0] = [{root!r}, {tests!r}]
from test_teacher_live import SVAMP, examples
from pipeline.core.spec import OpenAITeacher
from pipeline.teacher.openai import generate
t = OpenAITeacher(backend="openai", model="fake-model", base_url={url!r}, api_key_env={env!r}, cots=2, self_evals=0,
                  concurrency=2, max_tokens=64, journal={journal!r}, price_per_1m_input=1000, price_per_1m_output=1000)
generate("svamp", SVAMP, t, examples(train=12), name="local")
"""


def test_requests_in_flight_at_a_kill_count_in_the_next_run(srv, tmp_path):
    srv.config.latency = 0.3
    t = teacher(srv, tmp_path, **PRICED, cots=2, self_evals=0)
    script = KILLED_RUN.format(root=str(ROOT), tests=str(ROOT / "tests"), url=srv.base_url, env=KEY_ENV,
                               journal=t.journal)
    proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent(script)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 30
        while srv.stats.ok < 3 and time.time() < deadline and proc.poll() is None:
            time.sleep(0.005)
        assert proc.poll() is None, proc.stderr.read()
        time.sleep(0.1)  # the next requests are in flight
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    (k, worst), = rows(t, "SELECT COUNT(*), COALESCE(SUM(worst_usd * attempts), 0) FROM pending")
    (recorded,), = rows(t, "SELECT SUM(cost_usd) FROM requests")
    assert 1 <= k <= 2 and rows(t, "SELECT DISTINCT state FROM pending") == [("in_flight",)]
    cap = round(recorded + worst + 2.0, 4)  # $2 left once the requests in flight at the kill are counted
    srv.config.latency = 0.01
    with pytest.raises(TeacherStopped) as ei:
        generate("svamp", SVAMP, teacher(srv, tmp_path, **PRICED, cots=2, self_evals=0, budget_usd=cap),
                 examples(train=12), name="local")
    b = ei.value.usage["budget"]
    assert b["spent_before_usd"] == pytest.approx(recorded, abs=1e-6)
    assert b["uncertain_requests"] == k and b["uncertain_usd"] == pytest.approx(worst, abs=1e-6)
    assert 0 < b["spent_usd"] <= 2.0 + 1e-9  # this run spent only what was left after the uncertain spend
    assert b["spent_before_usd"] + b["spent_usd"] + b["uncertain_usd"] <= cap
