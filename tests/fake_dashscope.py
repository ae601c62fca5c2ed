"""A local fake DashScope server: a real HTTP server speaking the multimodal-embedding wire format.

It can be scripted to answer 429, 5xx, 4xx, a time-out or a malformed body, and records every
request so tests can check what the client sent. Embeddings are deterministic functions of the
content, so the same text or image always gets the same vector. `limit(n, window)` makes it enforce
a sliding-window rate limit the way DashScope answers one (429 `Throttling.RateQuota`); `latency`
holds every answer back, and it counts requests received, answered and throttled and the most
in flight at once.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler

import numpy as np
from servers import LoopbackHTTPServer

from assetlib.model_specs import QWEN_MODELS

EMBEDDING_PATH = "/api/v1/services/embeddings/multimodal-embedding/multimodal-embedding"
# What DashScope answers when an account's requests per minute are spent (HTTP 429).
RATE_QUOTA = ("Throttling.RateQuota", "Requests rate limit exceeded, please try again later.")


@dataclass
class Scripted:
    """One scripted answer: an HTTP status with an error code, a delay, or a malformed body."""

    status: int = 200
    code: str = ""
    message: str = ""
    delay: float = 0.0
    malformed: bool = False
    zero: bool = False


@dataclass
class FakeDashScope:
    """State shared with the request handler."""

    dim: int = 64
    script: deque = field(default_factory=deque)
    requests: list = field(default_factory=list)
    headers: list = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    poison: str | None = None  # any request whose body contains this string gets a 500
    uploads: list = field(default_factory=list)  # any request for an upload policy or a file upload
    latency: float = 0.0  # seconds every embedding request waits before its answer
    rate_limit: tuple[int, float] | None = None  # at most n requests answered in any `window` seconds
    clock: Callable[[], float] = time.monotonic
    admitted: deque = field(default_factory=deque)  # when the requests in the current window came
    received: int = 0
    answered: int = 0  # 200s
    throttled: int = 0  # 429s of the rate limit (scripted ones not counted)
    in_flight: int = 0
    max_in_flight: int = 0

    def limit(self, count: int, window: float = 60.0) -> FakeDashScope:
        """Enforce at most `count` admitted requests in any sliding `window` seconds; others get 429.
        Throttled requests do not count against the window."""
        self.rate_limit = (count, window)
        return self

    def _admit(self) -> bool:
        """Whether the rate limit lets one more request through now (call under the lock)."""
        if self.rate_limit is None:
            return True
        count, window = self.rate_limit
        now = self.clock()
        while self.admitted and self.admitted[0] <= now - window:
            self.admitted.popleft()
        if len(self.admitted) >= count:
            return False
        self.admitted.append(now)
        return True

    def vector(self, content: dict) -> list[float]:
        """A deterministic unit vector for one content item."""
        seed = int.from_bytes(
            hashlib.sha256(json.dumps(content, sort_keys=True).encode()).digest()[:8], "little"
        )
        v = np.random.default_rng(seed).normal(size=self.dim)
        return (v / np.linalg.norm(v)).round(6).tolist()

    def then(self, *answers: Scripted) -> FakeDashScope:
        """Queue scripted answers for the next requests (then back to 200s)."""
        self.script.extend(answers)
        return self


ALWAYS_FUSED = {name for name, spec in QWEN_MODELS.items() if spec.fusion == "always"}


def refusal(payload: dict) -> str | None:
    """Why the provider answers 400 to a request (its documented limits per model), or None."""
    model, parameters = payload.get("model", ""), payload.get("parameters", {})
    spec = QWEN_MODELS.get(model)
    if spec is None:
        return f"Model not exist: {model}"
    contents = payload["input"]["contents"]
    if len(contents) > spec.max_items:
        return f"too many contents: {len(contents)} > {spec.max_items}"
    if "dimension" in parameters and parameters["dimension"] not in spec.dims:
        return f"dimension {parameters['dimension']} not supported by {model}"
    if parameters.get("enable_fusion") and spec.fusion != "enable_fusion":
        return f"enable_fusion is not supported by {model}"
    if "instruct" in parameters and not spec.instruct:
        return f"instruct is not supported by {model}"
    for item in contents:
        if "multi_images" in item and spec.fusion != "multi_images":
            return f"multi_images is not supported by {model}"
        images = item.get("multi_images") or ([item["image"]] if "image" in item else [])
        if len(images) > spec.max_fused_images:
            return f"at most {spec.max_fused_images} images in one item"
        for image in images:
            if len(image) > spec.max_image_bytes:
                return f"image too large: {len(image)} bytes > {spec.max_image_bytes}"
    return None


def _handler(state: FakeDashScope) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:  # keep test output quiet
            pass

        def _send(self, status: int, body: bytes) -> None:
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (a scripted time-out)

        def do_GET(self) -> None:
            # The SDK asks `…/uploads?action=getPolicy` before it uploads a local file to OSS.
            with state.lock:
                state.uploads.append(self.path)
            self._send(403, json.dumps({"code": "Forbidden", "message": "no uploads here"}).encode())

        def do_POST(self) -> None:
            with state.lock:
                state.in_flight += 1
                state.max_in_flight = max(state.max_in_flight, state.in_flight)
            try:
                self._post()
            finally:
                with state.lock:
                    state.in_flight -= 1

        def _post(self) -> None:
            length = int(self.headers.get("Content-Length", 0))
            raw = self.rfile.read(length) or b"{}"
            if "upload" in self.path:
                with state.lock:
                    state.uploads.append(self.path)
                self._send(403, b'{"code": "Forbidden", "message": "no uploads here"}')
                return
            payload = json.loads(raw)
            request_id = str(uuid.uuid4())
            with state.lock:
                state.requests.append(payload)
                state.headers.append(dict(self.headers))
                state.received += 1
                answer = state.script.popleft() if state.script else Scripted()
                if state.poison is not None and state.poison in json.dumps(payload):
                    answer = Scripted(500, "InternalError", "poisoned content")
                if answer.status == 200 and not state._admit():
                    answer = Scripted(429, *RATE_QUOTA)
                    state.throttled += 1
            if answer.delay or state.latency:
                time.sleep(answer.delay or state.latency)
            if self.path != EMBEDDING_PATH:
                self._send(
                    404,
                    json.dumps({"code": "NotFound", "message": self.path, "request_id": request_id}).encode(),
                )
                return
            if answer.status != 200:
                body = {
                    "code": answer.code or "Error",
                    "message": answer.message or "scripted error",
                    "request_id": request_id,
                }
                self._send(answer.status, json.dumps(body).encode())
                return
            if answer.malformed:
                self._send(200, b'{"output": {"embeddings": [{"index": 0, "embedd')
                return
            contents = payload["input"]["contents"]
            refused = refusal(payload)
            if refused:
                body = {"code": "InvalidParameter", "message": refused, "request_id": request_id}
                self._send(400, json.dumps(body).encode())
                return
            parameters = payload.get("parameters", {})
            if parameters.get("enable_fusion") or payload["model"] in ALWAYS_FUSED:
                contents = [{"fused": contents}]  # every item of the request in one vector
            embeddings = [
                {
                    "index": i,
                    "embedding": [0.0] * state.dim if answer.zero else state.vector(c),
                    "type": next(iter(c)),
                }
                for i, c in enumerate(contents)
            ]
            body = {
                "output": {"embeddings": embeddings},
                "usage": {"input_tokens": 10, "image_count": sum("image" in k for c in contents for k in c)},
                "request_id": request_id,
            }
            with state.lock:
                state.answered += 1
            self._send(200, json.dumps(body).encode())

    return Handler


class FakeDashScopeServer:
    """Context manager running the fake on 127.0.0.1:<free port>."""

    def __init__(self, dim: int = 64) -> None:
        self.state = FakeDashScope(dim=dim)
        self.http = LoopbackHTTPServer(_handler(self.state))

    @property
    def base_url(self) -> str:
        """The SDK's base_http_api_url for this server."""
        return f"http://127.0.0.1:{self.http.port}/api/v1"

    def __enter__(self) -> FakeDashScopeServer:
        self.http.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.http.__exit__(*exc)
