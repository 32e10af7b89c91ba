"""Answers of the endpoint as the SDK's typed ``ChatCompletion``.

The sender posts with the client's generic ``post`` (its retries, timeout, auth and error types) and
hands the body to ``ChatCompletion.model_validate_json`` (pydantic-core, about 30 us) instead of
``chat.completions.create``, whose parameter transform and non-validating ``construct`` cost about
1.5 ms of CPU per request, which caps the request rate at high concurrency on a small machine. An
OpenAI-compatible server whose answer does not validate (a ``finish_reason`` of its own, a missing
``created``) is read the way ``create`` reads every answer: ``ChatCompletion.construct``.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Optional

import pydantic

if TYPE_CHECKING:
    from openai.types.chat import ChatCompletion


@dataclass(frozen=True)
class Answer:
    texts: list[tuple[str, Optional[str]]]  # (text, finish_reason) in choice order, at most n
    usage: Optional[tuple[int, int]]  # (prompt_tokens, completion_tokens); None when not reported
    response_id: Optional[str]
    model: Optional[str] = None  # the model (snapshot) the endpoint says answered, e.g. gpt-4o-mini-2024-07-18
    system_fingerprint: Optional[str] = None  # its backend configuration, when reported


def parse_completion(content: bytes) -> ChatCompletion:
    """The body of a chat-completions answer as a ``ChatCompletion``; ValueError when it is not one."""
    from openai.types.chat import ChatCompletion

    try:
        return ChatCompletion.model_validate_json(content)
    except pydantic.ValidationError:
        pass
    try:
        data = json.loads(content)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"the answer is not JSON ({e})") from None
    if not isinstance(data, dict) or not isinstance(data.get("choices"), list):
        raise ValueError("the answer has no 'choices' list")
    return ChatCompletion.construct(**data)


def read_answer(completion: ChatCompletion, n: int) -> Answer:
    """The texts (a refusal or a missing content reads as ''), usage, id, model and system_fingerprint
    of a completion."""
    choices = [c for c in completion.choices if isinstance(c, pydantic.BaseModel)]  # not a choice: dropped

    def position(ic):
        index = getattr(ic[1], "index", None)
        return index if isinstance(index, int) else ic[0]

    ordered = sorted(enumerate(choices), key=position)
    texts = []
    for _, c in ordered:
        content = getattr(getattr(c, "message", None), "content", None)
        texts.append((content if isinstance(content, str) else "", getattr(c, "finish_reason", None)))
    u = getattr(completion, "usage", None)
    usage = None
    if u is not None and isinstance(getattr(u, "prompt_tokens", None), int):
        ct = getattr(u, "completion_tokens", None)
        usage = (u.prompt_tokens, ct if isinstance(ct, int) else 0)
    def text_or_none(attr: str) -> Optional[str]:
        value = getattr(completion, attr, None)
        return value if isinstance(value, str) and value else None

    return Answer(texts[:n], usage, text_or_none("id"), text_or_none("model"), text_or_none("system_fingerprint"))
