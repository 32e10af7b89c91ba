"""The replay backend: teacher records from recorded outputs.

Formats: ``dss_palm`` (JSON arrays aligned row by row with the split), ``mcckd`` (10 gpt-3.5 CoTs
per question, matched by question text), ``tree_dump`` (Mind's Mirror Tree-of-Thoughts dump: CoTs
and their self-evaluations, matched by question text) and ``records`` (this project's own teacher
records, matched by id). A question the dataset repeats (rows of their own, with ids of their own)
gets outputs on every copy: its own row's for DSS files; for the text-matched formats, the k-th
recorded row of that text when the file repeats it as often as the dataset, else all of them.
"""
from __future__ import annotations

import json
from pathlib import Path

from ..core.artifacts import read_json, read_records
from ..core.errors import PipelineError
from ..core.paths import resolve_data_path
from ..core.records import Example, TeacherRecord
from ..core.spec import ReplayFiles, ReplayTeacher
from ..tasks import Task
from .common import empty_record, make_cot


def _tree_question(x: str) -> str:
    """The dump's ``x`` is a fragment like ``"input":"<question>"\\n``."""
    s = x.strip()
    if s.startswith('"input":'):
        try:
            return json.loads("{" + s + "}")["input"]
        except json.JSONDecodeError:
            s = s[len('"input":'):].strip().strip('"')
    return s


def replay(task: Task, teacher: ReplayTeacher, examples: dict[str, list[Example]],
           source_rows: dict[str, int]) -> tuple[dict, dict]:
    """Teacher records for ``examples`` (grouped by their *source* split, ``origin``).

    -> (records by origin split, aligned with ``examples``; unmatched source rows by origin split).
    ``source_rows`` is the length of each source split, which DSS files must match."""
    records = {split: [empty_record(ex) for ex in exs] for split, exs in examples.items()}
    unmatched = {split: 0 for split in examples}
    for src in teacher.sources:
        for split, files in src.files.items():
            if split not in source_rows:
                raise PipelineError(f"teacher files given for split {split!r}, which the dataset's source does not have")
            exs = examples.get(split, [])
            n = _apply(task, src, split, [resolve_data_path(f) for f in files], exs, records.get(split, []),
                       source_rows[split])
            unmatched[split] = unmatched.get(split, 0) + n
    return records, unmatched


def _apply(task: Task, src: ReplayFiles, split: str, paths: list[Path], exs: list[Example], recs: list[dict],
           n_source: int) -> int:
    label = ",".join(p.name for p in paths)
    if src.format == "dss_palm":
        texts: list = []
        for p in paths:
            arr = read_json(p)
            if not isinstance(arr, list) or not all(isinstance(t, str) for t in arr):
                raise PipelineError(f"{p}: expected a JSON array of strings (DSS teacher outputs)")
            texts += arr
        if len(texts) != n_source:
            raise PipelineError(
                f"{label}: {len(texts)} teacher outputs for {n_source} {split} examples; "
                "DSS files are aligned by row and must match the split's length")
        for ex, rec in zip(exs, recs):
            rec["cots"].append(make_cot(task, texts[ex.index], ex, f"{label}#{ex.index}", src.parse))
        return 0

    by_key: dict[str, list[int]] = {}  # question -> its rows, in order (a repeated question has several)
    for i, ex in enumerate(exs):
        by_key.setdefault(task.match_key(ex), []).append(i)
    by_id = {ex.id: i for i, ex in enumerate(exs)}
    found: dict[str, list[tuple[str, list, list | None]]] = {}  # question -> its file rows: (where, CoTs, evaluations)
    unmatched = 0
    for p in paths:
        if src.format == "records":
            for r in read_records(p, TeacherRecord):
                i = by_id.get(r.id)
                if i is None:
                    unmatched += 1
                    continue
                for c in r.cots:  # re-parsed: the recorded text and evaluations, not their old parse
                    recs[i]["cots"].append(make_cot(task, c.text, exs[i], c.source or p.name, src.parse,
                                                    [e.text for e in c.evaluations]))
            continue
        data = read_json(p)
        if not isinstance(data, list):
            raise PipelineError(f"{p}: expected a JSON list")
        for n, row in enumerate(data):
            try:
                if src.format == "mcckd":
                    question, cots, evals = row["instruction"], row["output"], None
                    if isinstance(cots, str):
                        cots = [cots] if cots else []
                else:  # tree_dump
                    step = row["steps"][0]
                    question, cots = _tree_question(step["x"]), step["new_ys"]
                    evals = step.get("value_outputs_list") or [[] for _ in cots]
                    if len(evals) != len(cots):
                        raise ValueError(f"{len(cots)} CoTs but {len(evals)} evaluation lists")
            except (KeyError, IndexError, TypeError, ValueError) as e:
                raise PipelineError(f"{p}: row {n}: not a {src.format} row ({type(e).__name__}: {e})") from None
            key = task.recorded_key(question)
            if key not in by_key:
                unmatched += 1
                continue
            found.setdefault(key, []).append((f"{p.name}#{n}", cots, evals))
    for key, outputs in found.items():
        rows = by_key[key]
        # a question the files repeat as often as the dataset: the k-th file row goes to the k-th copy;
        # otherwise every copy gets the outputs of every file row of its question
        given = zip(rows, ([o] for o in outputs)) if len(outputs) == len(rows) else ((i, outputs) for i in rows)
        for i, outs in given:
            for where, cots, evals in outs:
                for j, text in enumerate(cots):
                    recs[i]["cots"].append(make_cot(task, text, exs[i], f"{where}.{j}", src.parse,
                                                    evals[j] if evals else None))
    return unmatched
