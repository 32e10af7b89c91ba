"""Task registry: adding a dataset is one new module and one line here."""
from __future__ import annotations

from ..core.errors import PipelineError
from .anli import ANLI
from .base import Parsed, Task, parse_self_evaluation, se_input
from .cqa import CQA
from .svamp import SVAMP

TASKS: dict[str, type[Task]] = {"svamp": SVAMP, "cqa": CQA, "anli": ANLI}


def get_task(name: str) -> Task:
    try:
        return TASKS[name]()
    except KeyError:
        raise PipelineError(f"no task named {name!r} (known: {', '.join(sorted(TASKS))})") from None


__all__ = ["Task", "Parsed", "TASKS", "get_task", "parse_self_evaluation", "se_input"]
