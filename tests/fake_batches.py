"""The Batch API of the fake OpenAI server (``tests/fake_openai.py``): ``/v1/files`` and ``/v1/batches``.

- ``POST /v1/files`` (multipart: ``purpose=batch`` and the JSONL file) and ``GET /v1/files/{id}/content``.
- ``POST /v1/batches`` (``input_file_id``, ``endpoint``, ``completion_window: 24h``), ``GET /v1/batches``
  and ``GET /v1/batches/{id}``. Each poll moves a batch one step: validating, in_progress (for as long
  as ``hold`` is set), finalizing, then completed (or expired). Its lines are answered then by the
  server's own chat-completions code (``FakeOpenAI.complete``), and the output file lists them in
  reverse order (output order is not input order, as on OpenAI).

Scenarios, set on ``srv.batches`` (each ``*_next`` applies to the next batch that finishes, once):
``enabled`` (False: 404, like an endpoint without the Batch API), ``hold``, ``expire_next`` (expire
with only the first K lines answered; the rest in the error file as ``batch_expired``), ``fail_next``
(the first K lines answered with a 500 in the error file), ``unknown_next`` (one more output line,
whose ``custom_id`` is no line of the batch), ``cancel_next`` (cancelled with only the first K lines
answered). Counters: ``uploads``, ``created``, ``retrieves``.
"""
from __future__ import annotations

import json
import threading
import time
from email.parser import BytesParser
from email.policy import HTTP
from typing import Optional

JSON = "application/json"


class BatchAPI:
    def __init__(self, fake):
        self.fake = fake
        self.lock = threading.Lock()
        self.enabled = True
        self.hold = False
        self.expire_next: Optional[int] = None
        self.fail_next = 0
        self.unknown_next = False
        self.cancel_next: Optional[int] = None
        self.files: dict[str, bytes] = {}
        self.batches: dict[str, dict] = {}
        self.uploads = self.created = self.retrieves = 0

    # ------------------------------------------------------------------ routing
    def handle(self, method: str, path: str, headers, raw: bytes) -> tuple[int, object, str]:
        p = path.split("?")[0].rstrip("/")
        parts = p.split("/")  # '', 'v1', 'files' | 'batches', id, 'content'
        if not self.enabled:
            return 404, {"error": {"message": f"no route {p}", "type": "invalid_request_error"}}, JSON
        with self.lock:
            if method == "POST" and p == "/v1/files":
                return self._upload(headers.get("Content-Type", ""), raw)
            if method == "GET" and len(parts) == 5 and parts[2] == "files" and parts[4] == "content":
                data = self.files.get(parts[3])
                return (200, data, "application/octet-stream") if data is not None else self._missing("file", parts[3])
            if method == "POST" and p == "/v1/batches":
                return self._create(json.loads(raw or b"{}"))
            if method == "GET" and p == "/v1/batches":  # newest first, one page
                limit = int((path.split("limit=", 1)[1].split("&")[0]) if "limit=" in path else 20)
                return 200, {"object": "list", "data": [self._obj(b) for b in reversed(self.batches.values())][:limit],
                             "has_more": False}, JSON
            if method == "GET" and len(parts) == 4 and parts[2] == "batches":
                return self._retrieve(parts[3])
        return 404, {"error": {"message": f"no route {method} {p}", "type": "invalid_request_error"}}, JSON

    @staticmethod
    def _missing(what: str, ident: str) -> tuple[int, dict, str]:
        return 404, {"error": {"message": f"No such {what}: {ident}", "type": "invalid_request_error"}}, JSON

    # ------------------------------------------------------------------ files
    def _upload(self, content_type: str, raw: bytes) -> tuple[int, dict, str]:
        msg = BytesParser(policy=HTTP).parsebytes(f"Content-Type: {content_type}\r\n\r\n".encode() + raw)
        fields = {part.get_param("name", header="content-disposition"): part.get_payload(decode=True)
                  for part in msg.iter_parts()}
        if fields.get("purpose") != b"batch" or fields.get("file") is None:
            return 400, {"error": {"message": "purpose must be 'batch', with a file", "type": "invalid_request_error"}}, JSON
        self.uploads += 1
        return 200, self._file(fields["file"]), JSON

    def _file(self, data: bytes) -> dict:
        fid = f"file-{len(self.files) + 1}"
        self.files[fid] = data
        return {"id": fid, "object": "file", "bytes": len(data), "created_at": int(time.time()),
                "filename": f"{fid}.jsonl", "purpose": "batch", "status": "processed"}

    # ------------------------------------------------------------------ batches
    def _create(self, body: dict) -> tuple[int, dict, str]:
        if body.get("input_file_id") not in self.files:
            return self._missing("file", str(body.get("input_file_id")))
        if body.get("endpoint") != "/v1/chat/completions" or body.get("completion_window") != "24h":
            return 400, {"error": {"message": "endpoint must be /v1/chat/completions, completion_window 24h",
                                   "type": "invalid_request_error"}}, JSON
        self.created += 1
        bid = f"batch_{self.created}"
        self.batches[bid] = {"id": bid, "input_file_id": body["input_file_id"], "status": "validating",
                             "metadata": body.get("metadata"), "output_file_id": None, "error_file_id": None,
                             "total": len(self.files[body["input_file_id"]].splitlines()), "completed": 0, "failed": 0,
                             "created_at": int(time.time())}
        return 200, self._obj(self.batches[bid]), JSON

    @staticmethod
    def _obj(b: dict) -> dict:
        return {"id": b["id"], "object": "batch", "endpoint": "/v1/chat/completions", "errors": None,
                "input_file_id": b["input_file_id"], "completion_window": "24h", "status": b["status"],
                "output_file_id": b["output_file_id"], "error_file_id": b["error_file_id"],
                "created_at": b["created_at"], "metadata": b["metadata"],
                "request_counts": {"total": b["total"], "completed": b["completed"], "failed": b["failed"]}}

    def _retrieve(self, bid: str) -> tuple[int, dict, str]:
        b = self.batches.get(bid)
        if b is None:
            return self._missing("batch", bid)
        self.retrieves += 1
        if b["status"] == "validating":
            b["status"] = "in_progress"
        elif b["status"] == "in_progress" and not self.hold:
            b["status"] = "finalizing"
        elif b["status"] == "finalizing":
            self._finish(b)
        return 200, self._obj(b), JSON

    def _finish(self, b: dict) -> None:
        lines = [json.loads(x) for x in self.files[b["input_file_id"]].splitlines() if x.strip()]
        expire, self.expire_next = self.expire_next, None
        fail, self.fail_next = self.fail_next, 0
        unknown, self.unknown_next = self.unknown_next, False
        cancel, self.cancel_next = self.cancel_next, None
        if cancel is not None:
            expire = cancel
        out, err = [], []
        for k, req in enumerate(lines):
            line = {"id": f"batch_req_{b['id']}_{k}", "custom_id": req["custom_id"], "error": None}
            if expire is not None and k >= expire:
                err.append({**line, "response": None,
                            "error": {"code": "batch_expired", "message": "This request could not be executed before "
                                      "the completion window expired."}})
                continue
            if k < fail:
                status, body = 500, {"error": {"message": "injected batch line failure", "type": "server_error"}}
            else:
                status, body, _ = self.fake.complete(req["body"], sleep=False)
            resp = {"status_code": status, "request_id": f"req_{b['id']}_{k}", "body": body}
            (out if status == 200 else err).append({**line, "response": resp})
        if unknown and out:
            out.append({**out[0], "id": "batch_req_unknown", "custom_id": "no-such-request:0:1"})
        out.reverse()
        to_file = lambda rows: self._file(b"".join(json.dumps(r).encode() + b"\n" for r in rows))["id"]  # noqa: E731
        b["output_file_id"] = to_file(out) if out else None
        b["error_file_id"] = to_file(err) if err else None
        b["completed"], b["failed"] = len(out), len(err)
        b["status"] = "cancelled" if cancel is not None else "expired" if expire is not None else "completed"
