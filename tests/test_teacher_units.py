"""The live teacher's parts, without a server: one teacher's endpoint and key, scrubbing, the budget
arithmetic and message, and the journal's migration to schema version 2."""
from __future__ import annotations

import sqlite3
import time

import pytest

from pipeline.core.errors import PipelineError
from pipeline.core.spec import OpenAITeacher
from pipeline.teacher.journal import SCHEMA_VERSION, Journal
from pipeline.teacher.openai import DEFAULT_BASE_URL, Budget, TeacherStopped, client_base_url, endpoint_url, make_client
from pipeline.teacher.openai.budget import usd_pair
from pipeline.teacher.openai.endpoint import api_key, base_url_hint, ensure_key, scrub, where, who

KEY = "sk-proj-9f8e7d6c5b4a3928171615141312"


def teacher(**kw) -> OpenAITeacher:
    return OpenAITeacher(**{"backend": "openai", "model": "gpt-4o-mini", **kw})


@pytest.fixture
def env(monkeypatch):
    for name in ("OPENAI_BASE_URL", "OPENAI_API_KEY", "VLLM_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


# --------------------------------------------------------------------------- 1. per-teacher endpoint
def test_base_url_comes_from_the_teacher_then_the_environment_then_the_default(env):
    vllm = teacher(base_url="http://127.0.0.1:8000/v1/", api_key_env="VLLM_API_KEY")
    plain = teacher()
    assert endpoint_url(plain) == client_base_url(plain) == DEFAULT_BASE_URL
    assert "the default" in where(plain)
    env.setenv("OPENAI_BASE_URL", "  ")  # empty = unset
    assert endpoint_url(plain) == DEFAULT_BASE_URL
    env.setenv("OPENAI_BASE_URL", "https://gateway.example/v1")
    assert endpoint_url(plain) == "https://gateway.example/v1"
    assert endpoint_url(vllm) == "http://127.0.0.1:8000/v1"  # base_url wins over OPENAI_BASE_URL
    assert who(vllm, "llama") == "teacher llama (model gpt-4o-mini at http://127.0.0.1:8000/v1)"
    assert base_url_hint(vllm, "llama", "svamp") == ("set `base_url` under teachers.llama in params.yaml "
                                                     "(or datasets.svamp.teachers.llama)")
    assert base_url_hint(plain, "gpt").startswith("check OPENAI_BASE_URL")


def test_the_key_comes_from_the_variable_the_teacher_names_and_messages_name_it(env):
    vllm = teacher(base_url="http://127.0.0.1:8000/v1", api_key_env="VLLM_API_KEY")
    env.setenv("OPENAI_API_KEY", KEY)
    assert api_key(teacher()) == KEY and api_key(vllm) is None  # never OPENAI_API_KEY for another teacher
    with pytest.raises(PipelineError, match=r"^VLLM_API_KEY is not set \(3 samples to request\): teacher llama "):
        ensure_key(vllm, 3, "llama")
    with pytest.raises(PipelineError, match="VLLM_API_KEY is not set"):  # nor the SDK's own fallback to it
        make_client(vllm)
    ensure_key(vllm, 0, "llama")  # nothing to request: no key needed
    env.setenv("VLLM_API_KEY", " ")
    assert api_key(vllm) is None  # empty = unset
    env.setenv("VLLM_API_KEY", "token-abc123456")
    a, b = make_client(vllm), make_client(teacher())
    assert (a.api_key, str(a.base_url).rstrip("/")) == ("token-abc123456", "http://127.0.0.1:8000/v1")
    assert (b.api_key, str(b.base_url).rstrip("/")) == (KEY, DEFAULT_BASE_URL)


# --------------------------------------------------------------------------- 4c. scrubbing
def test_scrub_removes_any_8_characters_of_the_key(env):
    t = teacher(api_key_env="VLLM_API_KEY")
    env.setenv("VLLM_API_KEY", KEY)
    body = (f'HTTP 401: {{"error": {{"message": "Incorrect API key provided: {KEY[3:]}. Also {KEY[5:20]} and '
            f'{KEY[-8:]}x"}}}}')
    out = scrub(body, t)
    for part in (KEY[3:], KEY[5:20], KEY[-8:], KEY[10:18]):
        assert part not in out, out
    assert "Incorrect API key provided: ***" in out and out.count("***") == 3
    assert scrub(f"{KEY[8:15]} is fine", t) == f"{KEY[8:15]} is fine"  # 7 characters of it: too short to be a secret
    env.setenv("VLLM_API_KEY", "abc12")  # a key shorter than 8 is scrubbed whole
    assert scrub("key abc12 and abc1", t) == "key *** and abc1"
    env.setenv("VLLM_API_KEY", KEY * 4)  # long texts are scrubbed in linear time
    t0 = time.perf_counter()
    assert KEY[2:12] not in scrub(("lorem ipsum " * 20000) + KEY[2:12], t)
    assert time.perf_counter() - t0 < 2


def test_scrub_removes_keys_and_url_credentials(env):
    env.setenv("OPENAI_API_KEY", "plain-key-without-prefix-123")
    env.setenv("OPENAI_BASE_URL", "https://bob:hunter2secret@proxy.example/v1")
    out = scrub("bad key plain-key-without-prefix-123, sk-proj-AbC_12 and Bearer xyz\n at hunter2secret", teacher())
    assert "plain-key" not in out and "sk-proj" not in out and "xyz" not in out and "hunter2" not in out
    assert "\n" not in out


# --------------------------------------------------------------------------- 4a. the budget message
def test_budget_amounts_are_shown_with_enough_digits_to_differ():
    assert usd_pair(0.00096, 0.00104) == ("$0.00096", "$0.00104")  # both were "$0.0010"
    assert usd_pair(0.5, 0.75) == ("$0.5000", "$0.7500")
    left, cost = usd_pair(0.0010000001, 0.0010000002)
    assert left != cost


def test_teacher_stopped_is_a_pipeline_error_carrying_usage():
    e = TeacherStopped("teacher stopped:  budget\nreached", {"budget": {"spent_usd": 1.0}})
    assert isinstance(e, PipelineError) and str(e) == "teacher stopped: budget reached"
    assert e.usage["budget"]["spent_usd"] == 1.0


# --------------------------------------------------------------------------- 4b. uncertain spend in the budget
def test_pending_requests_count_as_spent_until_settled(tmp_path):
    t = teacher(budget_usd=1.0, price_per_1m_input=1000, price_per_1m_output=1000)
    with Journal(tmp_path / "j.sqlite") as j:
        p1 = j.begin_pending(endpoint="e", model=t.model, kind="cot", group="g1", n_asked=1, worst_usd=0.1)
        p2 = j.begin_pending(endpoint="e", model=t.model, kind="cot", group="g2", n_asked=1, worst_usd=0.2)
        j.begin_pending(endpoint="e", model="other", kind="cot", group="g3", n_asked=1, worst_usd=0.4)
        j.pending_attempts(p2, 2)  # one retry went out
        assert j.uncertain("e", t.model) == {"requests": 3, "cost_usd": pytest.approx(0.5)}
        j.settle_pending(p1, 0)  # definite error answers: not billed
        j.settle_pending(p2, 1)  # one attempt abandoned
        assert j.uncertain("e", t.model) == {"requests": 1, "cost_usd": pytest.approx(0.2)}
        b = Budget.from_journal(t, j, "e")
    assert b.spent_before == pytest.approx(0.2) and b.left() == pytest.approx(0.8)
    b.spend(0.3)
    b.abandon(0.1, 1)
    m = b.metrics()
    assert m["uncertain_usd"] == pytest.approx(0.3) and m["uncertain_requests"] == 2
    assert m["spent_before_usd"] + m["spent_usd"] + m["uncertain_usd"] + m["left_usd"] == pytest.approx(1.0)


# --------------------------------------------------------------------------- 3. journal schema 2
V1 = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE requests (id INTEGER PRIMARY KEY, endpoint TEXT NOT NULL, model TEXT NOT NULL, kind TEXT NOT NULL,
    group_key TEXT NOT NULL, n_asked INTEGER NOT NULL, n_returned INTEGER NOT NULL, prompt_tokens INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL, usage_estimated INTEGER NOT NULL DEFAULT 0, cost_usd REAL NOT NULL,
    response_id TEXT, latency_s REAL, created_at REAL NOT NULL);
INSERT INTO meta VALUES ('schema_version', '1');
INSERT INTO requests VALUES (1, 'e', 'm', 'cot', 'g', 1, 1, 10, 5, 0, 0.25, 'r1', 0.1, 0);
"""


def test_a_version_1_journal_is_migrated_in_place(tmp_path):
    path = tmp_path / "j.sqlite"
    con = sqlite3.connect(path)
    con.executescript(V1)
    con.close()
    with Journal(path) as j:
        assert j.spent("e", "m") == {"requests": 1, "cost_usd": 0.25}
        assert j.snapshots([1]) == [{"model": None, "system_fingerprint": None, "requests": 1}]
        rid = j.record(endpoint="e", model="m", kind="cot", group="g", p_hash="h", params={}, indices=[0],
                       texts=[("t", "stop")], n_asked=1, prompt_tokens=1, completion_tokens=1, usage_estimated=False,
                       cost_usd=0.1, response_id="r2", latency_s=0.1, response_model="m-2024-07-18",
                       system_fingerprint="fp_1")
        assert j.snapshots([1, rid]) == [{"model": "m-2024-07-18", "system_fingerprint": "fp_1", "requests": 1},
                                         {"model": None, "system_fingerprint": None, "requests": 1}]
        assert j.uncertain() == {"requests": 0, "cost_usd": 0}
    with Journal(path) as j:  # opening it again is a no-op
        assert j.db.execute("SELECT value FROM meta").fetchone() == (SCHEMA_VERSION,) == ("2",)
    con = sqlite3.connect(path)
    con.execute("UPDATE meta SET value='3'")
    con.commit()
    con.close()
    with pytest.raises(PipelineError, match="schema version 3, expected 2"):
        Journal(path)


def test_one_new_journal_opened_by_many_at_once_opens_for_all(tmp_path):
    """Switching a new file to WAL answers "database is locked" at once, with no busy wait: the
    journal retries that (two teach stages of parallel workers can share one journal)."""
    import threading

    from pipeline.teacher.journal import Journal

    for i in range(100):
        errors = []

        def open_it(path=tmp_path / f"j{i}.sqlite"):
            try:
                with Journal(path) as j:
                    j.spent("http://e/v1", "m")
            except Exception as e:  # noqa: BLE001 - reported below
                errors.append(e)

        threads = [threading.Thread(target=open_it) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert not errors, (i, errors)
