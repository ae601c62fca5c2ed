"""A local fake of DashScope's OpenAI-compatible Batch API (files, batches, output and error files).

A real HTTP server the `openai` SDK talks to. Batches advance one status per poll
(validating → in_progress → finalizing → completed), or end failed or expired as scripted, and
the server counts every translation it delivers so tests can prove nothing was paid for twice.
"""

from __future__ import annotations

import email.parser
import email.policy
import hashlib
import json
import re
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler

from servers import LoopbackHTTPServer

WORDS = "红蓝绿黄白黑木金属椅桌车灯杯瓶树屋人猫狗鸟船飞机模型小大圆方高矮长短"


def fake_translation(english: str) -> str:
    """A deterministic 'Chinese translation': one character per English word."""
    words = re.findall(r"[A-Za-z]+", english) or ["x"]
    return "一个" + "".join(WORDS[int(hashlib.md5(w.encode()).hexdigest(), 16) % len(WORDS)] for w in words)


@dataclass
class FakeBatchApi:
    """Server state and scripting."""

    outcomes: list[str] = field(default_factory=list)  # per created batch, in order: complete|fail|expire
    bad_once: set[str] = field(default_factory=set)  # ids answered with an error line the first time
    always_bad: set[str] = field(default_factory=set)  # ids answered with an error line every time
    english_once: set[str] = field(default_factory=set)  # ids answered in English once (refused)
    files: dict[str, dict] = field(default_factory=dict)
    batches: dict[str, dict] = field(default_factory=dict)
    delivered: Counter = field(default_factory=Counter)  # translations delivered per custom_id
    seen_bad: set[str] = field(default_factory=set)
    chat_script: list[int] = field(default_factory=list)  # statuses for the next chat requests (429, 500…)
    uploads: int = 0
    requests: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add_file(self, data: bytes, filename: str, purpose: str) -> dict:
        """Store a file; its API object."""
        file_id = f"file-{uuid.uuid4().hex[:12]}"
        self.files[file_id] = {"data": data, "filename": filename, "purpose": purpose}
        return self.file_object(file_id)

    def file_object(self, file_id: str) -> dict:
        """The API object of a stored file."""
        f = self.files[file_id]
        return {
            "id": file_id,
            "object": "file",
            "bytes": len(f["data"]),
            "created_at": int(time.time()),
            "filename": f["filename"],
            "purpose": f["purpose"],
            "status": "processed",
        }

    def create_batch(self, body: dict) -> dict:
        """A new batch, its outcome taken from the script."""
        batch_id = f"batch_{uuid.uuid4().hex[:12]}"
        outcome = self.outcomes[len(self.batches)] if len(self.batches) < len(self.outcomes) else "complete"
        lines = [json.loads(x) for x in self.files[body["input_file_id"]]["data"].decode().splitlines() if x]
        self.batches[batch_id] = {
            "id": batch_id,
            "object": "batch",
            "endpoint": body["endpoint"],
            "errors": None,
            "input_file_id": body["input_file_id"],
            "completion_window": body["completion_window"],
            "status": "validating",
            "output_file_id": None,
            "error_file_id": None,
            "created_at": int(time.time()),
            "request_counts": {"total": len(lines), "completed": 0, "failed": 0},
            "metadata": body.get("metadata") or {},
            "_outcome": outcome,
            "_polls": 0,
            "_lines": lines,
        }
        return self.public(batch_id)

    def public(self, batch_id: str) -> dict:
        """A batch as the API shows it."""
        return {k: v for k, v in self.batches[batch_id].items() if not k.startswith("_")}

    def advance(self, batch_id: str) -> dict:
        """One poll: move the batch one step along its scripted path."""
        batch = self.batches[batch_id]
        if batch["status"] in ("completed", "failed", "expired", "cancelled"):
            return self.public(batch_id)
        batch["_polls"] += 1
        outcome, polls = batch["_outcome"], batch["_polls"]
        if outcome == "fail" and polls >= 2:
            batch["status"] = "failed"
            batch["errors"] = {
                "object": "list",
                "data": [{"code": "server_error", "message": "scripted failure"}],
            }
        elif outcome == "expire" and polls >= 3:
            self._finish(batch, batch["_lines"][: len(batch["_lines"]) // 2])
            batch["status"] = "expired"
        elif outcome == "complete" and polls >= 4:
            self._finish(batch, batch["_lines"])
            batch["status"] = "completed"
        else:
            batch["status"] = ["validating", "in_progress", "in_progress", "finalizing"][min(polls, 3)]
        return self.public(batch_id)

    def _finish(self, batch: dict, lines: list[dict]) -> None:
        outputs, errors = [], []
        for line in lines:
            cid = line["custom_id"]
            caption = line["body"]["messages"][-1]["content"].rsplit("Translate: ", 1)[-1]
            if cid in self.always_bad or (cid in self.bad_once and cid not in self.seen_bad):
                self.seen_bad.add(cid)
                errors.append(
                    {
                        "id": f"req-{uuid.uuid4().hex[:8]}",
                        "custom_id": cid,
                        "response": {
                            "status_code": 400,
                            "body": {"error": {"message": "scripted bad request"}},
                        },
                        "error": {"code": "InvalidParameter", "message": "scripted bad request"},
                    }
                )
                continue
            english = cid in self.english_once and cid not in self.seen_bad
            if english:
                self.seen_bad.add(cid)
            content = caption if english else fake_translation(caption)
            if not english:
                self.delivered[cid] += 1
            outputs.append(
                {
                    "id": f"req-{uuid.uuid4().hex[:8]}",
                    "custom_id": cid,
                    "response": {
                        "status_code": 200,
                        "request_id": uuid.uuid4().hex,
                        "body": {
                            "id": f"chatcmpl-{uuid.uuid4().hex[:8]}",
                            "object": "chat.completion",
                            "model": line["body"]["model"],
                            "choices": [
                                {
                                    "index": 0,
                                    "message": {"role": "assistant", "content": content},
                                    "finish_reason": "stop",
                                }
                            ],
                        },
                    },
                    "error": None,
                }
            )
        if outputs:
            data = "\n".join(json.dumps(o, ensure_ascii=False) for o in outputs).encode()
            batch["output_file_id"] = self.add_file(data, "output.jsonl", "batch_output")["id"]
        if errors:
            data = "\n".join(json.dumps(e) for e in errors).encode()
            batch["error_file_id"] = self.add_file(data, "errors.jsonl", "batch_output")["id"]
        batch["request_counts"].update(completed=len(outputs), failed=len(errors))


class _Handler(BaseHTTPRequestHandler):
    api: FakeBatchApi

    def log_message(self, *args: object) -> None:  # keep test output clean
        pass

    def _send(self, status: int, body: bytes | dict, content_type: str = "application/json") -> None:
        data = json.dumps(body).encode() if isinstance(body, dict) else body
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _authorised(self) -> bool:
        if not self.headers.get("Authorization", "").startswith("Bearer "):
            self._send(401, {"error": {"message": "missing API key"}})
            return False
        return True

    def do_GET(self) -> None:
        if not self._authorised():
            return
        api, path = self.api, self.path.split("?", 1)[0].removeprefix("/v1")
        with api.lock:
            api.requests.append(f"GET {path}")
            if m := re.fullmatch(r"/files/([^/]+)/content", path):
                if m[1] not in api.files:
                    return self._send(404, {"error": {"message": "no such file"}})
                return self._send(200, api.files[m[1]]["data"], "application/octet-stream")
            if m := re.fullmatch(r"/batches/([^/]+)", path):
                if m[1] not in api.batches:
                    return self._send(404, {"error": {"message": "no such batch"}})
                return self._send(200, api.advance(m[1]))
            if path == "/batches":
                data = [api.public(b) for b in reversed(list(api.batches))]
                first, last = (data[0]["id"], data[-1]["id"]) if data else (None, None)
                return self._send(
                    200,
                    {"object": "list", "data": data, "first_id": first, "last_id": last, "has_more": False},
                )
        self._send(404, {"error": {"message": f"unknown path {path}"}})

    def do_POST(self) -> None:
        if not self._authorised():
            return
        api, path = self.api, self.path.split("?", 1)[0].removeprefix("/v1")
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        with api.lock:
            api.requests.append(f"POST {path}")
            if path == "/files":
                message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
                    b"Content-Type: " + self.headers["Content-Type"].encode() + b"\r\n\r\n" + body
                )
                parts = {p.get_param("name", header="content-disposition"): p for p in message.iter_parts()}
                upload = parts["file"]
                api.uploads += 1
                return self._send(
                    200,
                    api.add_file(
                        upload.get_payload(decode=True),
                        upload.get_filename(),
                        parts["purpose"].get_content().strip(),
                    ),
                )
            if path == "/chat/completions":
                if api.chat_script:
                    status = api.chat_script.pop(0)
                    return self._send(
                        status, {"error": {"message": f"scripted {status}", "code": str(status)}}
                    )
                request = json.loads(body)
                caption = request["messages"][-1]["content"].rsplit("Translate: ", 1)[-1]
                message = {"role": "assistant", "content": fake_translation(caption)}
                return self._send(
                    200,
                    {
                        "id": f"chatcmpl-{uuid.uuid4().hex[:8]}",
                        "object": "chat.completion",
                        "created": int(time.time()),
                        "model": request["model"],
                        "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
                    },
                )
            if path == "/batches":
                request = json.loads(body)
                if request.get("input_file_id") not in api.files:
                    return self._send(400, {"error": {"message": "unknown input_file_id"}})
                return self._send(200, api.create_batch(request))
        self._send(404, {"error": {"message": f"unknown path {path}"}})


class FakeBatchServer:
    """Serve a FakeBatchApi on a free loopback port; `base_url` is the OpenAI-compatible root."""

    def __init__(self, api: FakeBatchApi | None = None) -> None:
        self.api = api or FakeBatchApi()
        self.http = LoopbackHTTPServer(type("Handler", (_Handler,), {"api": self.api}))

    @property
    def base_url(self) -> str:
        """Where the SDK's base_url should point."""
        return f"http://127.0.0.1:{self.http.port}/v1"

    def __enter__(self) -> FakeBatchServer:
        self.http.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.http.__exit__(*exc)
