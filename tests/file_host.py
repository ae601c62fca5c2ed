"""A local HTTP host of files standing in for a remote GLB host: ranges, scripted failures, CORS."""

from __future__ import annotations

import socket
import struct
import threading
from http.server import BaseHTTPRequestHandler

from servers import LoopbackHTTPServer


def glb(seed: int, size: int = 5000) -> bytes:
    """A GLB-looking payload: magic, version 2, total length, then filler (no parser reads it)."""
    body = bytes((seed * 31 + i * 7) % 251 for i in range(size - 12))
    return b"glTF" + struct.pack("<II", 2, size) + body


class FakeFiles:
    """Files served by path with Range support; per-path scripts override the first requests."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.scripts: dict[str, list[tuple]] = {}
        self.requests: list[tuple[str, str | None]] = []  # (path, Range header)
        self.lock = threading.Lock()
        self.stopped = False
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                owner.handle(self)

        self.http = LoopbackHTTPServer(Handler)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.http.port}{path}"

    def count(self, path: str) -> int:
        return sum(1 for p, _ in self.requests if p == path)

    def __enter__(self) -> FakeFiles:
        self.http.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        """Stop listening (a browser then gets connection refused); a second stop does nothing."""
        if not self.stopped:
            self.stopped = True
            self.http.__exit__(None, None, None)

    def handle(self, req: BaseHTTPRequestHandler) -> None:
        if self.stopped:  # a kept-alive connection outlives the listener: hang up on it too
            req.close_connection = True
            req.connection.shutdown(socket.SHUT_RDWR)
            return
        path, ranged = req.path, req.headers.get("Range")
        with self.lock:
            self.requests.append((path, ranged))
            script = self.scripts.get(path)
            action = script.pop(0) if script else None
        data = self.files.get(path)
        if action is not None and action[0] == "status":
            _, code, body, headers = action
            self.send(req, code, body, headers)
        elif action is not None and action[0] == "drop":  # promise the whole file, send n bytes, hang up
            assert data is not None
            req.send_response(200)
            req.send_header("Content-Length", str(len(data)))
            req.end_headers()
            req.wfile.write(data[: action[1]])
            req.wfile.flush()
            req.connection.shutdown(socket.SHUT_RDWR)
            req.close_connection = True
        elif data is None:
            self.send(req, 404, b"not found", {})
        elif (action is not None and action[0] == "ignore-range") or not ranged:
            self.send(req, 200, data, {})
        else:
            start = int(ranged.removeprefix("bytes=").split("-")[0])
            if start >= len(data):
                self.send(req, 416, b"", {"Content-Range": f"bytes */{len(data)}"})
            else:
                rng = f"bytes {start}-{len(data) - 1}/{len(data)}"
                self.send(req, 206, data[start:], {"Content-Range": rng})

    @staticmethod
    def send(req: BaseHTTPRequestHandler, code: int, body: bytes, headers: dict[str, str]) -> None:
        req.send_response(code)
        req.send_header("Access-Control-Allow-Origin", "*")  # a browser's viewer loads from it
        for key, value in headers.items():
            req.send_header(key, value)
        req.send_header("Content-Length", str(len(body)))
        req.end_headers()
        req.wfile.write(body)
