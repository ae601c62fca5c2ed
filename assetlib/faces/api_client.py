"""A small HTTP client for the assetlib REST API: what the dashboard uses instead of loading models."""

from __future__ import annotations

import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx

log = logging.getLogger(__name__)

DEFAULT_API_URL = "http://127.0.0.1:8000"


class ApiError(RuntimeError):
    """A failed API call, in words a user can act on; `status` is the HTTP status (None: no answer).

    `retry_after` (seconds) is set when the server said the failure is passing (503 + Retry-After:
    its database is away and being recovered).
    """

    def __init__(self, message: str, status: int | None = None, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


def _retry_after(response: httpx.Response) -> float | None:
    try:
        return float(response.headers["Retry-After"])
    except (KeyError, ValueError):
        return None  # absent, or an HTTP date (the API sends seconds)


def api_url_from_environment(explicit: str | None = None) -> str:
    """The API's base URL: the argument, else $ASSETLIB_API_URL, else the local default."""
    return (explicit or os.environ.get("ASSETLIB_API_URL") or DEFAULT_API_URL).rstrip("/")


def _detail(response: httpx.Response) -> str:
    """The server's own explanation of an error (FastAPI `detail`, string or validation list)."""
    try:
        detail = response.json().get("detail")
    except ValueError:
        return response.text[:300] or response.reason_phrase
    if isinstance(detail, list):
        parts = []
        for item in detail:
            where = ".".join(str(p) for p in item.get("loc", [])[1:]) or "request"
            parts.append(f"{where}: {item.get('msg', item)}")
        return "; ".join(parts)
    return str(detail)


class ApiClient:
    """Calls the API's search, health and asset endpoints; raises ApiError with the server's reason."""

    def __init__(self, base_url: str | None = None, timeout: float = 120.0) -> None:
        self.base_url = api_url_from_environment(base_url)
        self._http = httpx.Client(base_url=self.base_url, timeout=timeout)
        self._pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="assetlib-fetch")

    def close(self) -> None:
        """Close connections and the fetch pool."""
        self._http.close()
        self._pool.shutdown(wait=False)

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        started = time.perf_counter()
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TimeoutException as exc:
            raise ApiError(f"the search API at {self.base_url} did not answer in time ({exc})") from exc
        except httpx.HTTPError as exc:
            raise ApiError(
                f"the search API at {self.base_url} is not reachable ({exc}); start it with "
                "`assetlib serve api` (or `assetlib serve dashboard`, which starts both)"
            ) from exc
        log.debug(
            "%s %s → %d in %.0f ms",
            method,
            path,
            response.status_code,
            1000 * (time.perf_counter() - started),
        )
        if response.status_code >= 400:
            raise ApiError(_detail(response), response.status_code, _retry_after(response))
        return response

    def health(self) -> dict:
        """GET /health: database state, counts, and every algorithm with its usability."""
        return self._request("GET", "/health").json()

    def search_text(self, query: str, **options: Any) -> dict:
        """POST /search/text; options: algorithm, mode, language, top_k, high_quality_only."""
        return self._request("POST", "/search/text", json={"query": query, **options}).json()

    def compare(self, query: str, a: dict, b: dict, **options: Any) -> dict:
        """POST /search/compare: the same query on two sides (algorithm, mode, layout), with overlap@k."""
        body = {"query": query, "a": a, "b": b, **options}
        return self._request("POST", "/search/compare", json=body).json()

    def judge(self, mark: dict) -> dict:
        """POST /judgments: mark a result relevant or not (a second mark on it replaces the first)."""
        return self._request("POST", "/judgments", json=mark).json()

    def unjudge(self, mark: dict) -> bool:
        """DELETE /judgments: take a mark back; whether there was one."""
        return bool(self._request("DELETE", "/judgments", json=mark).json().get("deleted"))

    def judgments(self, query: str | None = None) -> list[dict]:
        """GET /judgments: every mark, or one query's."""
        return self._request("GET", "/judgments", params={"query": query} if query else None).json()

    def judged_precision(self) -> list[dict]:
        """GET /judgments/precision: judged precision per algorithm and mode."""
        return self._request("GET", "/judgments/precision").json()

    def judgments_export(self, fmt: str = "csv") -> bytes:
        """GET /judgments/export: the judged results as csv, rows (JSON) or glb-list."""
        return self._request("GET", "/judgments/export", params={"format": fmt}).content

    def search_upload(self, kind: str, name: str, data: bytes, **options: Any) -> dict:
        """POST /search/image or /search/model with an uploaded file; kind is 'image' or 'model'."""
        if kind not in ("image", "model"):
            raise ValueError(f"unknown upload kind {kind!r}; valid: image, model")
        params = {k: (str(v).lower() if isinstance(v, bool) else v) for k, v in options.items()}
        return self._request("POST", f"/search/{kind}", params=params, files={"file": (name, data)}).json()

    def fetch(self, url: str) -> bytes:
        """The bytes behind an asset URL the API returned (view PNG, GLB)."""
        return self._request("GET", url).content

    def fetch_many(self, urls: list[str]) -> list[bytes | None]:
        """Fetch several URLs at once (thumbnails); a failed one is None and is logged."""

        def one(url: str) -> bytes | None:
            try:
                return self.fetch(url)
            except ApiError as exc:
                log.warning("could not fetch %s: %s", url, exc)
                return None

        return list(self._pool.map(one, urls))
