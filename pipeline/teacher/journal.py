"""The live teacher's response journal: a SQLite cache of every sample the endpoint returned.

One transaction per response (WAL mode), so a crash or a SIGKILL loses at most the requests in
flight, and a rerun sends only what is missing. A sample is keyed by the endpoint base URL, the model,
the hash of the prompt messages, the sampling parameters and the sample index (``group_key`` hashes
all but the index); token usage, latency, and the model snapshot and ``system_fingerprint`` the
endpoint answered with are kept per request. The API key is never stored.

Spend that may have been billed but is not known: a ``pending`` row is committed before a request is
sent, with the request's worst-case cost and the number of its HTTP attempts that may have been
billed. It is removed in the transaction that records the answer, or when every attempt got a
definite HTTP error answer (not billed). An attempt the client abandoned (a timeout while the server
may still answer) keeps it, as does a request in flight when the process dies: ``uncertain`` is what
budget_usd counts for them, until someone who knows better clears them (``clear_uncertain``).

Schema version 2 (pending, response_model, system_fingerprint); a version-1 journal is migrated
in place when opened (its earlier requests have no snapshot recorded).

The journal is a persistent cache, not a DVC output (DVC deletes outputs before a stage runs).
"""
from __future__ import annotations

import hashlib
import json
import random
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional

from ..core.errors import PipelineError
from ..core.paths import project_root

SCHEMA_VERSION = "2"
OPEN_TIMEOUT_S = 60.0  # how long opening waits for another process that is creating the same journal
_MIGRATABLE = {"1"}
_CHUNK = 500

_DDL = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS requests (
    id INTEGER PRIMARY KEY,
    endpoint TEXT NOT NULL,
    model TEXT NOT NULL,
    kind TEXT NOT NULL,
    group_key TEXT NOT NULL,
    n_asked INTEGER NOT NULL,
    n_returned INTEGER NOT NULL,
    prompt_tokens INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL,
    usage_estimated INTEGER NOT NULL DEFAULT 0,
    cost_usd REAL NOT NULL,
    response_id TEXT,
    latency_s REAL,
    created_at REAL NOT NULL,
    response_model TEXT,
    system_fingerprint TEXT
);
CREATE TABLE IF NOT EXISTS pending (
    id INTEGER PRIMARY KEY,
    endpoint TEXT NOT NULL,
    model TEXT NOT NULL,
    kind TEXT NOT NULL,
    group_key TEXT NOT NULL,
    n_asked INTEGER NOT NULL,
    worst_usd REAL NOT NULL,
    attempts INTEGER NOT NULL,
    state TEXT NOT NULL,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS samples (
    group_key TEXT NOT NULL,
    sample INTEGER NOT NULL,
    endpoint TEXT NOT NULL,
    model TEXT NOT NULL,
    prompt_hash TEXT NOT NULL,
    params TEXT NOT NULL,
    kind TEXT NOT NULL,
    text TEXT NOT NULL,
    finish_reason TEXT,
    request_id INTEGER NOT NULL REFERENCES requests(id),
    PRIMARY KEY (group_key, sample)
);
CREATE TABLE IF NOT EXISTS capabilities (
    endpoint TEXT NOT NULL,
    model TEXT NOT NULL,
    n_supported INTEGER NOT NULL,
    PRIMARY KEY (endpoint, model)
);
"""


_NO_USAGE = {"requests": 0, "prompt_tokens": 0, "completion_tokens": 0, "cost_usd": 0.0}


def sum_usage(by_kind: dict[str, dict]) -> dict:
    """The totals of ``Journal.usage_by_kind``: what ``Journal.usage`` returns."""
    return {k: sum((u[k] for u in by_kind.values()), v) for k, v in _NO_USAGE.items()}


def _canon(obj) -> str:
    return json.dumps(obj, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def prompt_hash(messages: list[dict]) -> str:
    return hashlib.sha256(_canon(messages).encode("utf-8")).hexdigest()


def group_key(endpoint: str, model: str, p_hash: str, params: dict) -> str:
    """Identity of a prompt's samples: everything that changes what the endpoint would return."""
    return hashlib.sha256(_canon([endpoint, model, p_hash, params]).encode("utf-8")).hexdigest()


def journal_path(setting: str) -> Path:
    """The journal file of ``teacher.journal``: relative paths are from the project root."""
    p = Path(setting).expanduser()
    return p if p.is_absolute() else project_root() / p


@dataclass(frozen=True)
class Sample:
    text: str
    finish_reason: Optional[str]
    request_id: int


class Journal:
    def __init__(self, path: Path):
        self.path = Path(path)
        deadline = time.monotonic() + OPEN_TIMEOUT_S
        while True:  # two processes (or threads) opening one new journal at once: one waits for the other
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self.db = sqlite3.connect(str(self.path), timeout=60, isolation_level=None)
                try:
                    self._configure()
                    self._open_schema()
                except BaseException:
                    self.db.close()
                    raise
                return
            except sqlite3.OperationalError as e:
                # switching a new file to WAL takes an exclusive lock, and SQLite answers "locked" at once
                # instead of waiting (no busy handler there): retry that, briefly, and nothing else
                if "locked" not in str(e) or time.monotonic() > deadline:
                    raise PipelineError(f"{self.path}: cannot open the teacher journal ({e})") from None
                time.sleep(0.02 + 0.05 * random.random())
            except sqlite3.DatabaseError as e:
                raise PipelineError(f"{self.path}: cannot open the teacher journal ({e})") from None

    def _configure(self) -> None:
        if self.db.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
            self.db.execute("PRAGMA journal_mode=WAL")
        # NORMAL in WAL mode: a committed response survives a killed process (SIGKILL);
        # only an OS crash or power loss can drop the last commits, which are then re-sent.
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute("PRAGMA busy_timeout=60000")

    def _open_schema(self) -> None:
        """Create the tables, or check the version and migrate an older journal, in one transaction."""
        cur = self.db.cursor()
        cur.execute("BEGIN IMMEDIATE")
        try:
            row = cur.execute("SELECT name FROM sqlite_master WHERE type='table' AND name='meta'").fetchone()
            version = row and cur.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
            if version and version[0] != SCHEMA_VERSION and version[0] not in _MIGRATABLE:
                raise PipelineError(f"{self.path}: teacher journal schema version {version[0]}, expected "
                                    f"{SCHEMA_VERSION} (written by a newer version of this code?)")
            if version and version[0] != SCHEMA_VERSION:  # 1 -> 2: the snapshot columns, and pending
                have = {r[1] for r in cur.execute("PRAGMA table_info(requests)")}
                for col in ("response_model", "system_fingerprint"):
                    if col not in have:
                        cur.execute(f"ALTER TABLE requests ADD COLUMN {col} TEXT")
            for stmt in filter(str.strip, _DDL.split(";")):
                cur.execute(stmt)
            cur.execute("INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)", (SCHEMA_VERSION,))
            cur.execute("COMMIT")
        except BaseException:
            cur.execute("ROLLBACK")
            raise

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> "Journal":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------ reads
    def samples(self, keys: Iterable[str]) -> dict[str, dict[int, Sample]]:
        """group_key -> {sample index: Sample} for the keys that have any."""
        keys = list(dict.fromkeys(keys))
        out: dict[str, dict[int, Sample]] = {}
        for i in range(0, len(keys), _CHUNK):
            chunk = keys[i:i + _CHUNK]
            q = ("SELECT group_key, sample, text, finish_reason, request_id FROM samples "
                 f"WHERE group_key IN ({','.join('?' * len(chunk))})")
            for gk, idx, text, fin, rid in self.db.execute(q, chunk):
                out.setdefault(gk, {})[idx] = Sample(text, fin, rid)
        return out

    def usage(self, request_ids: Iterable[int]) -> dict:
        """Requests, tokens and cost of the given journal requests."""
        return sum_usage(self.usage_by_kind(request_ids))

    def usage_by_kind(self, request_ids: Iterable[int]) -> dict[str, dict]:
        """``usage`` per kind of request (cot, self_eval)."""
        ids = sorted(set(request_ids))
        out: dict[str, dict] = {}
        for i in range(0, len(ids), _CHUNK):
            chunk = ids[i:i + _CHUNK]
            q = ("SELECT kind, COUNT(*), COALESCE(SUM(prompt_tokens),0), COALESCE(SUM(completion_tokens),0), "
                 f"COALESCE(SUM(cost_usd),0) FROM requests WHERE id IN ({','.join('?' * len(chunk))}) GROUP BY kind")
            for kind, *row in self.db.execute(q, chunk):
                tot = out.setdefault(kind, dict(_NO_USAGE))
                for k, v in zip(tot, row):
                    tot[k] += v
        return out

    def spent(self, endpoint: str, model: str) -> dict:
        """Requests and cost of every request ever recorded for the endpoint and model (budget_usd caps it)."""
        r = self.db.execute("SELECT COUNT(*), COALESCE(SUM(cost_usd),0) FROM requests WHERE endpoint=? AND model=?",
                            (endpoint, model)).fetchone()
        return {"requests": r[0], "cost_usd": r[1]}

    def uncertain(self, endpoint: Optional[str] = None, model: Optional[str] = None) -> dict:
        """Pending requests (of the endpoint and model, or all): HTTP attempts that may have been
        billed, and their worst-case cost."""
        where, args = ("WHERE endpoint=? AND model=?", (endpoint, model)) if endpoint is not None else ("", ())
        r = self.db.execute(f"SELECT COALESCE(SUM(attempts),0), COALESCE(SUM(worst_usd * attempts),0) FROM pending "
                            f"{where}", args).fetchone()
        return {"requests": r[0], "cost_usd": r[1]}

    def snapshots(self, request_ids: Iterable[int]) -> list[dict]:
        """Which model snapshot and system_fingerprint answered the given journal requests, and how
        many each (None: not reported, or recorded before the journal kept it), most requests first (then
named before unknown, by name)."""
        ids = sorted(set(request_ids))
        counts: dict[tuple, int] = {}
        for i in range(0, len(ids), _CHUNK):
            chunk = ids[i:i + _CHUNK]
            q = ("SELECT response_model, system_fingerprint, COUNT(*) FROM requests "
                 f"WHERE id IN ({','.join('?' * len(chunk))}) GROUP BY response_model, system_fingerprint")
            for m, fp, n in self.db.execute(q, chunk):
                counts[(m, fp)] = counts.get((m, fp), 0) + n
        def order(kv):  # most requests first, then named before unknown, by name
            return (-kv[1], *((v is None, v or "") for v in kv[0]))

        return [{"model": m, "system_fingerprint": fp, "requests": n}
                for (m, fp), n in sorted(counts.items(), key=order)]

    def mean_completion_tokens(self, endpoint: str, model: str, kind: str) -> Optional[float]:
        """Mean completion tokens per returned sample of earlier requests (for estimates)."""
        r = self.db.execute("SELECT SUM(completion_tokens), SUM(n_returned) FROM requests "
                            "WHERE endpoint=? AND model=? AND kind=? AND usage_estimated=0",
                            (endpoint, model, kind)).fetchone()
        return r[0] / r[1] if r and r[1] else None

    def n_supported(self, endpoint: str, model: str) -> Optional[bool]:
        r = self.db.execute("SELECT n_supported FROM capabilities WHERE endpoint=? AND model=?",
                            (endpoint, model)).fetchone()
        return None if r is None else bool(r[0])

    # ------------------------------------------------------------------ writes
    def set_n_supported(self, endpoint: str, model: str, value: bool) -> None:
        self.db.execute("INSERT OR REPLACE INTO capabilities VALUES (?, ?, ?)", (endpoint, model, int(value)))

    def begin_pending(self, *, endpoint: str, model: str, kind: str, group: str, n_asked: int,
                      worst_usd: float) -> int:
        """A request about to be sent (one attempt that may be billed), committed before it goes."""
        cur = self.db.execute("INSERT INTO pending (endpoint, model, kind, group_key, n_asked, worst_usd, attempts, "
                              "state, created_at) VALUES (?,?,?,?,?,?,1,'in_flight',?)",
                              (endpoint, model, kind, group, n_asked, worst_usd, time.time()))
        return cur.lastrowid

    def pending_attempts(self, pending_id: int, attempts: int) -> None:
        """How many HTTP attempts of a request in flight may have been billed so far (a retry went out)."""
        self.db.execute("UPDATE pending SET attempts=? WHERE id=?", (attempts, pending_id))

    def settle_pending(self, pending_id: int, uncertain: int, cur=None) -> None:
        """A request is over: its row goes when none of its attempts may have been billed unseen;
        else it stays, ``abandoned``, counting those attempts."""
        run = (cur or self.db).execute
        if uncertain > 0:
            run("UPDATE pending SET attempts=?, state='abandoned' WHERE id=?", (uncertain, pending_id))
        else:
            run("DELETE FROM pending WHERE id=?", (pending_id,))

    def clear_uncertain(self, endpoint: str, model: str) -> int:
        """Forget the pending requests of an endpoint and model (known to be unbilled); -> rows removed."""
        return self.db.execute("DELETE FROM pending WHERE endpoint=? AND model=?", (endpoint, model)).rowcount

    def record(self, *, endpoint: str, model: str, kind: str, group: str, p_hash: str, params: dict,
               indices: list[int], texts: list[tuple[str, Optional[str]]], n_asked: int,
               prompt_tokens: int, completion_tokens: int, usage_estimated: bool, cost_usd: float,
               response_id: Optional[str], latency_s: float, response_model: Optional[str] = None,
               system_fingerprint: Optional[str] = None, pending: Optional[tuple[int, int]] = None,
               batch_line: Optional[tuple[str, str]] = None) -> Optional[int]:
        """Store one response (its samples at the given indices) in one committed transaction; with
        ``pending`` (its row, attempts of it that may have been billed besides this answer), settle
        its pending row in the same transaction. With ``batch_line`` (batch id, custom_id: a line of a
        Batch API output, ``openai/batch_store.py``), mark that line recorded in the same transaction,
        or record nothing and return None when it already is (a resumed or concurrent run)."""
        params_json = _canon(params)
        cur = self.db.cursor()
        cur.execute("BEGIN IMMEDIATE")
        try:
            if batch_line is not None and cur.execute(
                    "UPDATE batch_lines SET recorded=1 WHERE batch_id=? AND custom_id=? AND recorded=0",
                    batch_line).rowcount == 0:
                cur.execute("ROLLBACK")
                return None
            cur.execute("INSERT INTO requests (endpoint, model, kind, group_key, n_asked, n_returned, prompt_tokens, "
                        "completion_tokens, usage_estimated, cost_usd, response_id, latency_s, created_at, "
                        "response_model, system_fingerprint) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                        (endpoint, model, kind, group, n_asked, len(texts), prompt_tokens, completion_tokens,
                         int(usage_estimated), cost_usd, response_id, latency_s, time.time(), response_model,
                         system_fingerprint))
            rid = cur.lastrowid
            cur.executemany("INSERT OR IGNORE INTO samples VALUES (?,?,?,?,?,?,?,?,?,?)",
                            [(group, idx, endpoint, model, p_hash, params_json, kind, text, fin, rid)
                             for idx, (text, fin) in zip(indices, texts)])
            if pending is not None:
                self.settle_pending(*pending, cur=cur)
            cur.execute("COMMIT")
        except BaseException:
            cur.execute("ROLLBACK")
            raise
        return rid
