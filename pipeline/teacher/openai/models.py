"""Is the teacher's model served? The endpoint's model list (``GET /models``, free), read before the
first paid request of a phase, once per endpoint, model and key variable per process.

- The list has the model (or ``MODEL:latest``, as Ollama lists it): ``listed``.
- The list lacks it (a retired or misspelt model): stop with one line naming the teacher, the model,
  the endpoint, a few models it does serve, and what to change. Nothing was sent.
- 401/403: stop with one line naming the key's variable. No connection: stop with one line (as before).
- No model list (404, 501, an answer that is not a model list, an empty list, another status, no
  answer within ``LIST_TIMEOUT_S``): not an error. One line on stderr says the check was skipped,
  the metrics say ``skipped (why)``, and the sender sends a single request first, so that a model
  the endpoint does not serve fails after one request (completion 4xx are never retried, client.py).
"""
from __future__ import annotations

import asyncio
import difflib
import json
import sys
from dataclasses import dataclass, field
from typing import Callable, Optional

from ...core.errors import PipelineError
from ...core.spec import OpenAITeacher
from .client import connect_failure, make_client, server_message
from .endpoint import api_key, base_url_hint, endpoint_url, host_port, scrub, setting_hint, where, who

LIST_TIMEOUT_S = 10.0
SHOWN = 5  # models named in a message

_checked: dict[tuple, "ModelCheck"] = {}  # (endpoint, model, key variable) -> a check that let requests go
_answered: set[tuple] = set()  # ... whose model has answered a completion in this process


@dataclass(frozen=True)
class ModelCheck:
    outcome: str  # listed | skipped | not_served | refused | unreachable
    detail: str = ""
    served: tuple[str, ...] = field(default=())

    @property
    def ok(self) -> bool:
        """Requests may go."""
        return self.outcome in ("listed", "skipped")

    @property
    def metric(self) -> Optional[str]:
        """``usage.model_check`` of the teach metrics."""
        return {"listed": "listed", "skipped": f"skipped ({self.detail})"}.get(self.outcome)


def check_key(teacher: OpenAITeacher) -> tuple:
    return endpoint_url(teacher), teacher.model, teacher.api_key_env


def is_listed(model: str, served) -> bool:
    names = set(served)
    return model in names or f"{model}:latest" in names or (model.endswith(":latest") and model[:-7] in names)


def some_of(model: str, served) -> str:
    """A few served models, the closest to ``model`` first."""
    served = sorted(set(served))
    close = difflib.get_close_matches(model, served, n=SHOWN, cutoff=0.3)
    shown = (close + [m for m in served if m not in close])[:SHOWN]
    return ", ".join(shown) + (", ..." if len(served) > len(shown) else "")


async def read_model_list(client, teacher: OpenAITeacher) -> ModelCheck:
    """The check, through the SDK client, without retries; raises nothing it can describe."""
    import httpx2
    import openai

    try:
        raw = await client.with_options(max_retries=0, timeout=min(teacher.timeout_s, LIST_TIMEOUT_S)).get(
            "/models", cast_to=httpx2.Response)
    except openai.APIStatusError as e:
        status = e.status_code
        if status in (401, 403):
            return ModelCheck("refused", scrub(f"HTTP {status}: {server_message(e)}", teacher)[:200])
        why = "no model list" if status in (404, 501) else "no model list read"
        return ModelCheck("skipped", f"/models answered HTTP {status}: {why}")
    except openai.APITimeoutError:
        return ModelCheck("skipped", f"/models gave no answer within {min(teacher.timeout_s, LIST_TIMEOUT_S):g} s")
    except openai.APIConnectionError as e:
        why = connect_failure(e)
        if why is not None:
            return ModelCheck("unreachable", why)
        return ModelCheck("skipped", "/models: the connection failed")
    try:
        data = json.loads(raw.content).get("data")
        served = tuple(m["id"] for m in data if isinstance(m.get("id"), str))
    except (ValueError, AttributeError, TypeError, KeyError):
        return ModelCheck("skipped", "/models answered, but not with a model list")
    if not served:
        return ModelCheck("skipped", "the endpoint's model list is empty")
    if is_listed(teacher.model, served):
        return ModelCheck("listed", served=served)
    return ModelCheck("not_served", served=served)


def failure_line(check: ModelCheck, teacher: OpenAITeacher, name: str, dataset: Optional[str], missing: int) -> str:
    """The one line of a check that stops the teacher (``check.ok`` is False)."""
    sent = f"nothing was sent ({missing} samples to request)"
    if check.outcome == "unreachable":
        return (f"cannot connect to {host_port(teacher)} ({check.detail}): {who(teacher, name)}, endpoint "
                f"{scrub(where(teacher), teacher)}; {sent}; {base_url_hint(teacher, name, dataset)} and that the "
                "server is up, then rerun")
    if check.outcome == "refused":
        env = teacher.api_key_env
        return (f"{who(teacher, name)}: the endpoint refused the key in {env} ({check.detail}); {sent}; set {env} to "
                f"a key this endpoint accepts (or {setting_hint(name, dataset, 'api_key_env')} to the variable that "
                "holds it)")
    return (f"{who(teacher, name)}: the endpoint does not serve model {teacher.model!r} (its model list has "
            f"{len(set(check.served))}: {some_of(teacher.model, check.served)}); {sent}; "
            f"{setting_hint(name, dataset)} to a model it serves (or base_url, if this is the wrong endpoint)")


def skipped_line(check: ModelCheck, teacher: OpenAITeacher, name: str) -> str:
    return (f"{who(teacher, name)}: model check skipped ({check.detail}); a model the endpoint does not serve "
            "will fail at the first request")


async def ensure_served(client, teacher: OpenAITeacher, name: str, dataset: Optional[str], missing: int,
                        say: Optional[Callable[[str], None]] = None) -> ModelCheck:
    """The check before a phase sends anything: once per endpoint, model and key variable per process.
    PipelineError (one line) when requests should not go; one line on stderr (``say``, e.g. a progress
    bar's ``write``) when it was skipped."""
    key = check_key(teacher)
    if key in _checked:
        return _checked[key]
    check = await read_model_list(client, teacher)
    if not check.ok:
        raise PipelineError(failure_line(check, teacher, name, dataset, missing))
    if check.outcome == "skipped":
        (say or (lambda line: print(line, file=sys.stderr, flush=True)))(skipped_line(check, teacher, name))
    _checked[key] = check
    return check


def forget_checks() -> None:
    """Forget every check and answer of this process (tests; a long-lived process after a config change)."""
    _checked.clear()
    _answered.clear()


def answered(teacher: OpenAITeacher) -> bool:
    """Whether the model has answered a completion on this endpoint in this process."""
    return check_key(teacher) in _answered


def mark_answered(teacher: OpenAITeacher) -> None:
    _answered.add(check_key(teacher))


def estimate_check(teacher: OpenAITeacher, name: str, dataset: Optional[str]) -> tuple[Optional[str], str]:
    """For ``estimate``: (a warning line to print first, or None; the line saying what the check found)."""
    if not api_key(teacher):
        return None, f"  model check:      not done ({teacher.api_key_env} is not set)"
    key = check_key(teacher)

    async def run() -> ModelCheck:
        client = make_client(teacher)
        try:
            return await read_model_list(client, teacher)
        finally:
            await client.close()

    check = _checked.get(key) or asyncio.run(run())
    if check.outcome == "listed":
        return None, f"  model check:      {teacher.model} is in the endpoint's model list"
    if check.outcome == "skipped":
        return None, f"  model check:      skipped ({check.detail})"
    if check.outcome == "unreachable":
        return None, f"  model check:      not done (cannot connect to {host_port(teacher)} ({check.detail}))"
    warning = failure_line(check, teacher, name, dataset, 0).replace("; nothing was sent (0 samples to request)", "")
    why = "the key was refused" if check.outcome == "refused" else "model not served"
    return (f"warning: {warning}; the teach stage would stop before sending anything",
            f"  model check:      FAILED ({why})")
