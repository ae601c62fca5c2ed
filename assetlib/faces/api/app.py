"""REST API (FastAPI): validation and translation to and from SearchService, nothing more.

Keeps the original system's endpoints and result field names (POST /search/text,
POST /search/image, GET /health; asset_id, similarity, caption_en, caption_cn, objaverse_id,
model_url) and adds query-by-3D-model, asset pages for thumbnails, views and GLBs, and timings.
"""

import logging
import tempfile
import threading
import time
from contextlib import asynccontextmanager
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import Depends, FastAPI, File, HTTPException, Query, Request, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from pydantic import BaseModel, Field, field_validator

from assetlib import __version__
from assetlib.config import Settings, load_settings
from assetlib.encoders.base import EncoderError
from assetlib.media.images import ImageError, decode_image, to_rgb_on_white
from assetlib.media.meshes import MESH_SUFFIXES, MeshError
from assetlib.search.service import (
    MAX_QUERY_CHARS,
    AlgorithmUnavailable,
    Hit,
    SearchError,
    SearchResult,
    SearchService,
)
from assetlib.store.db import Database, DatabaseError

log = logging.getLogger(__name__)

MAX_IMAGE_BYTES = 10 * 1024 * 1024
MAX_MODEL_BYTES = 50 * 1024 * 1024


class Algorithm(StrEnum):
    """Search algorithms."""

    siglip = "siglip"
    qwen = "qwen"
    e5 = "e5"


class Language(StrEnum):
    """Query languages; auto detects Chinese by its characters."""

    auto = "auto"
    english = "english"
    chinese = "chinese"


class TextMode(StrEnum):
    """What a text query is compared with."""

    text_to_text = "text_to_text"
    text_to_image = "text_to_image"
    fused = "fused"


class ImageMode(StrEnum):
    """What an image query is compared with."""

    image_to_image = "image_to_image"
    image_to_text = "image_to_text"
    fused = "fused"


class TextQuery(BaseModel):
    """A text search, as existing clients send it (`cross_modal` picks text→image)."""

    query: str = Field(min_length=1, max_length=MAX_QUERY_CHARS, description="English or Chinese text")
    algorithm: Algorithm = Algorithm.siglip
    language: Language = Language.auto
    cross_modal: bool = Field(False, description="search renders (text→image) instead of captions")
    mode: TextMode | None = Field(None, description="overrides cross_modal; 'fused' combines both")
    top_k: int = Field(10, ge=1, le=100)
    high_quality_only: bool = False

    @field_validator("query")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("the query is empty")
        return value.strip()


class SearchHit(BaseModel):
    """One result, with the field names existing clients use plus display URLs."""

    asset_id: str
    similarity: float
    caption_en: str | None
    caption_cn: str | None
    objaverse_id: str | None
    model_url: str | None
    thumbnail_url: str | None
    view_urls: list[str]
    matched_view: int | None
    matched_language: str | None
    high_quality: bool
    matched_by: list[str]


class SearchResponse(BaseModel):
    """Results and how they were produced."""

    results: list[SearchHit]
    algorithm: str
    encoder: str
    mode: str
    language: str | None
    timings_ms: dict[str, float]


class ErrorBody(BaseModel):
    """An error a client can show: what went wrong, in words."""

    detail: Any


ERRORS = {
    400: {"model": ErrorBody, "description": "unreadable upload (corrupt image or mesh)"},
    413: {"model": ErrorBody, "description": "upload over the size limit"},
    415: {"model": ErrorBody, "description": "not an image / not a supported mesh format"},
    422: {"model": ErrorBody, "description": "invalid parameters (the valid values are listed)"},
    503: {"model": ErrorBody, "description": "algorithm or database not usable now, with the reason"},
}


def _asset_url(request: Request, asset_id: str, suffix: str = "") -> str:
    return str(request.base_url).rstrip("/") + "/assets/" + quote(asset_id, safe="/") + suffix


def _to_response(request: Request, result: SearchResult) -> SearchResponse:
    def hit(h: Hit) -> SearchHit:
        views = [_asset_url(request, h.asset_id, f"/views/{i}") for i in range(h.view_count)]
        thumb = None
        if views:
            thumb = (
                views[h.matched_view]
                if h.matched_view is not None and h.matched_view < len(views)
                else views[0]
            )
        return SearchHit(
            asset_id=h.asset_id,
            similarity=round(h.score, 6),
            caption_en=h.caption_en,
            caption_cn=h.caption_cn,
            objaverse_id=h.objaverse_uid,
            model_url=_asset_url(request, h.asset_id, "/model") if h.has_model else None,
            thumbnail_url=thumb,
            view_urls=views,
            matched_view=h.matched_view,
            matched_language=h.matched_language,
            high_quality=h.high_quality,
            matched_by=list(h.sources),
        )

    return SearchResponse(
        results=[hit(h) for h in result.hits],
        algorithm=result.algorithm,
        encoder=result.encoder,
        mode=result.mode,
        language=result.language,
        timings_ms=result.timings_ms,
    )


async def _read_capped(upload: UploadFile, limit: int) -> bytes:
    """Read an upload, refusing more than `limit` bytes without reading them all (413)."""
    data = await upload.read(limit + 1)
    if len(data) > limit:
        raise HTTPException(413, f"upload is over the {limit // (1024 * 1024)} MB limit")
    if not data:
        raise HTTPException(400, "the upload is empty")
    return data


def _prewarm(db: Database) -> None:
    """Read the ANN indexes into memory; a failure only costs speed, so it is logged, not raised."""
    from assetlib.store.schema import prewarm_indexes

    started = time.perf_counter()
    try:
        with db.connection() as conn:
            done = prewarm_indexes(conn)
    except Exception as exc:  # the API serves either way (the pool may be closing)
        log.warning("index prewarm stopped: %s", exc)
        return
    log.info(
        "prewarmed %d ANN indexes (%.0f MB) in %.1fs",
        len(done),
        sum(p.mb for p in done),
        time.perf_counter() - started,
    )


def create_app(settings: Settings | None = None, service: SearchService | None = None) -> FastAPI:
    """The FastAPI app; one SearchService (encoders, pool) shared by every request."""
    state: dict[str, SearchService] = {}

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        if service is not None:
            state["service"] = service
        else:
            resolved = settings or load_settings()
            state["service"] = SearchService(resolved, Database.open(resolved))
            # Read the ANN indexes into memory beside serving, so early queries at scale are not
            # paid for with cold reads (a test's own service skips this).
            threading.Thread(target=_prewarm, args=(state["service"].db,), daemon=True).start()
        yield
        if service is None:
            state["service"].db.close()

    app = FastAPI(
        title="assetlib",
        version=__version__,
        lifespan=lifespan,
        description="Text and image search over 3D asset libraries (SigLIP vs Qwen, pgvector).",
    )

    def get_service() -> SearchService:
        return state["service"]

    Service = Annotated[SearchService, Depends(get_service)]

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse(status_code=422, content={"detail": jsonable_errors(exc.errors())})

    def _call(fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except AlgorithmUnavailable as exc:
            raise HTTPException(503, str(exc)) from exc
        except DatabaseError as exc:
            raise HTTPException(503, f"database unavailable: {exc}") from exc
        except (ImageError, MeshError) as exc:  # before ValueError: both are ValueErrors
            raise HTTPException(400, str(exc)) from exc
        except (SearchError, ValueError) as exc:
            raise HTTPException(422, str(exc)) from exc
        except EncoderError as exc:
            raise HTTPException(503, f"encoder failed: {exc}") from exc

    @app.post("/search/text", response_model=SearchResponse, responses=ERRORS, tags=["search"])
    async def search_text(body: TextQuery, request: Request, service: Service) -> SearchResponse:
        """Search by English or Chinese text: captions (text→text), renders (text→image) or both fused."""
        mode = body.mode.value if body.mode else ("text_to_image" if body.cross_modal else "text_to_text")
        result = await run_in_threadpool(
            _call,
            service.search_text,
            body.query,
            body.algorithm.value,
            mode,
            body.language.value,
            body.top_k,
            body.high_quality_only,
        )
        return _to_response(request, result)

    @app.post("/search/image", response_model=SearchResponse, responses=ERRORS, tags=["search"])
    async def search_image(
        request: Request,
        service: Service,
        file: Annotated[UploadFile, File(description="PNG, JPEG, WEBP or BMP; up to 10 MB")],
        algorithm: Algorithm = Algorithm.siglip,
        cross_modal: Annotated[bool, Query(description="search captions (image→text)")] = False,
        mode: ImageMode | None = None,
        top_k: Annotated[int, Query(ge=1, le=100)] = 10,
        high_quality_only: bool = False,
    ) -> SearchResponse:
        """Search by an image: renders (image→image), captions (image→text) or both fused."""
        data = await _read_capped(file, MAX_IMAGE_BYTES)
        try:
            image = to_rgb_on_white(decode_image(data, max_bytes=MAX_IMAGE_BYTES))
        except ImageError as exc:
            status = 415 if "not a PNG" in str(exc) else 400
            raise HTTPException(status, str(exc)) from exc
        chosen = mode.value if mode else ("image_to_text" if cross_modal else "image_to_image")
        result = await run_in_threadpool(
            _call, service.search_images, [image], algorithm.value, chosen, top_k, high_quality_only
        )
        return _to_response(request, result)

    @app.post("/search/model", response_model=SearchResponse, responses=ERRORS, tags=["search"])
    async def search_model(
        request: Request,
        service: Service,
        file: Annotated[UploadFile, File(description="GLB, glTF, OBJ, PLY or STL; up to 50 MB")],
        algorithm: Algorithm = Algorithm.siglip,
        mode: ImageMode = ImageMode.image_to_image,
        top_k: Annotated[int, Query(ge=1, le=100)] = 10,
        high_quality_only: bool = False,
    ) -> SearchResponse:
        """Search by a 3D model: it is rendered like the library, then searched as images."""
        suffix = Path(file.filename or "").suffix.lower()
        if suffix not in MESH_SUFFIXES:
            raise HTTPException(
                415, f"unsupported mesh format {suffix or '(none)'}; use {', '.join(MESH_SUFFIXES)}"
            )
        data = await _read_capped(file, MAX_MODEL_BYTES)
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / f"upload{suffix}"
            path.write_bytes(data)
            result = await run_in_threadpool(
                _call, service.search_model, path, algorithm.value, mode.value, top_k, high_quality_only
            )
        return _to_response(request, result)

    @app.get("/health", tags=["status"])
    async def health(service: Service) -> dict:
        """Status, each algorithm (usable? loaded? stored?), database reachability, asset/vector counts."""
        try:
            counts = await run_in_threadpool(_counts, service)
            algorithms = await run_in_threadpool(service.status)
            db_ok = True
        except DatabaseError as exc:
            counts, algorithms, db_ok = {"error": str(exc)}, [], False
        return {
            "status": "ok" if db_ok else "degraded",
            "version": __version__,
            "database": db_ok,
            "counts": counts,
            "algorithms": algorithms,
        }

    @app.get("/assets/{asset_id:path}/views/{index}", responses={404: {"model": ErrorBody}}, tags=["assets"])
    async def asset_view(asset_id: str, index: int, service: Service) -> FileResponse:
        """One rendered view of an asset (PNG)."""
        record = await run_in_threadpool(_asset_record, service, asset_id)
        views = record["view_paths"]
        if not 0 <= index < len(views) or not Path(views[index]).is_file():
            raise HTTPException(404, f"asset {asset_id} has no view {index}")
        return FileResponse(views[index], media_type="image/png")

    @app.get("/assets/{asset_id:path}/model", responses={404: {"model": ErrorBody}}, tags=["assets"])
    async def asset_model(asset_id: str, service: Service) -> FileResponse:
        """The asset's mesh (GLB)."""
        record = await run_in_threadpool(_asset_record, service, asset_id)
        if not record["glb_path"] or not Path(record["glb_path"]).is_file():
            raise HTTPException(404, f"asset {asset_id} has no model file")
        return FileResponse(record["glb_path"], media_type="model/gltf-binary")

    @app.get("/assets/{asset_id:path}", responses={404: {"model": ErrorBody}}, tags=["assets"])
    async def asset(asset_id: str, request: Request, service: Service) -> dict:
        """An asset's catalog record with the URLs of its views and model."""
        record = await run_in_threadpool(_asset_record, service, asset_id)
        record["view_urls"] = [
            _asset_url(request, asset_id, f"/views/{i}") for i in range(len(record["view_paths"]))
        ]
        record["model_url"] = _asset_url(request, asset_id, "/model") if record["glb_path"] else None
        record.pop("view_paths")
        record.pop("glb_path")
        return record

    return app


def jsonable_errors(errors: Any) -> list[dict]:
    """Validation errors as plain JSON (pydantic puts exception objects in `ctx`)."""
    out = []
    for err in errors:
        item = {k: v for k, v in err.items() if k in ("loc", "msg", "type", "input")}
        if "ctx" in err:
            item["ctx"] = {k: str(v) for k, v in err["ctx"].items()}
        try:
            import json

            json.dumps(item.get("input"))
        except (TypeError, ValueError):
            item["input"] = repr(item.get("input"))[:200]
        out.append(item)
    return out


def _counts(service: SearchService) -> dict:
    from psycopg import sql

    from assetlib.store.schema import VectorKind, list_encoders

    with service.db.connection() as conn:
        assets = conn.execute("SELECT count(*) FROM assets").fetchone()[0]
        vectors = {
            tables.name: sum(
                conn.execute(sql.SQL("SELECT count(*) FROM {}").format(tables.ident(kind))).fetchone()[0]
                for kind in VectorKind
            )
            for tables in list_encoders(conn)
        }
    return {"assets": assets, "vectors": vectors}


def _asset_record(service: SearchService, asset_id: str) -> dict:
    with service.db.connection() as conn:
        row = conn.execute(
            """SELECT asset_id, objaverse_uid, caption_en, caption_cn, view_count, view_paths, glb_path,
                      high_quality, tags, attributes FROM assets WHERE asset_id = %s""",
            (asset_id,),
        ).fetchone()
    if row is None:
        raise HTTPException(404, f"no asset {asset_id!r}")
    keys = [
        "asset_id",
        "objaverse_id",
        "caption_en",
        "caption_cn",
        "view_count",
        "view_paths",
        "glb_path",
        "high_quality",
        "tags",
        "attributes",
    ]
    return dict(zip(keys, row, strict=True))


def app_from_environment() -> FastAPI:
    """Factory for `uvicorn --factory assetlib.faces.api.app:app_from_environment`."""
    return create_app()
