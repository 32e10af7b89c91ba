"""A small OpenAI-compatible chat-completions server for tests, benchmarks and dry runs.

Serves ``POST /v1/chat/completions`` (``n``, ``usage``, ``model`` and ``system_fingerprint`` included) and,
when asked to (``served_models``), ``GET /v1/models``, with deterministic answers built
from the prompt: a chain of thought ending ``The answer is (a + b).`` for SVAMP, ``So the answer is
(x) choice.`` for CommonsenseQA, ``So the answer is <label>.`` for ANLI, and a self-evaluation ending
``Evaluation result: the given answer is <verdict>.`` for self-evaluation prompts. It counts every
request and can inject faults: 429s, 500s, slow responses, unparseable outputs, an endpoint
that ignores or rejects ``n``, a retired model (answered exactly as OpenAI answers it), no model
list, and a server that dies mid-run (``go_down``). It also serves the Batch API (``/v1/files``,
``/v1/batches``: ``tests/fake_batches.py``, ``srv.batches``). Loopback only.

In tests::

    with FakeOpenAI(latency=0.05) as srv:
        os.environ["OPENAI_BASE_URL"] = srv.base_url
        srv.config.status_after = 3   # every request after the third answers 500

Standalone (for the benchmark or a dry run of the live teacher)::

    python tests/fake_openai.py --port 8000 --latency 0.2
    OPENAI_BASE_URL=http://127.0.0.1:8000/v1 OPENAI_API_KEY=sk-local python -m pipeline teach --dataset svamp
"""
from __future__ import annotations

import argparse
import hashlib
import json
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Optional

__all__ = ["FakeOpenAI", "FaultConfig", "messages_hash"]


def messages_hash(messages: list) -> str:
    """The same canonical hash the journal uses for a prompt (``pipeline.teacher.journal.prompt_hash``)."""
    blob = json.dumps(messages, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


@dataclass
class FaultConfig:
    """What the server does; change fields while it runs (tests) or from the command line."""

    latency: float = 0.0  # seconds before every answer
    n_mode: str = "ok"  # ok | ignore (answers 1 choice whatever n is) | reject (400 when n > 1)
    status_first: int = 0  # answer the first `status_first` requests with `status` ...
    status_after: Optional[int] = None  # ... and/or every request after the first `status_after` successes
    status: int = 500
    retry_after_ms: Optional[int] = 10  # `retry-after-ms` header on error answers (None: no header)
    slow_first: int = 0  # the first `slow_first` requests sleep `slow_s` (beyond the client timeout)
    slow_s: float = 5.0
    slow_every: int = 0  # also every Nth request sleeps `slow_s` (0: none); a slow answer is still billed
    garbage_every: int = 0  # every Nth choice served is an unparseable answer (0: never)
    usage: bool = True  # include `usage` in answers
    echo_auth: bool = False  # error answers quote the Authorization header (a careless server leaking the key)
    error_message: Optional[str] = None  # the message of every error answer (None: the default ones)
    error_headers: dict = field(default_factory=dict)  # extra headers on error answers, e.g. x-should-retry
    served_models: Optional[list] = None  # GET /v1/models lists these (None: no model list, see models_status)
    models_status: int = 404  # GET /v1/models without served_models: this status (200: a body that is no list)
    retired_models: list = field(default_factory=list)  # completions for these: 404 model_not_found, as OpenAI
    answer_model: Optional[str] = None  # `model` of the answers (None: the model asked for)
    system_fingerprint: Optional[str] = "fp_fake0001"  # of the answers (None: left out)


@dataclass
class Stats:
    requests: int = 0  # every POST, retries included
    models_requests: int = 0  # GET /v1/models
    ok: int = 0  # requests answered 200
    errors: dict = field(default_factory=dict)  # status -> count
    choices: int = 0  # choices served in 200 answers
    garbage: int = 0  # unparseable choices served
    slow: int = 0
    log: list = field(default_factory=list)  # one dict per 200 answer: hash, n, choices, kind, usage, ...
    auth: set = field(default_factory=set)  # Authorization headers seen
    models: set = field(default_factory=set)  # `model` of the completion requests seen


# --------------------------------------------------------------------------- deterministic answers
_NUM = re.compile(r"\d+(?:\.\d+)?")


def _h(*parts) -> int:
    return int(hashlib.sha256("\x1f".join(map(str, parts)).encode()).hexdigest()[:8], 16)


def _last_block(prompt: str) -> str:
    """The question being asked: the text after the last exemplar separator."""
    cut = max(prompt.rfind("\nQ:"), prompt.rfind("\nPremise:"), prompt.rfind("\nQuestion:"))
    return prompt[cut + 1:] if cut >= 0 else prompt


def answer_for(prompt: str, i: int) -> str:
    """Deterministic completion number ``i`` for ``prompt``."""
    block = _last_block(prompt)
    if "Evaluation result" in prompt:  # a self-evaluation prompt
        verdict = ("correct", "correct", "wrong", "uncertain")[_h(block, i) % 4]
        return ("Evaluation:\nThe given answer takes the quantities from the question and combines them "
                f"step by step; checking each step, the reasoning holds up as written.\n\n"
                f"Evaluation result: the given answer is {verdict}.")
    if "Answer Choices:" in block:  # CommonsenseQA
        choices = re.findall(r"\(([a-e])\)\s*([^\n(]+)", block)
        if choices:
            letter, text = choices[_h(block, i) % len(choices)]
            return (f"The answer must fit the question. Of the above choices, {text.strip()} fits best. "
                    f"So the answer is ({letter}) {text.strip()}.")
    if "Hypothesis:" in block or "Premise:" in block:  # ANLI
        label = ("entailment", "neutral", "contradiction")[_h(block, i) % 3]
        return f"The premise and the hypothesis are compared sentence by sentence. So the answer is {label}."
    nums = _NUM.findall(block.split("\nA:")[0])
    if len(nums) >= 2:
        a, b = nums[-2], nums[-1]
        op = "+-*/"[(_h(block) + i) % 4]
        return f"The question gives {a} and {b}. Combining them gives {a} {op} {b}. The answer is ({a} {op} {b})."
    n = nums[-1] if nums else "0"
    return f"The question gives {n}. The answer is ({n})."


def _kind(prompt: str) -> str:
    return "self_eval" if "Evaluation result" in prompt else "cot"


# --------------------------------------------------------------------------- the server
class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: one connection per client slot
    disable_nagle_algorithm = True  # headers and body go out at once (no 40 ms delayed-ACK stall)
    server: "_Server"

    def log_message(self, *args):  # quiet
        pass

    def _send(self, status: int, body: dict, headers: Optional[dict] = None) -> None:
        data = json.dumps(body).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (timeout) or was killed

    def do_GET(self):  # noqa: N802
        if self._gone():
            return
        if self.path.startswith(("/v1/files", "/v1/batches")):
            self._batch_api("GET", b"")
            return
        if self.path.rstrip("/") == "/v1/models":
            self._models()
            return
        if self.path.rstrip("/") != "/stats":
            self._send(404, {"error": {"message": f"no route {self.path}"}})
            return
        fake = self.server.fake
        with fake.lock:
            st = fake.stats
            body = {"requests": st.requests, "ok": st.ok, "errors": {str(k): v for k, v in st.errors.items()},
                    "choices": st.choices, "garbage": st.garbage, "slow": st.slow}
        self._send(200, body)

    def _batch_api(self, method: str, raw: bytes) -> None:
        status, body, ctype = self.server.fake.batches.handle(method, self.path, self.headers, raw)
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def _models(self) -> None:
        fake = self.server.fake
        cfg = fake.config
        with fake.lock:
            fake.stats.models_requests += 1
        if cfg.served_models is not None:
            self._send(200, {"object": "list", "data": [{"id": m, "object": "model", "created": 1700000000,
                                                         "owned_by": "system"} for m in cfg.served_models]})
        elif cfg.models_status == 200:
            self._send(200, {"status": "ok", "hint": "this is not a model list"})
        else:
            msg = cfg.error_message or f"no route {self.path}"
            self._send(cfg.models_status, {"error": {"message": msg, "type": "invalid_request_error", "param": None,
                                                     "code": None}}, cfg.error_headers)

    def _gone(self) -> bool:
        """After ``go_down``: close the connection without an answer, like a server that died."""
        if self.server.fake.down:
            self.close_connection = True
        return self.server.fake.down

    def do_POST(self):  # noqa: N802
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        fake = self.server.fake
        if self._gone():
            return
        if self.path.startswith(("/v1/files", "/v1/batches")):
            self._batch_api("POST", raw)
            return
        if self.path.rstrip("/") != "/v1/chat/completions":
            self._send(404, {"error": {"message": f"no route {self.path}", "type": "invalid_request_error"}})
            return
        try:
            body = json.loads(raw)
            "\n".join(m.get("content") or "" for m in body["messages"])
        except (ValueError, KeyError, TypeError, AttributeError):
            self._send(400, {"error": {"message": "bad JSON body", "type": "invalid_request_error"}})
            return
        status, out, headers = fake.complete(body, self.headers.get("Authorization", ""))
        self._send(status, out, headers)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256
    fake: "FakeOpenAI"

    def handle_error(self, request, client_address):
        import sys

        if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):  # a killed client is expected
            super().handle_error(request, client_address)


class FakeOpenAI:
    """The server on 127.0.0.1 (port 0 = any free port), in a background thread."""

    def __init__(self, port: int = 0, **config):
        self.config = FaultConfig(**config)
        self.stats = Stats()
        self.lock = threading.Lock()
        self._httpd = _Server(("127.0.0.1", port), _Handler)
        from fake_batches import BatchAPI

        self.batches = BatchAPI(self)  # /v1/files and /v1/batches
        self._httpd.fake = self
        self._thread: Optional[threading.Thread] = None
        self.down = False

    def complete(self, body: dict, authorization: str = "", sleep: bool = True) -> tuple[int, dict, dict]:
        """One chat-completions answer to ``body`` (faults included): (status, JSON body, headers). The
        Batch API (fake_batches.py) answers each line of a batch file with it."""
        fake = self
        messages = body["messages"]
        prompt = "\n".join(m.get("content") or "" for m in messages)
        n = int(body.get("n") or 1)
        cfg = fake.config
        with fake.lock:
            st = fake.stats
            st.requests += 1
            seq = st.requests
            st.auth.add(authorization)
            st.models.add(body.get("model"))
            retired = body.get("model") in cfg.retired_models
            if retired:
                st.errors[404] = st.errors.get(404, 0) + 1
        if retired:  # word for word what OpenAI answers for a model it no longer serves
            return 404, {"error": {"message": f"The model `{body.get('model')}` does not exist or you do not have "
                                              "access to it.", "type": "invalid_request_error", "param": None,
                                   "code": "model_not_found"}}, cfg.error_headers
        with fake.lock:
            fail = seq <= cfg.status_first or (cfg.status_after is not None and st.ok >= cfg.status_after)
            slow = not fail and (st.slow < cfg.slow_first or bool(cfg.slow_every and seq % cfg.slow_every == 0))
            if slow:
                st.slow += 1
            reject_n = not fail and n > 1 and cfg.n_mode == "reject"
            if fail or reject_n:
                code = cfg.status if fail else 400
                st.errors[code] = st.errors.get(code, 0) + 1
        if fail or reject_n:
            headers = {"retry-after-ms": str(cfg.retry_after_ms)} if (fail and cfg.retry_after_ms is not None) else {}
            headers.update(cfg.error_headers)
            msg = cfg.error_message or ("injected failure" if fail else "n > 1 is not supported by this endpoint")
            if cfg.echo_auth:
                msg += f" (request had Authorization: {authorization})"
            return code, {"error": {"message": msg, "type": "server_error" if fail else "invalid_request_error",
                                    "param": None if fail else "n"}}, headers
        if sleep:
            time.sleep(cfg.slow_s if slow else cfg.latency)
        served = 1 if cfg.n_mode == "ignore" else n
        prompt_tokens = max(1, len(prompt) // 4)
        choices = []
        with fake.lock:
            for i in range(served):
                st.choices += 1
                if cfg.garbage_every and st.choices % cfg.garbage_every == 0:
                    st.garbage += 1
                    text = "I am not sure how to solve this one, sorry."
                else:
                    text = answer_for(prompt, i)
                choices.append({"index": i, "message": {"role": "assistant", "content": text},
                                "finish_reason": "stop", "logprobs": None})
            completion_tokens = sum(max(1, len(c["message"]["content"]) // 4) for c in choices)
            st.ok += 1
            st.log.append({"hash": messages_hash(messages), "n": n, "choices": served, "kind": _kind(prompt),
                           "max_tokens": body.get("max_tokens"), "temperature": body.get("temperature"),
                           "stop": body.get("stop"), "slow": slow, "model": body.get("model"),
                           "prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens})
        out = {"id": f"chatcmpl-fake-{seq}", "object": "chat.completion", "created": int(time.time()),
               "model": cfg.answer_model or body.get("model", "fake"), "choices": choices}
        if cfg.system_fingerprint is not None:
            out["system_fingerprint"] = cfg.system_fingerprint
        if cfg.usage:
            out["usage"] = {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                            "total_tokens": prompt_tokens + completion_tokens}
        return 200, out, {}

    @property
    def port(self) -> int:
        return self._httpd.server_address[1]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def reset(self, **config) -> None:
        with self.lock:
            self.config = FaultConfig(**config)
            self.stats = Stats()
        from fake_batches import BatchAPI

        self.batches = BatchAPI(self)

    def start(self) -> "FakeOpenAI":
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def go_down(self) -> None:
        """The server dies mid-run: new connections are refused, open ones are closed unanswered."""
        self.down = True
        self.stop()

    def __enter__(self) -> "FakeOpenAI":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, default=8000)
    ap.add_argument("--latency", type=float, default=0.0, help="seconds before every answer")
    ap.add_argument("--n-mode", choices=("ok", "ignore", "reject"), default="ok")
    ap.add_argument("--garbage-every", type=int, default=0, help="every Nth choice is unparseable")
    ap.add_argument("--status-first", type=int, default=0, help="answer the first N requests with --status")
    ap.add_argument("--status", type=int, default=500)
    ap.add_argument("--duration", type=float, default=0, help="stop after this many seconds (0: run until killed)")
    a = ap.parse_args(argv)
    srv = FakeOpenAI(port=a.port, latency=a.latency, n_mode=a.n_mode, garbage_every=a.garbage_every,
                     status_first=a.status_first, status=a.status).start()
    print(f"fake OpenAI endpoint at {srv.base_url}", flush=True)
    try:
        if a.duration:
            time.sleep(a.duration)
        else:
            while True:
                time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        srv.stop()
        print(f"served {srv.stats.requests} requests ({srv.stats.ok} ok, errors {srv.stats.errors})", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
