"""The SDK client of one teacher: its transport, which answers it retries, and one-line errors.

The SDK retries 408, 409, 429, 5xx, dropped connections and timeouts itself (``max_retries``,
``timeout_s``); it would also retry any answer carrying ``x-should-retry: true``. Here no other 4xx
is ever retried (``_Client._should_retry``): a retired model, a refused key or a bad request would
fare no better a second time. A connection that cannot be made at all (refused, unknown host,
unreachable) would be retried the same way by every request, for a minute or more with the paper's
settings, and the aiohttp transport reports it as a *timeout* whose message drops the cause; so such
a failure is not retried either (``_unretried_connect_failures``), each phase checks the endpoint
first (``models.py``), and errors are described from their cause chain: ``cannot connect to
HOST:PORT (connection refused)``.
"""
from __future__ import annotations

import errno
import importlib.util
import os
import socket
from functools import lru_cache
from typing import Optional

from ...core.errors import PipelineError
from ...core.spec import OpenAITeacher
from .endpoint import api_key, client_base_url, host_port, scrub

RETRIED_4XX = (408, 409, 429)  # the only 4xx answers the client retries
_CONNECT_ERRNOS = {errno.ECONNREFUSED, errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EADDRNOTAVAIL}


def retried(status: int) -> bool:
    """Whether the client retries an answer with this HTTP status (within ``max_retries``)."""
    return status >= 500 or status in RETRIED_4XX


def http_client(event_hooks: dict):
    """The SDK's aiohttp transport (``openai[aiohttp]``) when aiohttp is installed: about a third less
    CPU per request than its default httpx2 transport, which matters at high concurrency on a small
    machine (benchmarks/bench_teacher.py). ``MM_TEACHER_HTTP=httpx`` forces the default. Either way
    a connection that cannot be made is not retried (``_unretried_connect_failures``)."""
    import openai

    if os.environ.get("MM_TEACHER_HTTP", "").lower() != "httpx":
        try:
            if importlib.util.find_spec("aiohttp") is None:
                raise ImportError("aiohttp")
            return _unretried_connect_failures(openai.DefaultAioHttpClient)(event_hooks=event_hooks)
        except (ImportError, RuntimeError):  # not installed, or too old for the SDK's adapter
            pass
    return _unretried_connect_failures(openai.DefaultAsyncHttpxClient)(event_hooks=event_hooks)


@lru_cache(maxsize=None)
def _unretried_connect_failures(base: type) -> type:
    """``base`` (an httpx2 client class) whose ``send`` turns a connection refused (or an unknown or
    unreachable host) into the SDK's ``APIConnectionError`` at once: the SDK retries transport errors
    but passes its own errors through, so such a request fails after one try instead of retrying
    with backoff for half a minute while every other request does the same."""
    import openai

    class Client(base):
        async def send(self, request, **kwargs):
            try:
                return await super().send(request, **kwargs)
            except Exception as e:
                why = connect_failure(e, definite=True)
                if why is None:
                    raise
                raise openai.APIConnectionError(message=f"cannot connect ({why})", request=request) from e

    Client.__name__ = Client.__qualname__ = base.__name__
    return Client


@lru_cache(maxsize=None)
def _client_class() -> type:
    """``AsyncOpenAI`` that never retries a 4xx other than 408, 409 and 429 (``x-should-retry`` or not)."""
    import openai

    class AsyncOpenAI(openai.AsyncOpenAI):
        def _should_retry(self, response) -> bool:
            if 400 <= response.status_code < 500 and not retried(response.status_code):
                return False
            return super()._should_retry(response)

    return AsyncOpenAI


def make_client(teacher: OpenAITeacher, event_hooks: Optional[dict] = None):
    """An ``AsyncOpenAI`` client on the teacher's endpoint and key (``endpoint.py``; never the SDK's own
    reading of ``OPENAI_API_KEY`` / ``OPENAI_BASE_URL``, which would hand one teacher's key to another
    teacher's endpoint, and takes an empty ``OPENAI_BASE_URL`` for a URL)."""
    key = api_key(teacher)
    if not key:
        raise PipelineError(f"{teacher.api_key_env} is not set: the teacher reads its key from the environment "
                            "variable named by its api_key_env")
    return _client_class()(api_key=key, base_url=client_base_url(teacher), timeout=teacher.timeout_s,
                           max_retries=teacher.max_retries, http_client=http_client(event_hooks or {}))


def _chain(e: BaseException):
    seen = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        yield e
        e = e.__cause__ or e.__context__


def connect_failure(e: BaseException, definite: bool = False) -> Optional[str]:
    """Why no connection could be made, when that is what ``e`` comes from; else None. (The aiohttp
    transport maps every aiohttp connection error, a dropped connection included, to
    ``ConnectTimeout``, so the socket-level cause decides.) ``definite``: not a connect timeout,
    which may pass."""
    import httpx2

    connect_timeout = via_aiohttp = False
    for x in _chain(e):
        if isinstance(x, ConnectionRefusedError):
            return "connection refused"
        if isinstance(x, socket.gaierror):
            return f"host name not resolved: {x.strerror or x}"
        if isinstance(x, OSError) and x.errno in _CONNECT_ERRNOS:
            return os.strerror(x.errno).lower()
        connect_timeout |= isinstance(x, httpx2.ConnectTimeout)
        via_aiohttp |= type(x).__module__.split(".")[0] == "aiohttp"
    return "no connection within the timeout" if connect_timeout and not via_aiohttp and not definite else None


def error_code(e: BaseException) -> Optional[str]:
    """The ``code`` of an API error's body (``model_not_found``, ...), when it has one."""
    code = getattr(e, "code", None)
    return code if isinstance(code, str) and code else None


def server_message(e: BaseException) -> str:
    """The server's own message of an HTTP error answer."""
    body = getattr(e, "body", None)
    msg = body.get("message") if isinstance(body, dict) else None
    return str(msg or getattr(e, "message", "") or e)


def describe_error(e: BaseException, teacher: OpenAITeacher, limit: int = 200) -> str:
    """One scrubbed line of at most about ``limit`` characters."""
    import openai

    why = connect_failure(e) if isinstance(e, openai.APIConnectionError) else None
    if why:
        out = f"cannot connect to {host_port(teacher)} ({why})"
    elif isinstance(e, openai.APIStatusError):
        code = error_code(e)
        out = f"HTTP {e.status_code} {code or type(e).__name__}: {server_message(e)}"
    elif isinstance(e, openai.APITimeoutError):
        out = "timeout (no answer within timeout_s)"
    elif isinstance(e, openai.APIConnectionError):
        cause = e.__cause__
        out = f"connection error ({type(cause).__name__}: {cause})" if cause else "connection error"
    else:
        out = f"{type(e).__name__}: {e}"
    out = scrub(out, teacher)
    return out[:limit] + ("..." if len(out) > limit else "")
