"""Token counts for planning, pacing and the budget: ``tiktoken`` when installed (and its encoding
files are available offline), else about four characters per token."""
from __future__ import annotations

from functools import lru_cache


@lru_cache(maxsize=None)
def _encoder(model: str):
    try:
        import tiktoken

        try:
            return tiktoken.encoding_for_model(model)
        except KeyError:
            return tiktoken.get_encoding("cl100k_base")
    except Exception:
        return None


def token_method(model: str) -> str:
    return "tiktoken" if _encoder(model) is not None else "chars/4"


def count_tokens(text: str, model: str) -> int:
    enc = _encoder(model)
    return len(enc.encode(text)) if enc is not None else (len(text) + 3) // 4


def message_tokens(messages: list[dict], model: str) -> int:
    """Prompt tokens of chat messages, with the per-message and per-reply overhead of chat models."""
    return sum(count_tokens(m["content"], model) + 4 for m in messages) + 3
