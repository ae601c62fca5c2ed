"""How failures become HTTP answers: each error type has one status, a server fault is a 500 with an id.

Client errors (bad parameters, unreadable uploads) are 4xx with the reason; an algorithm or a
database that cannot serve now is 503 with the reason (and Retry-After while the database is
away); anything else is a fault of ours, logged
with its traceback and a request id that the answer carries too.
"""

from __future__ import annotations

import json
import logging
import math
import re
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from assetlib.encoders.base import EncoderError
from assetlib.media.images import ImageError, NotAnImage
from assetlib.media.mesh_prep import NothingToRender
from assetlib.media.meshes import MeshError, UnsupportedMeshFormat
from assetlib.media.render_worker import RendererCrashed, RenderTimeout
from assetlib.search.service import AlgorithmUnavailable, SearchError
from assetlib.store.db import DatabaseError
from assetlib.store.filters import FilterError
from assetlib.store.judgments import JudgmentError

log = logging.getLogger(__name__)

REQUEST_ID_HEADER = "X-Request-ID"
_HEADER_KEY = REQUEST_ID_HEADER.lower().encode()
_CLIENT_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")

# Most specific first: NotAnImage is an ImageError, UnsupportedMeshFormat a MeshError.
STATUS: tuple[tuple[type[Exception], int, str], ...] = (
    (NotAnImage, 415, ""),
    (UnsupportedMeshFormat, 415, ""),
    # A model that parses but cannot be searched by (nothing to draw, too slow to draw, crashes the
    # renderer): the file is well-formed, its content is what cannot be used.
    (NothingToRender, 422, ""),
    (RenderTimeout, 422, ""),
    (RendererCrashed, 422, ""),
    (ImageError, 400, ""),
    (MeshError, 400, ""),
    (SearchError, 422, ""),
    (FilterError, 422, ""),
    (JudgmentError, 422, ""),
    (AlgorithmUnavailable, 503, ""),
    (DatabaseError, 503, "database unavailable: "),
    (EncoderError, 503, "encoder failed: "),
)


def request_id(request: Request) -> str:
    """The id of this request (the client's X-Request-ID when it sent a sane one, else a new one)."""
    return str(getattr(request.state, "request_id", "") or "-")


def jsonable_errors(errors: Any) -> list[dict]:
    """Validation errors as plain JSON (pydantic puts exception objects in `ctx`)."""
    out = []
    for err in errors:
        item = {k: v for k, v in err.items() if k in ("loc", "msg", "type", "input")}
        if "ctx" in err:
            item["ctx"] = {k: str(v) for k, v in err["ctx"].items()}
        try:
            json.dumps(item.get("input"))
        except (TypeError, ValueError):
            item["input"] = repr(item.get("input"))[:200]
        out.append(item)
    return out


class RequestIdMiddleware:
    """Gives every request an id (the client's sane X-Request-ID, else a new one), echoed in the answer.

    Plain ASGI rather than `@app.middleware("http")`: Starlette's BaseHTTPMiddleware runs each
    request through an extra task and memory stream, which cost measurable time per search.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = next((v.decode("latin-1") for k, v in scope["headers"] if k == _HEADER_KEY), "")
        rid = given if _CLIENT_ID.match(given) else uuid.uuid4().hex[:16]
        scope.setdefault("state", {})["request_id"] = rid

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message)[REQUEST_ID_HEADER] = rid
            await send(message)

        await self.app(scope, receive, send_with_id)


def install_error_handlers(app: FastAPI) -> None:
    """Request ids on every answer, one handler per error type, and the 500 of last resort."""

    app.add_middleware(RequestIdMiddleware)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse(status_code=422, content={"detail": jsonable_errors(exc.errors())})

    def handler(status: int, prefix: str) -> Callable[[Request, Exception], Awaitable[JSONResponse]]:
        async def answer(request: Request, exc: Exception) -> JSONResponse:
            if status >= 500:
                log.warning("request %s: %d %s%s", request_id(request), status, prefix, exc)
            retry_after = getattr(exc, "retry_after", None)
            headers = {"Retry-After": str(max(1, math.ceil(retry_after)))} if retry_after else None
            return JSONResponse(status_code=status, content={"detail": f"{prefix}{exc}"}, headers=headers)

        return answer

    for error, status, prefix in STATUS:
        app.add_exception_handler(error, handler(status, prefix))

    @app.exception_handler(Exception)
    async def _fault(request: Request, exc: Exception) -> JSONResponse:
        rid = request_id(request)
        log.error("request %s: %s %s failed", rid, request.method, request.url.path, exc_info=exc)
        return JSONResponse(
            status_code=500,
            content={"detail": f"internal error ({type(exc).__name__}); request id {rid}", "request_id": rid},
            headers={REQUEST_ID_HEADER: rid},
        )
