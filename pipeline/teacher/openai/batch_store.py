"""The Batch API's rows in the teacher journal (``../journal.py``), in tables of their own.

- ``batches``: every batch submitted (the endpoint's id), its scope (dataset and kind of request), its
  last status and whether its results are recorded (``closed``). A run that finds an open batch of
  its scope follows that batch instead of submitting its requests again, so a SIGKILL while polling
  costs nothing twice. The row is written *before* the batch is created, as ``local:<nonce>`` with
  status ``submitting`` (the nonce goes in the batch's metadata), and renamed to the endpoint's id
  when the endpoint answers: a kill in between is resolved on resume by finding the nonce in the
  endpoint's batch list (adopted) or not (never created: the row goes).
- ``batch_lines``: what each line of a batch asks for: its ``custom_id``, the journal group and the
  sample indices it answers, and the prompt hash and parameters its samples are recorded under.
- ``batch_quarantine``: output lines that match no line of their batch (an unknown ``custom_id``, not
  JSON): kept and counted, never recorded as samples.

A submitted batch also has a ``pending`` row with its worst-case cost, so ``budget_usd`` counts it (in
this run and any later one) until its results are recorded and the row goes.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..journal import Journal

_DDL = """
CREATE TABLE IF NOT EXISTS batches (
    id TEXT PRIMARY KEY,
    endpoint TEXT NOT NULL,
    model TEXT NOT NULL,
    scope TEXT NOT NULL,
    kind TEXT NOT NULL,
    input_file_id TEXT NOT NULL,
    requests INTEGER NOT NULL,
    pending_id INTEGER,
    worst_usd REAL NOT NULL,
    status TEXT NOT NULL,
    closed INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS batch_lines (
    batch_id TEXT NOT NULL,
    custom_id TEXT NOT NULL,
    group_key TEXT NOT NULL,
    first INTEGER NOT NULL,
    n INTEGER NOT NULL,
    prompt_hash TEXT NOT NULL,
    params TEXT NOT NULL,
    recorded INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (batch_id, custom_id)
);
CREATE TABLE IF NOT EXISTS batch_quarantine (
    batch_id TEXT NOT NULL,
    custom_id TEXT,
    reason TEXT NOT NULL,
    line TEXT NOT NULL,
    created_at REAL NOT NULL
);
"""


@dataclass(frozen=True)
class Line:
    """One request of a batch file: ``n`` samples of a journal group, from sample index ``first``."""

    custom_id: str
    group_key: str
    first: int
    n: int
    prompt_hash: str
    params: dict


def custom_id(group_key: str, first: int, n: int) -> str:
    """The ``custom_id`` of a line: the journal key of the samples it answers (group, first index, count)."""
    return f"{group_key}:{first}:{n}"


def ensure(journal: "Journal") -> None:
    for stmt in filter(str.strip, _DDL.split(";")):
        journal.db.execute(stmt)


def add_batch(journal: "Journal", *, batch_id: str, endpoint: str, model: str, scope: str, kind: str,
              input_file_id: str, lines: list[Line], worst_usd: float, status: str) -> None:
    """A batch the endpoint accepted, its lines and its pending worst case, in one transaction."""
    cur = journal.db.cursor()
    cur.execute("BEGIN IMMEDIATE")
    try:
        cur.execute("INSERT INTO pending (endpoint, model, kind, group_key, n_asked, worst_usd, attempts, state, "
                    "created_at) VALUES (?,?,?,?,?,?,1,'batch',?)",
                    (endpoint, model, kind, batch_id, sum(ln.n for ln in lines), worst_usd, time.time()))
        pending_id = cur.lastrowid
        cur.execute("INSERT INTO batches VALUES (?,?,?,?,?,?,?,?,?,?,0,?)",
                    (batch_id, endpoint, model, scope, kind, input_file_id, len(lines), pending_id, worst_usd, status,
                     time.time()))
        cur.executemany("INSERT INTO batch_lines VALUES (?,?,?,?,?,?,?,0)",
                        [(batch_id, ln.custom_id, ln.group_key, ln.first, ln.n, ln.prompt_hash,
                          json.dumps(ln.params, sort_keys=True)) for ln in lines])
        cur.execute("COMMIT")
    except BaseException:
        cur.execute("ROLLBACK")
        raise


def open_batches(journal: "Journal", endpoint: str, model: str, scope: str) -> list[tuple[str, float, str]]:
    """(id, worst case, status) of the batches of a scope whose results are not recorded yet, oldest first."""
    return [(r[0], r[1], r[2]) for r in journal.db.execute(
        "SELECT id, worst_usd, status FROM batches WHERE endpoint=? AND model=? AND scope=? AND closed=0 "
        "ORDER BY created_at", (endpoint, model, scope))]


def adopt(journal: "Journal", local_id: str, batch_id: str, status: str) -> None:
    """The endpoint created the batch written as ``local_id``: its rows take the endpoint's id."""
    cur = journal.db.cursor()
    cur.execute("BEGIN IMMEDIATE")
    try:
        cur.execute("UPDATE batches SET id=?, status=? WHERE id=?", (batch_id, status, local_id))
        cur.execute("UPDATE batch_lines SET batch_id=? WHERE batch_id=?", (batch_id, local_id))
        cur.execute("UPDATE pending SET group_key=? WHERE group_key=? AND state='batch'", (batch_id, local_id))
        cur.execute("COMMIT")
    except BaseException:
        cur.execute("ROLLBACK")
        raise


def forget(journal: "Journal", local_id: str) -> None:
    """A batch written as ``local_id`` that the endpoint never created: its rows and pending worst case go."""
    cur = journal.db.cursor()
    cur.execute("BEGIN IMMEDIATE")
    try:
        cur.execute("DELETE FROM pending WHERE id=(SELECT pending_id FROM batches WHERE id=?)", (local_id,))
        cur.execute("DELETE FROM batch_lines WHERE batch_id=?", (local_id,))
        cur.execute("DELETE FROM batches WHERE id=?", (local_id,))
        cur.execute("COMMIT")
    except BaseException:
        cur.execute("ROLLBACK")
        raise


def lines_of(journal: "Journal", batch_id: str) -> dict[str, Line]:
    """The lines of a batch not recorded yet (a recorded one is never recorded again)."""
    return {cid: Line(cid, gk, first, n, ph, json.loads(params)) for cid, gk, first, n, ph, params in journal.db.execute(
        "SELECT custom_id, group_key, first, n, prompt_hash, params FROM batch_lines WHERE batch_id=? AND recorded=0",
        (batch_id,))}


def known_ids(journal: "Journal", batch_id: str) -> set[str]:
    return {r[0] for r in journal.db.execute("SELECT custom_id FROM batch_lines WHERE batch_id=?", (batch_id,))}


def set_status(journal: "Journal", batch_id: str, status: str) -> None:
    journal.db.execute("UPDATE batches SET status=? WHERE id=?", (status, batch_id))


def close(journal: "Journal", batch_id: str, status: str) -> None:
    """Its results are recorded: the batch is closed and its pending worst case goes."""
    cur = journal.db.cursor()
    cur.execute("BEGIN IMMEDIATE")
    try:
        cur.execute("DELETE FROM pending WHERE id=(SELECT pending_id FROM batches WHERE id=?)", (batch_id,))
        cur.execute("UPDATE batches SET status=?, closed=1 WHERE id=?", (status, batch_id))
        cur.execute("COMMIT")
    except BaseException:
        cur.execute("ROLLBACK")
        raise


def quarantine(journal: "Journal", batch_id: str, custom_id: str | None, reason: str, line: str) -> None:
    journal.db.execute("INSERT INTO batch_quarantine VALUES (?,?,?,?,?)", (batch_id, custom_id, reason, line, time.time()))
