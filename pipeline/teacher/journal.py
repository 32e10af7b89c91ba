"""The live teacher's response journal: a SQLite cache of every sample the endpoint returned.

One transaction per response (WAL mode), so a crash or a SIGKILL loses at most the requests in
flight, and a rerun sends only what is missing. A sample is keyed by the endpoint base URL, the model,
the hash of the prompt messages, the sampling parameters and the sample index (``group_key`` hashes
all but the index); token usage and latency are kept per request. The API key is never stored.

The journal is a persistent cache, not a DVC output (DVC deletes outputs before a stage runs).
"""
from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional

from ..core.errors import PipelineError
from ..core.paths import project_root

SCHEMA_VERSION = "1"
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
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.db = sqlite3.connect(str(self.path), timeout=60, isolation_level=None)
            self.db.execute("PRAGMA journal_mode=WAL")
            # NORMAL in WAL mode: a committed response survives a killed process (SIGKILL);
            # only an OS crash or power loss can drop the last commits, which are then re-sent.
            self.db.execute("PRAGMA synchronous=NORMAL")
            self.db.execute("PRAGMA busy_timeout=60000")
            self.db.executescript(_DDL)
            row = self.db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
            if row is None:
                self.db.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (SCHEMA_VERSION,))
            elif row[0] != SCHEMA_VERSION:
                raise PipelineError(f"{self.path}: teacher journal schema version {row[0]}, expected {SCHEMA_VERSION}")
        except sqlite3.DatabaseError as e:
            raise PipelineError(f"{self.path}: cannot open the teacher journal ({e})") from None

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
        ids = sorted(set(request_ids))
        tot = {"requests": 0, "prompt_tokens": 0, "completion_tokens": 0, "cost_usd": 0.0}
        for i in range(0, len(ids), _CHUNK):
            chunk = ids[i:i + _CHUNK]
            r = self.db.execute("SELECT COUNT(*), COALESCE(SUM(prompt_tokens),0), COALESCE(SUM(completion_tokens),0), "
                                f"COALESCE(SUM(cost_usd),0) FROM requests WHERE id IN ({','.join('?' * len(chunk))})",
                                chunk).fetchone()
            for k, v in zip(tot, r):
                tot[k] += v
        return tot

    def spent(self, endpoint: str, model: str) -> dict:
        """Requests and cost of every request ever recorded for the endpoint and model (budget_usd caps it)."""
        r = self.db.execute("SELECT COUNT(*), COALESCE(SUM(cost_usd),0) FROM requests WHERE endpoint=? AND model=?",
                            (endpoint, model)).fetchone()
        return {"requests": r[0], "cost_usd": r[1]}

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

    def record(self, *, endpoint: str, model: str, kind: str, group: str, p_hash: str, params: dict,
               indices: list[int], texts: list[tuple[str, Optional[str]]], n_asked: int,
               prompt_tokens: int, completion_tokens: int, usage_estimated: bool, cost_usd: float,
               response_id: Optional[str], latency_s: float) -> int:
        """Store one response (its samples at the given indices) in one committed transaction."""
        params_json = _canon(params)
        cur = self.db.cursor()
        cur.execute("BEGIN IMMEDIATE")
        try:
            cur.execute("INSERT INTO requests (endpoint, model, kind, group_key, n_asked, n_returned, prompt_tokens, "
                        "completion_tokens, usage_estimated, cost_usd, response_id, latency_s, created_at) "
                        "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                        (endpoint, model, kind, group, n_asked, len(texts), prompt_tokens, completion_tokens,
                         int(usage_estimated), cost_usd, response_id, latency_s, time.time()))
            rid = cur.lastrowid
            cur.executemany("INSERT OR IGNORE INTO samples VALUES (?,?,?,?,?,?,?,?,?,?)",
                            [(group, idx, endpoint, model, p_hash, params_json, kind, text, fin, rid)
                             for idx, (text, fin) in zip(indices, texts)])
            cur.execute("COMMIT")
        except BaseException:
            cur.execute("ROLLBACK")
            raise
        return rid
