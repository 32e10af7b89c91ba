"""Where requests go, and with which key: ``OPENAI_BASE_URL`` and ``OPENAI_API_KEY``, read here only.

An empty (or blank) variable means *unset*, everywhere: the client, the journal key, the metrics and
the messages all see the same base URL. The key is never written anywhere, and messages are scrubbed
of anything that looks like one (or like credentials inside the base URL).
"""
from __future__ import annotations

import os
import re
from typing import Optional
from urllib.parse import urlsplit, urlunsplit

from ...core.errors import PipelineError

DEFAULT_BASE_URL = "https://api.openai.com/v1"
_SECRETS = re.compile(r"(sk-[A-Za-z0-9_\-*.]{3,}|Bearer\s+\S+)")


def _env(name: str) -> Optional[str]:
    """An environment variable, or None when it is unset, empty or blank."""
    value = (os.environ.get(name) or "").strip()
    return value or None


def base_url_setting() -> Optional[str]:
    """``OPENAI_BASE_URL`` as the user set it (credentials included), or None when unset or empty."""
    return _env("OPENAI_BASE_URL")


def client_base_url() -> str:
    """The base URL the client is built with: ``OPENAI_BASE_URL``, or the default when unset or empty."""
    return base_url_setting() or DEFAULT_BASE_URL


def api_key() -> Optional[str]:
    return _env("OPENAI_API_KEY")


def endpoint_url() -> str:
    """The base URL as recorded in the journal and the metrics: no credentials, no query."""
    try:
        u = urlsplit(client_base_url())
        host = (u.hostname or "").lower()
        port = u.port
    except ValueError:
        raise PipelineError("OPENAI_BASE_URL is not a valid URL") from None
    if u.scheme not in ("http", "https") or not host:
        raise PipelineError("OPENAI_BASE_URL must be an http(s) URL, e.g. https://api.openai.com/v1")
    if ":" in host:
        host = f"[{host}]"
    return urlunsplit((u.scheme, host + (f":{port}" if port else ""), u.path.rstrip("/"), "", ""))


def host_port() -> str:
    """``host:port`` of the endpoint (the scheme's default port when none is given), for messages."""
    u = urlsplit(endpoint_url())
    host = u.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    return f"{host}:{u.port or (443 if u.scheme == 'https' else 80)}"


def where() -> str:
    """The endpoint as messages name it, saying when it is the default."""
    return endpoint_url() if base_url_setting() else f"{endpoint_url()} (OPENAI_BASE_URL is unset or empty: the default)"


def ensure_key(missing: int) -> None:
    if missing and not api_key():
        raise PipelineError(f"OPENAI_API_KEY is not set ({missing} samples to request): the openai teacher "
                            "reads its key from the environment only")


def scrub(text: str) -> str:
    """One line, no API key (nor anything that looks like one, nor credentials of the base URL)."""
    secrets = [api_key()]
    try:  # credentials inside OPENAI_BASE_URL (https://user:password@host/v1)
        u = urlsplit(base_url_setting() or "")
        secrets += [u.password, u.username and u.password and f"{u.username}:{u.password}"]
    except ValueError:
        pass
    for secret in sorted(filter(None, secrets), key=len, reverse=True):
        text = text.replace(secret, "***")
    return " ".join(_SECRETS.sub("***", text).split())
