"""The lines of the Batch API's files: a request line of a group's samples, an output line recorded in the
journal, and the request and output files of an engine run offline (``teach-batch --export / --import``).

A request line is one chat-completions request (``n`` samples of one prompt) whose ``custom_id`` is the
journal key of those samples: ``<group key>:<first sample>:<count>``. An output line is recorded under
that key, as an online answer would be; one whose ``custom_id`` names no line is quarantined (the journal's
``batch_quarantine``) and counted, never recorded.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Optional

from ...core.spec import OpenAITeacher
from ..journal import Sample
from . import batch_store
from .batch_store import Line, custom_id
from .budget import cost_usd
from .plan import Group
from .response import parse_completion, read_answer
from .sender import answer_tokens

if TYPE_CHECKING:
    from .batch import BatchSender


def runs(missing: list[int], n: int) -> list[list[int]]:
    """Contiguous runs of sample indices, each at most ``n`` long (a line's samples are first..first+n-1)."""
    out: list[list[int]] = []
    for i in missing:
        if out and out[-1][-1] == i - 1 and len(out[-1]) < n:
            out[-1].append(i)
        else:
            out.append([i])
    return out


def request_line(t: OpenAITeacher, g: Group, idx: list[int]) -> tuple[Line, bytes]:
    ln = Line(custom_id(g.key, idx[0], len(idx)), g.key, idx[0], len(idx), g.p_hash, g.params)
    body = {"model": t.model, "messages": g.messages, **g.params}
    if len(idx) > 1 or t.use_n == "always":
        body["n"] = len(idx)
    raw = json.dumps({"custom_id": ln.custom_id, "method": "POST", "url": "/v1/chat/completions", "body": body},
                     ensure_ascii=False)
    return ln, raw.encode("utf-8") + b"\n"


def record_line(sender: "BatchSender", bid: str, raw: str, known: dict[str, Line], recorded: set[str], kind: str,
                by_key: dict[str, Group]) -> Optional[bool]:
    """One output line into the journal: True recorded (now or before), False failed, None quarantined.
    ``known``: the batch's lines not recorded yet; ``recorded``: those that are."""
    t, journal = sender.teacher, sender.journal
    try:
        obj = json.loads(raw)
        cid = obj.get("custom_id") if isinstance(obj, dict) else None
    except ValueError:
        obj, cid = None, None
    if cid in recorded:
        return True  # recorded by an earlier (killed) run
    line = known.get(cid) if isinstance(cid, str) else None
    if line is None:
        batch_store.quarantine(journal, bid, cid if isinstance(cid, str) else None,
                               "unknown custom_id" if isinstance(obj, dict) else "not JSON", raw)
        sender.batch["quarantined_lines"] += 1
        return None
    resp = obj.get("response") or {}
    if obj.get("error") or resp.get("status_code") != 200:
        sender.line_failed(raw, line)
        return False
    try:
        answer = read_answer(parse_completion(json.dumps(resp.get("body")).encode("utf-8")), line.n)
    except ValueError as e:
        sender.line_failed(raw, line, str(e))
        return False
    texts = answer.texts
    if not texts:
        sender.line_failed(raw, line, "no choices")
        return False
    g = by_key.get(line.group_key)
    ours = g.prompt_tokens if g is not None else 0
    pt, ct, estimated = answer_tokens(answer, ours, t.model)
    cost = cost_usd(t, pt, ct)
    got = list(range(line.first, line.first + len(texts)))
    rid = journal.record(endpoint=sender.endpoint, model=t.model, kind=kind, group=line.group_key,
                         p_hash=line.prompt_hash, params=line.params, indices=got, texts=texts, n_asked=line.n,
                         prompt_tokens=pt, completion_tokens=ct, usage_estimated=estimated, cost_usd=cost,
                         response_id=answer.response_id, latency_s=0.0, response_model=answer.model,
                         system_fingerprint=answer.system_fingerprint,
                         batch_line=None if bid.startswith("import:") else (bid, line.custom_id))
    if rid is None:
        return True  # another run recorded it meanwhile
    if g is not None:
        for i, (text, fin) in zip(got, texts):
            g.have.setdefault(i, Sample(text, fin, rid))  # answered online meanwhile: that text stays
    sender.tally(len(texts), pt, ct, cost, estimated, ours)
    if len(texts) < line.n and t.use_n == "auto":
        sender._set_n_supported(False)
    elif line.n > 1:
        sender._set_n_supported(True)
    return True


# ----------------------------------------------------------------------------------------------- offline
def export_requests(teacher: OpenAITeacher, groups: list[Group], path: Path, n: int) -> int:
    """The request file of the groups' missing samples (the Batch API's input format) -> lines written."""
    lines = [request_line(teacher, g, idx)[1] for g in groups for idx in runs(g.missing(), n)]
    path.write_bytes(b"".join(lines))
    return len(lines)


def import_output(sender: "BatchSender", groups: list[Group], lines: Iterable[str], source: str) -> dict[str, int]:
    """An output file of that format into the journal: lines whose ``custom_id`` names missing samples of
    the groups are recorded, the others quarantined (and counted). Costs are at the teacher's prices
    (``batch_price_factor`` of them in batch mode)."""
    batch_store.ensure(sender.journal)
    by_key = {g.key: g for g in groups}
    counts = {"recorded": 0, "failed": 0, "quarantined": 0}
    for raw in lines:
        if not raw.strip():
            continue
        known: dict[str, Line] = {}
        done: set[str] = set()
        try:
            cid = json.loads(raw).get("custom_id")
            gk, first, n = cid.rsplit(":", 2)
            g = by_key[gk]
            idx = range(int(first), int(first) + int(n))
            if idx.start >= 0 and idx.stop <= g.want:
                if all(i in g.have for i in idx):
                    done.add(cid)  # imported before: not recorded (nor paid) twice
                else:
                    known[cid] = Line(cid, gk, int(first), int(n), g.p_hash, g.params)
        except (ValueError, AttributeError, KeyError, TypeError):
            pass
        got = record_line(sender, f"import:{source}", raw, known, done, groups[0].kind if groups else "cot", by_key)
        counts["recorded" if got else "failed" if got is False else "quarantined"] += 1
    return counts
