"""A local fake Hugging Face Hub: enough of its HTTP API for huggingface_hub's download path.

It serves model repos published from local folders at a fixed commit, for `snapshot_download` and
`hf_hub_download` (pass `endpoint=hub.endpoint`). What huggingface_hub 2.4 asks for:
- GET /api/models/{repo}/revision/{rev}: the repo info, read for its `sha` (the commit);
- GET /api/models/{repo}/tree/{commit}?recursive=True: the file listing, filtered by allow_patterns;
- HEAD then GET /{repo}/resolve/{rev}/{file}: X-Repo-Commit, ETag and Content-Length, then the bytes.
No Xet headers (X-Xet-Hash) or tree `xetHash` fields are sent, so the library never tries Xet and
downloads over plain HTTP. Errors carry X-Error-Code, from which it raises RepositoryNotFoundError,
RevisionNotFoundError or RemoteEntryNotFoundError. Every request is recorded for tests to check.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from urllib.parse import unquote, urlsplit

from servers import LoopbackHTTPServer

_REPO = r"(?P<repo>[^/]+(?:/[^/]+)?)"  # "name" or "namespace/name"
_INFO = re.compile(rf"^/api/models/{_REPO}(?:/revision/(?P<rev>[^/]+))?$")
_TREE = re.compile(rf"^/api/models/{_REPO}/tree/(?P<rev>[^/]+)(?:/(?P<sub>.+))?$")
_RESOLVE = re.compile(rf"^/{_REPO}/resolve/(?P<rev>[^/]+)/(?P<file>.+)$")
_LAST_MODIFIED = "2024-01-01T00:00:00.000Z"


@dataclass(frozen=True)
class _Repo:
    """One published repo: its commit and its files (relative posix path → bytes)."""

    sha: str
    files: dict[str, bytes]


def _git_blob_id(data: bytes) -> str:
    """The git object id of a file, as the Hub reports it (`oid`, `ETag` of regular files)."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


class FakeHub:
    """A fake Hub on a free loopback port; `with FakeHub() as hub:` serves at `hub.endpoint`."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str]] = []  # (method, unquoted path without query)
        self.down = False  # True: every request answers 503, as a hub in an outage
        self.delay = 0.0  # seconds before each answer, as a hub behind a slow or dropping link
        self._repos: dict[str, _Repo] = {}
        self._lock = threading.Lock()
        self._server = LoopbackHTTPServer(_handler(self))

    @property
    def endpoint(self) -> str:
        """The base URL, for `endpoint=` or HF_ENDPOINT."""
        return f"http://127.0.0.1:{self._server.port}"

    def __enter__(self) -> FakeHub:
        self._server.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.__exit__(*exc)

    def add_repo(self, repo_id: str, folder: Path) -> str:
        """Publish every file under `folder` as model repo `repo_id`; return its deterministic commit sha."""
        files = {
            path.relative_to(folder).as_posix(): path.read_bytes()
            for path in sorted(Path(folder).rglob("*"))
            if path.is_file()
        }
        digest = hashlib.sha1(repo_id.encode())
        for name, data in files.items():
            digest.update(f"\0{name}\0{len(data)}\0".encode() + data)
        repo = _Repo(digest.hexdigest(), files)
        with self._lock:
            self._repos[repo_id] = repo
        return repo.sha

    def record(self, method: str, path: str) -> None:
        """Note one request (called by the handler threads)."""
        with self._lock:
            self.requests.append((method, path))

    def lookup(self, repo_id: str, revision: str | None) -> _Repo | str:
        """The repo at a revision ("main" or its commit), or the X-Error-Code saying why not."""
        with self._lock:
            repo = self._repos.get(repo_id)
        if repo is None:
            return "RepoNotFound"
        if revision not in (None, "main", repo.sha):
            return "RevisionNotFound"
        return repo


def _handler(hub: FakeHub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:  # keep test output quiet
            pass

        def do_GET(self) -> None:
            self._answer(body=True)

        def do_HEAD(self) -> None:
            self._answer(body=False)

        def _answer(self, body: bool) -> None:
            path = unquote(urlsplit(self.path).path)
            hub.record(self.command, path)
            if hub.delay:
                time.sleep(hub.delay)
            if hub.down:
                self._json(503, {"error": "Service Unavailable"}, body)
            elif match := _RESOLVE.match(path):
                self._resolve(match["repo"], unquote(match["rev"]), match["file"], body)
            elif match := _TREE.match(path):
                self._tree(match["repo"], unquote(match["rev"]), match["sub"], body)
            elif match := _INFO.match(path):
                self._info(match["repo"], match["rev"] and unquote(match["rev"]), body)
            else:
                self._error(404, "RepoNotFound", f"no route {path}", body)

        def _info(self, repo_id: str, revision: str | None, body: bool) -> None:
            repo = hub.lookup(repo_id, revision)
            if isinstance(repo, str):
                self._error(404, repo, f"{repo_id}@{revision}", body)
                return
            info = {
                "_id": repo.sha[:24],
                "id": repo_id,
                "modelId": repo_id,
                "author": repo_id.split("/")[0] if "/" in repo_id else None,
                "sha": repo.sha,
                "lastModified": _LAST_MODIFIED,
                "createdAt": _LAST_MODIFIED,
                "private": False,
                "gated": False,
                "disabled": False,
                "downloads": 0,
                "likes": 0,
                "tags": [],
                "siblings": [{"rfilename": name} for name in repo.files],
            }
            self._json(200, info, body)

        def _tree(self, repo_id: str, revision: str, sub: str | None, body: bool) -> None:
            # Always the recursive listing of files (snapshot_download asks for recursive=True and
            # keeps only files); a single page, so no `Link: rel="next"` header.
            repo = hub.lookup(repo_id, revision)
            if isinstance(repo, str):
                self._error(404, repo, f"{repo_id}@{revision}", body)
                return
            prefix = f"{sub.rstrip('/')}/" if sub else ""
            entries = [
                {"type": "file", "oid": _git_blob_id(data), "size": len(data), "path": name}
                for name, data in repo.files.items()
                if name.startswith(prefix)
            ]
            if sub and not entries:
                self._error(404, "EntryNotFound", f"{repo_id}: {sub}", body, repo.sha)
                return
            self._json(200, entries, body)

        def _resolve(self, repo_id: str, revision: str, filename: str, body: bool) -> None:
            repo = hub.lookup(repo_id, revision)
            if isinstance(repo, str):
                self._error(404, repo, f"{repo_id}@{revision}", body)
                return
            data = repo.files.get(filename)
            if data is None:
                # X-Repo-Commit lets the library cache the file's absence (.no_exist/<commit>/<file>).
                self._error(404, "EntryNotFound", f"{repo_id}: {filename}", body, repo.sha)
                return
            # A 200 with the bytes, not the real Hub's 302 to a CDN: without a Location the library
            # downloads from the /resolve URL itself. ETag names the blob in the cache.
            self._send(
                200,
                data,
                body,
                {
                    "Content-Type": "application/octet-stream",
                    "ETag": f'"{_git_blob_id(data)}"',
                    "X-Repo-Commit": repo.sha,
                },
            )

        def _error(self, status: int, code: str, message: str, body: bool, commit: str | None = None) -> None:
            headers = {"X-Error-Code": code, "X-Error-Message": f"{code}: {message}"}
            if commit is not None:
                headers["X-Repo-Commit"] = commit
            self._json(status, {"error": f"{code}: {message}"}, body, headers)

        def _json(self, status: int, payload: object, body: bool, headers: dict | None = None) -> None:
            data = json.dumps(payload).encode()
            self._send(status, data, body, {"Content-Type": "application/json", **(headers or {})})

        def _send(self, status: int, data: bytes, body: bool, headers: dict) -> None:
            try:
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                # HEAD answers carry the length of the body a GET would send: the library reads the
                # expected file size from it.
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if body:
                    self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up

    return Handler
