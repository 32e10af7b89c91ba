"""The SDK client: its transport, one connection check before fanning out, and one-line errors.

The SDK retries 429s, 5xx, dropped connections and timeouts itself (``max_retries``, ``timeout_s``).
A connection that cannot be made at all (refused, unknown host, unreachable) would be retried the
same way by every request, for a minute or more with the paper's settings, and the aiohttp transport
reports it as a *timeout* whose message drops the cause. So each phase first checks, once and
without retries, that the endpoint answers at all (``GET /models``: any HTTP status will do); such a
failure later in the run is not retried either (the sender then stops); and errors are described
from their cause chain: ``cannot connect to HOST:PORT (connection refused)``.
"""
from __future__ import annotations

import errno
import os
import socket
from functools import lru_cache
from typing import Optional

from ...core.errors import PipelineError
from ...core.spec import OpenAITeacher
from .endpoint import api_key, client_base_url, host_port, scrub, where

PROBE_TIMEOUT_S = 10.0
_CONNECT_ERRNOS = {errno.ECONNREFUSED, errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EADDRNOTAVAIL}


def http_client(event_hooks: dict):
    """The SDK's aiohttp transport (``openai[aiohttp]``) when aiohttp is installed: about a third less
    CPU per request than its default httpx2 transport, which matters at high concurrency on a small
    machine (benchmarks/bench_teacher.py). ``MM_TEACHER_HTTP=httpx`` forces the default. Either way
    a connection that cannot be made is not retried (``_unretried_connect_failures``)."""
    import openai

    if os.environ.get("MM_TEACHER_HTTP", "").lower() != "httpx":
        try:
            import aiohttp  # noqa: F401

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


def make_client(teacher: OpenAITeacher, event_hooks: Optional[dict] = None):
    """An ``AsyncOpenAI`` client on the endpoint and key of ``endpoint.py`` (never the SDK's own
    reading of the environment, which takes an empty ``OPENAI_BASE_URL`` for a URL)."""
    import openai

    return openai.AsyncOpenAI(api_key=api_key(), base_url=client_base_url(), timeout=teacher.timeout_s,
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


def describe_error(e: BaseException) -> str:
    """One scrubbed line of at most about 200 characters."""
    import openai

    why = connect_failure(e) if isinstance(e, openai.APIConnectionError) else None
    if why:
        out = f"cannot connect to {host_port()} ({why})"
    elif isinstance(e, openai.APIStatusError):
        body = e.body if isinstance(e.body, dict) else {}
        msg = body.get("message") or e.message
        out = f"HTTP {e.status_code} {type(e).__name__}: {msg}"
    elif isinstance(e, openai.APITimeoutError):
        out = "timeout (no answer within timeout_s)"
    elif isinstance(e, openai.APIConnectionError):
        cause = e.__cause__
        out = f"connection error ({type(cause).__name__}: {cause})" if cause else "connection error"
    else:
        out = f"{type(e).__name__}: {e}"
    out = scrub(out)
    return out[:200] + ("..." if len(out) > 200 else "")


async def probe(client, teacher: OpenAITeacher, missing: int) -> None:
    """Fail at once, with the reason, when no connection to the endpoint can be made. Any HTTP answer
    (a 404 or a 401 included) means the endpoint is there; a slow one is left to the requests."""
    import httpx2
    import openai

    try:
        await client.with_options(max_retries=0, timeout=min(teacher.timeout_s, PROBE_TIMEOUT_S)).get(
            "/models", cast_to=httpx2.Response)
    except openai.APIStatusError:
        return
    except openai.APIConnectionError as e:
        why = connect_failure(e)
        if why is None:
            return
        raise PipelineError(f"cannot connect to {host_port()} ({why}): endpoint {scrub(where())}; nothing was "
                            f"sent ({missing} samples to request); check OPENAI_BASE_URL and that the server "
                            "is up, then rerun") from None
