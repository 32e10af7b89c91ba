"""Planning: which prompts to send, and which of their samples the journal already has.

A ``Group`` is one rendered prompt and the samples wanted of it. Identical prompts share one group,
and each occurrence takes its own range of sample indices (a duplicated question, or two identical
CoTs of one question, get independent samples, as if asked separately), in the examples' order.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from ...core.spec import OpenAITeacher
from ...core.records import Example
from ...tasks import Task
from ..journal import Journal, group_key, prompt_hash
from ..prompts import Template, cot_for_evaluation, example_values, load_template
from .tokens import message_tokens

MAX_N = 128  # the most samples one chat-completions request may ask for


@dataclass
class Group:
    """One prompt and the samples wanted of it."""

    key: str
    kind: str
    messages: list
    p_hash: str
    params: dict
    want: int
    prompt_tokens: int
    have: dict = field(default_factory=dict)  # sample index -> journal Sample

    def missing(self) -> list[int]:
        return [i for i in range(self.want) if i not in self.have]

    def cached(self) -> int:
        return sum(1 for i in self.have if i < self.want)


def slot_of(ex: Example) -> tuple:
    """A unique key of an example (ids are text hashes, so duplicated questions share an id)."""
    return ex.origin, ex.index


class Planner:
    """Prompts and sample slots of the CoTs, then of the self-evaluations of the answered CoTs."""

    def __init__(self, task: Task, teacher: OpenAITeacher, endpoint: str):
        self.task, self.teacher, self.endpoint = task, teacher, endpoint
        self.cot_tmpl = load_template(task.name, "cot")
        self.se_tmpl = load_template(task.name, "self_eval") if teacher.self_evals else None

    def templates(self) -> dict[str, str]:
        """prompt template -> its version (for the metrics)."""
        return {t.label.rsplit("@", 1)[0]: t.version for t in (self.cot_tmpl, self.se_tmpl) if t}

    def params(self, tmpl: Template) -> dict:
        p = {"temperature": self.teacher.temperature, "max_tokens": self.teacher.max_tokens}
        if tmpl.stop:
            p["stop"] = list(tmpl.stop)
        return {**p, **self.teacher.request_params}

    def slot(self, tmpl: Template, values: dict, want: int, groups: dict) -> tuple[Group, int]:
        """-> (group of the rendered prompt, first sample index of this occurrence)"""
        messages = tmpl.messages(values)
        ph = prompt_hash(messages)
        params = self.params(tmpl)
        key = group_key(self.endpoint, self.teacher.model, ph, params)
        g = groups.get(key)
        if g is None:
            g = groups[key] = Group(key, tmpl.kind, messages, ph, params, 0,
                                    message_tokens(messages, self.teacher.model))
        offset = g.want
        g.want += want
        return g, offset

    def cot_slots(self, examples: list[Example]) -> tuple[dict[str, Group], dict[tuple, tuple[Group, int]]]:
        """-> (groups by key, (group, offset) of each example of ``teacher.splits``)"""
        groups: dict[str, Group] = {}
        of: dict[tuple, tuple[Group, int]] = {}
        for ex in examples:
            if ex.split in self.teacher.splits:
                of[slot_of(ex)] = self.slot(self.cot_tmpl, example_values(self.task, ex), self.teacher.cots, groups)
        return groups, of

    def self_eval_slots(self, examples: list[Example], cot_of: dict):
        """-> (groups by key, (group, offset) of each (example, CoT index), CoTs skipped as unparseable).
        Only CoTs already answered are planned."""
        groups: dict[str, Group] = {}
        of: dict[tuple, tuple[Group, int]] = {}
        skipped = 0
        if not self.se_tmpl:
            return groups, of, skipped
        for ex in examples:
            if ex.split not in self.teacher.self_eval_splits or slot_of(ex) not in cot_of:
                continue
            cg, off = cot_of[slot_of(ex)]
            for i in range(self.teacher.cots):
                s = cg.have.get(off + i)
                if s is None:
                    continue
                if not self.task.parse_answer(s.text, ex, mode="strict").ok:
                    skipped += 1
                    continue
                values = {**example_values(self.task, ex), "cot": cot_for_evaluation(self.task, s.text)}
                of[(slot_of(ex), i)] = self.slot(self.se_tmpl, values, self.teacher.self_evals, groups)
        return groups, of, skipped


def load_cached(journal: Optional[Journal], groups: dict[str, Group]) -> None:
    """Fill each group's ``have`` with the samples the journal holds."""
    if journal is None:
        return
    found = journal.samples(groups)
    for key, g in groups.items():
        g.have = found.get(key, {})


def missing_samples(groups) -> int:
    return sum(len(g.missing()) for g in groups)
