"""Rough edges of the live teacher, each with the one line the user reads:

a. an endpoint that cannot be reached (a closed port on 127.0.0.1): "cannot connect to HOST:PORT
   (connection refused)", in seconds, with the paper's retry settings; and a server dying mid-run;
b. an empty OPENAI_BASE_URL is unset, for the client and the journal key alike (a teacher's own
   ``base_url`` comes first);
c. prompt templates that do not show the example (or the CoT) are refused when loaded;
d. artifacts get the mode a plain ``open(path, "w")`` gives them, not 0600.
"""
from __future__ import annotations

import json
import os
import re
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipeline.core.artifacts import write_json, write_jsonl
from pipeline.core.errors import PipelineError
from pipeline.core.spec import OpenAITeacher
from pipeline.teacher.openai import DEFAULT_BASE_URL, client_base_url, endpoint_url, make_client
from pipeline.teacher.openai.endpoint import host_port, where
from pipeline.teacher.prompts import PROMPT_DIR, load_template
from support.teacher import SVAMP, env_for, error_line, journal_rows, teacher_cli, write_params

# the fixtures (`teacher_project`, `srv`) are in conftest.py

needs_svamp = pytest.mark.skipif(not (SVAMP / "svamp_train.json").exists(), reason=f"shared data not found at {SVAMP}")
PAPER_RETRIES = {"max_retries": 6, "timeout_s": 60, "concurrency": 16}  # profiles/paper.yaml


def run(proj: Path, srv, command: str, **env) -> subprocess.CompletedProcess:
    """``python -m pipeline COMMAND --dataset svamp`` with ``env`` over the test environment."""
    return subprocess.run([sys.executable, "-m", "pipeline", command, "--dataset", "svamp"], cwd=proj,
                          env={**env_for(proj, srv, "sk-test-local"), **env}, capture_output=True, text=True,
                          timeout=120)


def closed_port() -> int:
    """Port 9 (discard) when nothing listens there, else another port nothing listens on."""
    for port in (9, 0):
        if port == 0:
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                return s.getsockname()[1]  # closed again when the socket is
        with socket.socket() as s:
            s.settimeout(1)
            if s.connect_ex(("127.0.0.1", port)) != 0:
                return port
    raise AssertionError("unreachable")


# --------------------------------------------------------------------------- a. cannot connect
@needs_svamp
@pytest.mark.parametrize("transport", ["aiohttp", "httpx"])
def test_a_refused_connection_fails_fast_with_the_reason(teacher_project, srv, transport):
    port = closed_port()
    write_params(teacher_project, **PAPER_RETRIES)
    t0 = time.perf_counter()
    r = run(teacher_project, srv, "teach", OPENAI_BASE_URL=f"http://127.0.0.1:{port}/v1", MM_TEACHER_HTTP=transport)
    wall = time.perf_counter() - t0
    assert r.returncode == 2, r.stderr
    line = error_line(r)
    assert f"cannot connect to 127.0.0.1:{port} (connection refused)" in line, line
    assert "timeout" not in line and "nothing was sent" in line
    assert wall < 10, f"took {wall:.1f} s with max_retries 6"  # every request used to be retried 6 times


@needs_svamp
def test_a_server_dying_mid_run_stops_at_the_first_refused_request(teacher_project, srv):
    srv.config.latency = 0.05
    write_params(teacher_project, cots=3, self_evals=0, max_retries=6, timeout_s=60, concurrency=4)
    proc = subprocess.Popen([sys.executable, "-m", "pipeline", "teach", "--dataset", "svamp"], cwd=teacher_project,
                            env=env_for(teacher_project, srv, "sk-test-local"), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 30
        while srv.stats.ok < 3 and time.time() < deadline and proc.poll() is None:
            time.sleep(0.005)
        assert proc.poll() is None, "the run finished before the server went down"
        srv.go_down()
        t0 = time.perf_counter()
        out, err = proc.communicate(timeout=60)
        wall = time.perf_counter() - t0
    finally:
        if proc.poll() is None:
            proc.kill()
    r = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
    assert r.returncode == 2, err
    line = error_line(r)
    assert line.startswith(f"error: teacher stopped: cannot connect to 127.0.0.1:{srv.port} (connection refused)"), line
    ok, failed = map(int, re.search(r"(\d+) requests succeeded, (\d+) failed", line).groups())
    assert ok == journal_rows(teacher_project, "SELECT COUNT(*) FROM requests")[0][0] >= 3
    assert failed <= 4  # the requests in flight; nothing new after the first refused one
    assert "rerun to send only the missing ones" in line
    assert wall < 8, f"took {wall:.1f} s with max_retries 6"  # refused connections are not retried (was ~21 s)


# --------------------------------------------------------------------------- b. empty OPENAI_BASE_URL
@pytest.mark.parametrize("value", ["", "   "])
def test_b_an_empty_base_url_is_unset_for_the_client_and_the_journal_alike(monkeypatch, value):
    monkeypatch.setenv("OPENAI_BASE_URL", value)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-local")
    t = OpenAITeacher(backend="openai", model="gpt-4o-mini")
    assert endpoint_url(t) == client_base_url(t) == DEFAULT_BASE_URL  # the journal key, the metrics, the client
    assert host_port(t) == "api.openai.com:443" and "OPENAI_BASE_URL is unset or empty" in where(t)
    client = make_client(t)
    assert str(client.base_url).rstrip("/") == DEFAULT_BASE_URL  # not '', which failed with UnsupportedProtocol
    monkeypatch.setenv("OPENAI_BASE_URL", " http://127.0.0.1:8000/v1/ ")
    assert endpoint_url(t) == "http://127.0.0.1:8000/v1"
    assert str(make_client(t).base_url).rstrip("/") == endpoint_url(t)
    own = OpenAITeacher(backend="openai", model="m", base_url="http://127.0.0.1:9000/v1")  # base_url comes first
    assert endpoint_url(own) == str(make_client(own).base_url).rstrip("/") == "http://127.0.0.1:9000/v1"


@needs_svamp
def test_b_estimate_with_an_empty_base_url_names_the_default_endpoint(teacher_project, srv):
    r = run(teacher_project, srv, "estimate", OPENAI_BASE_URL="")
    assert r.returncode == 0, r.stderr
    assert f"fake-model at {DEFAULT_BASE_URL};" in r.stdout, r.stdout


# --------------------------------------------------------------------------- c. templates
def _template(tmp_path: Path, task: str, kind: str, body: str) -> Path:
    path = tmp_path / task / f"{kind}.txt"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"# version: 1\n# stop: [\"\\nQ:\"]\n\n{body}\n", encoding="utf-8")
    load_template.cache_clear()
    return path


@pytest.mark.parametrize("task,kind,body,missing", [
    ("svamp", "cot", "Q: How many apples are there?\nA:", "{question}"),
    ("cqa", "cot", "Q: {question}\nA:", "{choices}"),
    ("cqa", "cot", "Answer Choices:\n{choices}\nA:", "{question}"),
    ("anli", "cot", "Hypothesis: {hypothesis}\nA:", "{premise}"),
    ("anli", "cot", "Premise: {premise}\nA:", "{hypothesis}"),
    ("svamp", "self_eval", "Answer: {cot}\nEvaluation:", "{question}"),
    ("svamp", "self_eval", "Question: {question}\nEvaluation:", "{cot}"),
    ("anli", "self_eval", "Premise: {premise}\nAnswer: {cot}\nEvaluation:", "{hypothesis}"),
])
def test_c_a_template_without_the_example_is_refused_naming_file_and_placeholder(tmp_path, task, kind, body, missing):
    path = _template(tmp_path, task, kind, body)
    with pytest.raises(PipelineError) as ei:
        load_template(task, kind, tmp_path)
    msg = str(ei.value)
    assert msg.startswith(f"{path}: missing placeholder {missing}") and "\n" not in msg, msg


@pytest.mark.parametrize("task,kind,body", [
    ("svamp", "cot", "Q: {input}\nA:"),
    ("cqa", "cot", "{input}\nA:"),
    ("anli", "cot", "{premise} / {question}\nA:"),
    ("cqa", "self_eval", "{input}\n{cot}\nEvaluation:"),
])
def test_c_templates_showing_the_example_are_accepted(tmp_path, task, kind, body):
    _template(tmp_path, task, kind, body)
    assert load_template(task, kind, tmp_path).body


def test_c_the_shipped_templates_pass():
    load_template.cache_clear()
    for task in ("svamp", "cqa", "anli"):
        for kind in ("cot", "self_eval"):
            assert load_template(task, kind, PROMPT_DIR).version


@needs_svamp
def test_c_teach_refuses_a_constant_prompt_before_sending(teacher_project, srv):
    cot = teacher_project / "prompts" / "svamp" / "cot.txt"
    cot.write_text(cot.read_text(encoding="utf-8").replace("{question}", "a fixed question"), encoding="utf-8")
    r = teacher_cli(teacher_project, srv, "teach", "--dataset", "svamp")
    assert r.returncode == 2
    line = error_line(r)
    assert f"{cot}: missing placeholder {{question}}" in line, line
    assert srv.stats.requests == 0


# --------------------------------------------------------------------------- d. file modes
@pytest.mark.parametrize("umask", [0o022, 0o002, 0o077])
def test_d_artifacts_get_the_mode_open_would_give(tmp_path, umask):
    old = os.umask(umask)
    try:
        with open(tmp_path / "plain.txt", "w") as f:
            f.write("x")
        write_jsonl(tmp_path / "rows.jsonl", [{"a": 1}], None)
        write_json(tmp_path / "m.json", {"a": 1})
        write_jsonl(tmp_path / "rows.jsonl", [{"a": 2}], None)  # replacing keeps it atomic and the mode
    finally:
        os.umask(old)
    want = 0o666 & ~umask
    for name in ("plain.txt", "rows.jsonl", "m.json"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == want, name
    assert json.loads((tmp_path / "rows.jsonl").read_text()) == {"a": 2}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.json", "plain.txt", "rows.jsonl"]  # no temp files


def test_d_a_failed_write_leaves_no_temp_file_and_the_old_file(tmp_path):
    write_json(tmp_path / "m.json", {"a": 1})

    def rows():
        yield {"a": 1}
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        write_jsonl(tmp_path / "m.json", rows(), None)
    assert json.loads((tmp_path / "m.json").read_text()) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["m.json"]
