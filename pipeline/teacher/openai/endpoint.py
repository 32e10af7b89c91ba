"""Where one teacher's requests go, and with which key, read here only.

- Base URL: ``teacher.base_url`` (params), else ``OPENAI_BASE_URL``, else ``DEFAULT_BASE_URL``.
- Key: the environment variable named by ``teacher.api_key_env`` (``OPENAI_API_KEY`` by default).

An empty (or blank) variable means *unset*, everywhere: the client, the journal key, the metrics and
the messages all see the same base URL. Every function takes the teacher and reads the environment
when called (nothing is cached), so two teachers on two endpoints in one process do not interfere.
The key is never written anywhere, and messages are scrubbed of it (and of any 8 or more characters
of it), of anything that looks like a key, and of credentials inside ``OPENAI_BASE_URL``.
"""
from __future__ import annotations

import os
import re
from typing import Optional
from urllib.parse import urlsplit, urlunsplit

from ...core.errors import PipelineError
from ...core.spec import OpenAITeacher

DEFAULT_BASE_URL = "https://api.openai.com/v1"
ENV_BASE_URL = "OPENAI_BASE_URL"
MIN_SECRET_PART = 8  # any run of this many characters of the key is scrubbed
_SECRETS = re.compile(r"(sk-[A-Za-z0-9_\-*.]{3,}|Bearer\s+\S+)")


def _env(name: str) -> Optional[str]:
    """An environment variable, or None when it is unset, empty or blank."""
    value = (os.environ.get(name) or "").strip()
    return value or None


def base_url_source(teacher: OpenAITeacher) -> str:
    """Where the base URL comes from: ``params`` (``teacher.base_url``), ``env`` or ``default``."""
    if (teacher.base_url or "").strip():
        return "params"
    return "env" if _env(ENV_BASE_URL) else "default"


def base_url_setting(teacher: OpenAITeacher) -> Optional[str]:
    """The base URL as the user set it (``OPENAI_BASE_URL`` may hold credentials), or None: the default."""
    return (teacher.base_url or "").strip() or _env(ENV_BASE_URL)


def client_base_url(teacher: OpenAITeacher) -> str:
    """The base URL the client is built with."""
    return base_url_setting(teacher) or DEFAULT_BASE_URL


def api_key(teacher: OpenAITeacher) -> Optional[str]:
    """The key, from the variable named by ``teacher.api_key_env`` (None when unset or empty)."""
    return _env(teacher.api_key_env)


def endpoint_url(teacher: OpenAITeacher) -> str:
    """The base URL as recorded in the journal and the metrics: no credentials, no query."""
    origin = "base_url of the teacher" if base_url_source(teacher) == "params" else ENV_BASE_URL
    try:
        u = urlsplit(client_base_url(teacher))
        host = (u.hostname or "").lower()
        port = u.port
    except ValueError:
        raise PipelineError(f"{origin} is not a valid URL") from None
    if u.scheme not in ("http", "https") or not host:
        raise PipelineError(f"{origin} must be an http(s) URL, e.g. https://api.openai.com/v1")
    if ":" in host:
        host = f"[{host}]"
    return urlunsplit((u.scheme, host + (f":{port}" if port else ""), u.path.rstrip("/"), "", ""))


def host_port(teacher: OpenAITeacher) -> str:
    """``host:port`` of the endpoint (the scheme's default port when none is given), for messages."""
    u = urlsplit(endpoint_url(teacher))
    host = u.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    return f"{host}:{u.port or (443 if u.scheme == 'https' else 80)}"


def where(teacher: OpenAITeacher) -> str:
    """The endpoint as messages name it, saying when it is the default."""
    if base_url_source(teacher) == "default":
        return f"{endpoint_url(teacher)} (no base_url, and {ENV_BASE_URL} is unset or empty: the default)"
    return endpoint_url(teacher)


def who(teacher: OpenAITeacher, name: str) -> str:
    """``teacher NAME (model M at URL)``: how every user-facing line names the teacher."""
    return f"teacher {name} (model {teacher.model} at {endpoint_url(teacher)})"


def setting_hint(name: str, dataset: Optional[str], key: str = "model") -> str:
    """Where to change a setting of the teacher in params.yaml."""
    per_dataset = f" (or datasets.{dataset}.teachers.{name})" if dataset else ""
    return f"set `{key}` under teachers.{name} in params.yaml{per_dataset}"


def base_url_hint(teacher: OpenAITeacher, name: str, dataset: Optional[str] = None) -> str:
    """What to change when the endpoint itself is wrong or down."""
    if base_url_source(teacher) == "params":
        return setting_hint(name, dataset, "base_url")
    return f"check {ENV_BASE_URL} (or {setting_hint(name, dataset, 'base_url')})"


def ensure_key(teacher: OpenAITeacher, missing: int, name: str = "teacher") -> None:
    if missing and not api_key(teacher):
        raise PipelineError(f"{teacher.api_key_env} is not set ({missing} samples to request): {who(teacher, name)} "
                            f"reads its key only from the environment variable that teachers.{name}.api_key_env "
                            f"names: export {teacher.api_key_env}, or set api_key_env to the variable that holds it")


def _parts(text: str, secret: str) -> list[tuple[int, int]]:
    """Spans of ``text`` covered by runs of ``MIN_SECRET_PART`` or more characters of ``secret``
    (all of it when it is shorter): every window of that length that occurs in the secret."""
    w = min(MIN_SECRET_PART, len(secret))
    grams = {secret[i:i + w] for i in range(len(secret) - w + 1)}
    spans: list[tuple[int, int]] = []
    for i in range(len(text) - w + 1):
        if text[i:i + w] in grams:
            if spans and spans[-1][1] >= i:
                spans[-1] = (spans[-1][0], i + w)
            else:
                spans.append((i, i + w))
    return spans


def _mask(text: str, secret: str) -> str:
    out, last = [], 0
    for a, b in _parts(text, secret):
        out += [text[last:a], "***"]
        last = b
    return "".join(out) + text[last:]


def scrub(text: str, teacher: OpenAITeacher) -> str:
    """One line, without the key (nor 8 or more characters of it, nor anything that looks like a key,
    nor credentials of ``OPENAI_BASE_URL``)."""
    secrets = [api_key(teacher)]
    try:  # credentials inside OPENAI_BASE_URL (https://user:password@host/v1); base_url holds none
        u = urlsplit(_env(ENV_BASE_URL) or "")
        secrets += [u.password, u.username and u.password and f"{u.username}:{u.password}"]
    except ValueError:
        pass
    for secret in sorted(filter(None, set(secrets)), key=len, reverse=True):
        text = _mask(text, secret)
    return " ".join(_SECRETS.sub("***", text).split())
