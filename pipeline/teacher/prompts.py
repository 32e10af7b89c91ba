"""Prompt templates of the live teacher: ``prompts/<task>/{cot,self_eval}.txt`` (see prompts/README.md).

A template is a ``#`` header (``# version: N`` required, ``# stop: [...]`` optional) and a body sent as
one user message, with ``{name}`` placeholders filled from the example. Unknown placeholders,
malformed headers and a prompt that does not show the example (``REQUIRED``; and, for a
self-evaluation, the CoT) are errors that name the file.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Optional

from ..core.errors import PipelineError
from ..core.records import Example
from ..tasks import Task
from ..tasks.base import cut_run_on

PROMPT_DIR = Path(__file__).resolve().parents[2] / "prompts"
KINDS = ("cot", "self_eval")
EXAMPLE_FIELDS = frozenset({"question", "choices", "premise", "hypothesis", "input"})
FIELDS = {"cot": EXAMPLE_FIELDS, "self_eval": EXAMPLE_FIELDS | {"cot"}}
# What a prompt must show of the example, per task: each part, by any one of its placeholders
# ({input} is the task's whole model input). Without it, every question would get the same prompt.
REQUIRED = {
    "svamp": {"the question": ("question", "input")},
    "cqa": {"the question": ("question", "input"), "the answer choices": ("choices", "input")},
    "anli": {"the premise": ("premise", "input"), "the hypothesis": ("hypothesis", "question", "input")},
}
_PLACEHOLDER = re.compile(r"\{\{|\}\}|\{([A-Za-z_]+)\}")


@dataclass(frozen=True)
class Template:
    path: Path
    kind: str
    version: str
    body: str
    stop: tuple[str, ...]
    fields: frozenset

    def render(self, values: dict) -> str:
        def sub(m: re.Match) -> str:
            tok = m.group(0)
            if tok == "{{":
                return "{"
            if tok == "}}":
                return "}"
            v = values.get(m.group(1))
            if v is None:
                raise PipelineError(f"{self.path}: placeholder {{{m.group(1)}}} has no value for this example")
            return str(v)

        return _PLACEHOLDER.sub(sub, self.body)

    def messages(self, values: dict) -> list[dict]:
        return [{"role": "user", "content": self.render(values)}]

    @property
    def label(self) -> str:
        return f"{self.path.parent.name}/{self.path.name}@{self.version}"


def template_path(task_name: str, kind: str, directory: Optional[Path] = None) -> Path:
    return (directory or PROMPT_DIR) / task_name / f"{kind}.txt"


@lru_cache(maxsize=None)
def load_template(task_name: str, kind: str, directory: Optional[Path] = None) -> Template:
    if kind not in KINDS:
        raise ValueError(kind)
    path = template_path(task_name, kind, directory)
    if not path.exists():
        raise PipelineError(f"{path}: prompt template not found (the openai teacher needs prompts/{task_name}/{kind}.txt)")
    lines = path.read_text(encoding="utf-8").splitlines()
    version, stop, n = None, (), 0
    while n < len(lines) and lines[n].startswith("#"):
        head = lines[n][1:].strip()
        key, _, value = head.partition(":")
        key = key.strip().lower()
        if key == "version":
            version = value.strip()
        elif key == "stop":
            try:
                stop = json.loads(value)
            except json.JSONDecodeError as e:
                raise PipelineError(f"{path}:{n + 1}: '# stop:' must be a JSON list of strings ({e.msg})") from None
            if not (isinstance(stop, list) and all(isinstance(s, str) and s for s in stop) and len(stop) <= 4):
                raise PipelineError(f"{path}:{n + 1}: '# stop:' must be a JSON list of at most 4 non-empty strings")
            stop = tuple(stop)
        n += 1
    if not version:
        raise PipelineError(f"{path}: header has no '# version: N' line")
    body_lines = lines[n:]
    while body_lines and not body_lines[0].strip():
        body_lines.pop(0)
    body = "\n".join(body_lines).rstrip()
    if not body:
        raise PipelineError(f"{path}: empty prompt body")
    used = set()
    for i, line in enumerate(body_lines):
        for m in _PLACEHOLDER.finditer(line):
            name = m.group(1)
            if name is None:
                continue
            if name not in FIELDS[kind]:
                raise PipelineError(f"{path}:{n + i + 1}: unknown placeholder {{{name}}} "
                                    f"(known: {', '.join('{' + f + '}' for f in sorted(FIELDS[kind]))}; "
                                    "write {{ and }} for literal braces)")
            used.add(name)
    if kind == "self_eval" and "cot" not in used:
        raise PipelineError(f"{path}: missing placeholder {{cot}}: a self-evaluation prompt must show the CoT it "
                            "evaluates")
    for part, names in REQUIRED.get(task_name, {}).items():
        if not used & set(names):
            alternatives = " or ".join("{" + n + "}" for n in names)
            raise PipelineError(f"{path}: missing placeholder {{{names[0]}}}: a {task_name} {kind} prompt must show "
                                f"{part} ({alternatives}), or every question gets the same prompt")
    return Template(path, kind, version, body, stop, frozenset(used))


def _flat(s: Optional[str]) -> Optional[str]:
    return " ".join(s.split()) if s is not None else None


def example_values(task: Task, ex: Example) -> dict:
    """Values of the example placeholders (whitespace collapsed; choices one per line, as the task
    formats them)."""
    choices = ex.choices
    return {
        "question": _flat(ex.question),
        "hypothesis": _flat(ex.question),
        "premise": _flat(ex.premise),
        "choices": task.format_choices([_flat(c) for c in choices]) if choices else None,
        "input": _flat(task.model_input(ex)),
    }


def cot_for_evaluation(task: Task, text: str) -> str:
    """The CoT as shown to the self-evaluation prompt: cut where a run-on new exemplar starts."""
    return cut_run_on(text, task.stop_markers).strip()
