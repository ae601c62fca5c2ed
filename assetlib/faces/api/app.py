"""REST API (FastAPI): validation and translation to and from SearchService, nothing more.

Keeps the original system's endpoints and result field names (POST /search/text,
POST /search/image, GET /health; asset_id, similarity, caption_en, caption_cn, objaverse_id,
model_url) and adds query-by-3D-model, asset pages for thumbnails, views and GLBs, and timings.
Errors become answers in `errors.py`.
"""

import logging
import tempfile
import threading
import time
from collections.abc import AsyncIterator  # (no __future__ annotations: FastAPI reads these at runtime)
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, FastAPI, File, HTTPException, Query, Request, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, Response

from assetlib import __version__
from assetlib.config import Settings, load_settings
from assetlib.faces.api.errors import install_error_handlers
from assetlib.faces.api.export import ExportFormat, export_content, export_response
from assetlib.faces.api.judgments import add_judgment_routes
from assetlib.faces.api.links import asset_url, model_link
from assetlib.faces.api.schemas import (
    ERRORS,
    NOT_FOUND,
    SERVER_FAULT,
    CompareQuery,
    CompareResponse,
    Filters,
    SearchHit,
    SearchResponse,
    Side,
    TextQuery,
)
from assetlib.library.remote_models import local_model, remote_model_url
from assetlib.media.images import decode_image, to_rgb_on_white
from assetlib.media.meshes import UnsupportedMeshFormat
from assetlib.search.compare import compare
from assetlib.search.service import Hit, SearchResult, SearchService
from assetlib.store.catalog import asset_record, store_counts
from assetlib.store.db import Database, DatabaseError
from assetlib.store.filters import MAX_FILTER_VALUES
from assetlib.vocab import (
    MAX_IMAGE_UPLOAD_BYTES,
    MAX_MODEL_UPLOAD_BYTES,
    MAX_TOP_K,
    MESH_SUFFIXES,
    Algorithm,
    ImageMode,
    QueryKind,
    mode_for,
)

log = logging.getLogger(__name__)

TopK = Annotated[int, Query(ge=1, le=MAX_TOP_K)]
FilterValues = Annotated[list[str], Query(max_length=MAX_FILTER_VALUES, description="repeat for several")]


def filters_from_query(
    categories: FilterValues = [],  # noqa: B006  (FastAPI copies defaults per request)
    lvis: FilterValues = [],  # noqa: B006
    licenses: FilterValues = [],  # noqa: B006
    tags: FilterValues = [],  # noqa: B006
    face_min: Annotated[int | None, Query(ge=0)] = None,
    face_max: Annotated[int | None, Query(ge=0)] = None,
) -> Filters:
    """The metadata filters of an upload search, given as query parameters (the body is the file)."""
    return Filters(
        categories=categories, lvis=lvis, licenses=licenses, tags=tags, face_min=face_min, face_max=face_max
    )


QueryFilters = Annotated[Filters, Depends(filters_from_query)]


def _response_body(request: Request, service: SearchService, result: SearchResult) -> SearchResponse:
    """The results in the REST contract's shape."""

    def hit(h: Hit) -> SearchHit:
        views = [asset_url(request, h.asset_id, f"/views/{i}") for i in range(h.view_count)]
        thumb = None
        if views:
            matched = h.matched_view is not None and h.matched_view < len(views)
            thumb = views[h.matched_view] if matched and h.matched_view is not None else views[0]
        model_url, model_source = model_link(
            service.settings, request, h.asset_id, h.glb_path, h.glb_relpath, h.objaverse_uid
        )
        return SearchHit(
            asset_id=h.asset_id,
            similarity=round(h.score, 6),
            caption_en=h.caption_en,
            caption_cn=h.caption_cn,
            objaverse_id=h.objaverse_uid,
            model_url=model_url,
            thumbnail_url=thumb,
            view_urls=views,
            matched_view=h.matched_view,
            matched_language=h.matched_language,
            high_quality=h.high_quality,
            matched_by=list(h.sources),
            model_source=model_source,
            name=h.name,
            license=h.license,
            categories=list(h.categories),
            lvis=list(h.lvis),
            tags=list(h.tags),
            face_count=h.face_count,
        )

    return SearchResponse(
        results=[hit(h) for h in result.hits],
        algorithm=result.algorithm,
        encoder=result.encoder,
        mode=result.mode,
        language=result.language,
        timings_ms=result.timings_ms,
        notes=result.notes,
        layout=result.layout,
        filters=result.filters,
        facets=result.facets,
        candidates=result.candidates,
    )


def _to_response(
    request: Request,
    service: SearchService,
    result: SearchResult,
    fmt: ExportFormat = ExportFormat.JSON,
) -> Response:
    """The results as JSON (serialised once by pydantic: the route's response_model documents them, a
    Response is passed through), or as a CSV / rows / GLB-list download."""
    body = _response_body(request, service, result).model_dump_json()
    return export_response(body, fmt, f"assetlib-{result.algorithm}-{result.mode}")


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
    from assetlib.store.indexes import prewarm_indexes

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


def _record(service: SearchService, asset_id: str) -> dict[str, Any]:
    with service.db.connection() as conn:
        record = asset_record(conn, asset_id)
    if record is None:
        raise HTTPException(404, f"no asset {asset_id!r}")
    record["objaverse_id"] = record.pop("objaverse_uid")  # the original system's field name
    return record


def _counts(service: SearchService) -> dict[str, Any]:
    with service.db.connection() as conn:
        return store_counts(conn)


def create_app(settings: Settings | None = None, service: SearchService | None = None) -> FastAPI:
    """The FastAPI app; one SearchService (encoders, pool) shared by every request."""
    state: dict[str, SearchService] = {}

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if service is not None:
            state["service"] = service
        else:
            resolved = settings or load_settings()
            state["service"] = SearchService(resolved, Database.open(resolved))
            # Read the ANN indexes into memory and start the renderer beside serving, so early
            # queries are not paid for with cold reads and a cold OpenGL start (a test's own
            # service skips this).
            threading.Thread(target=_prewarm, args=(state["service"].db,), daemon=True).start()
            state["service"].warm()
        yield
        if service is None:
            state["service"].close()

    app = FastAPI(
        title="assetlib",
        version=__version__,
        lifespan=lifespan,
        description="Text and image search over 3D asset libraries (SigLIP vs Qwen, pgvector).",
    )
    install_error_handlers(app)

    def get_service() -> SearchService:
        return state["service"]

    Service = Annotated[SearchService, Depends(get_service)]

    # No response_model: with `format` the 200 is the SearchResponse, or rows, CSV or a GLB list.
    @app.post(
        "/search/text",
        response_model=None,
        responses={**ERRORS, **export_content({"$ref": "#/components/schemas/SearchResponse"})},
        tags=["search"],
    )
    async def search_text(
        body: TextQuery, request: Request, service: Service, format: ExportFormat = ExportFormat.JSON
    ) -> Response:
        """Search by English or Chinese text: captions (text→text), renders (text→image), both fused,
        keywords, or keywords + vectors (hybrid); with filters and facets. `format` downloads the
        results as csv, rows (JSON) or glb-list."""
        mode = mode_for(QueryKind.TEXT, body.mode, body.cross_modal)
        result = await run_in_threadpool(
            service.search_text,
            body.query,
            body.algorithm.value,
            mode,
            body.language.value,
            body.top_k,
            body.high_quality_only,
            body.layout,
            body.filters.to_search(),
            body.facets,
        )
        return _to_response(request, service, result, format)

    @app.post("/search/compare", response_model=CompareResponse, responses=ERRORS, tags=["search"])
    async def search_compare(body: CompareQuery, request: Request, service: Service) -> CompareResponse:
        """The same text query two ways (algorithms, modes or layouts): both lists, overlap@k, and
        which results each found alone."""
        filters = body.filters.to_search()

        def side(s: Side) -> SearchResult:
            return service.search_text(
                body.query,
                s.algorithm.value,
                s.mode,
                body.language.value,
                body.top_k,
                False,
                s.layout,
                filters,
            )

        a = await run_in_threadpool(side, body.a)
        b = await run_in_threadpool(side, body.b)
        result = compare(a, b, body.top_k)
        return CompareResponse(
            a=_response_body(request, service, a),
            b=_response_body(request, service, b),
            k=result.k,
            overlap=len(result.both),
            overlap_at_k=round(result.overlap_at_k, 4),
            both=result.both,
            only_a=result.only_a,
            only_b=result.only_b,
        )

    @app.post("/search/image", response_model=SearchResponse, responses=ERRORS, tags=["search"])
    async def search_image(
        request: Request,
        service: Service,
        file: Annotated[UploadFile, File(description="PNG, JPEG, WEBP or BMP; up to 10 MB")],
        algorithm: Algorithm = Algorithm.SIGLIP,
        cross_modal: Annotated[bool, Query(description="search captions (image→text)")] = False,
        mode: ImageMode | None = None,
        top_k: TopK = 10,
        high_quality_only: bool = False,
        facets: bool = False,
        *,
        filters: QueryFilters,
    ) -> Response:
        """Search by an image: renders (image→image), captions (image→text) or both fused; filtered
        by the metadata query parameters, with facets if asked."""
        data = await _read_capped(file, MAX_IMAGE_UPLOAD_BYTES)
        image = to_rgb_on_white(decode_image(data, max_bytes=MAX_IMAGE_UPLOAD_BYTES))
        chosen = mode_for(QueryKind.IMAGE, mode, cross_modal)
        result = await run_in_threadpool(
            service.search_images,
            [image],
            algorithm.value,
            chosen,
            top_k,
            high_quality_only,
            None,
            filters.to_search(),
            facets,
        )
        return _to_response(request, service, result)

    @app.post("/search/model", response_model=SearchResponse, responses=ERRORS, tags=["search"])
    async def search_model(
        request: Request,
        service: Service,
        file: Annotated[UploadFile, File(description="GLB, glTF, OBJ, PLY or STL; up to 50 MB")],
        algorithm: Algorithm = Algorithm.SIGLIP,
        mode: ImageMode = ImageMode.IMAGE_TO_IMAGE,
        top_k: TopK = 10,
        high_quality_only: bool = False,
        facets: bool = False,
        *,
        filters: QueryFilters,
    ) -> Response:
        """Search by a 3D model: it is rendered like the library, then searched as images (filtered and
        with facets like an image)."""
        suffix = Path(file.filename or "").suffix.lower()
        if suffix not in MESH_SUFFIXES:
            raise UnsupportedMeshFormat(
                f"unsupported mesh format {suffix or '(none)'}; use {', '.join(MESH_SUFFIXES)}"
            )
        data = await _read_capped(file, MAX_MODEL_UPLOAD_BYTES)
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / f"upload{suffix}"
            path.write_bytes(data)
            chosen = mode_for(QueryKind.IMAGE, mode)
            result = await run_in_threadpool(
                service.search_model,
                path,
                algorithm.value,
                chosen,
                top_k,
                high_quality_only,
                filters.to_search(),
                facets,
            )
        return _to_response(request, service, result)

    @app.get("/health", responses=SERVER_FAULT, tags=["status"])
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

    @app.get("/assets/{asset_id:path}/views/{index}", responses=NOT_FOUND, tags=["assets"])
    async def asset_view(asset_id: str, index: int, service: Service) -> FileResponse:
        """One rendered view of an asset (PNG)."""
        record = await run_in_threadpool(_record, service, asset_id)
        views = record["view_paths"]
        if not 0 <= index < len(views) or not Path(views[index]).is_file():
            raise HTTPException(404, f"asset {asset_id} has no view {index}")
        return FileResponse(views[index], media_type="image/png")

    @app.get("/assets/{asset_id:path}/model", responses=NOT_FOUND, tags=["assets"])
    async def asset_model(asset_id: str, service: Service) -> FileResponse:
        """The asset's mesh (GLB)."""
        record = await run_in_threadpool(_record, service, asset_id)
        path = local_model(service.settings.home, record["glb_path"], record["glb_relpath"])
        if path is None:
            remote = remote_model_url(
                service.settings.model_url_template, record["glb_relpath"], record["objaverse_id"]
            )
            hint = f"; it is at {remote} (`assetlib library fetch-models` downloads it)" if remote else ""
            raise HTTPException(404, f"asset {asset_id} has no model file on this machine{hint}")
        return FileResponse(path, media_type="model/gltf-binary")

    @app.get("/assets/{asset_id:path}", responses=NOT_FOUND, tags=["assets"])
    async def asset(asset_id: str, request: Request, service: Service) -> dict:
        """An asset's catalog record with the URLs of its views and model."""
        record = await run_in_threadpool(_record, service, asset_id)
        record["view_urls"] = [
            asset_url(request, asset_id, f"/views/{i}") for i in range(len(record["view_paths"]))
        ]
        record["model_url"], record["model_source"] = model_link(
            service.settings,
            request,
            asset_id,
            record["glb_path"],
            record["glb_relpath"],
            record["objaverse_id"],
        )
        record.pop("view_paths")
        record.pop("glb_path")
        return record

    add_judgment_routes(app, get_service)
    return app


def app_from_environment() -> FastAPI:
    """Factory for `uvicorn --factory assetlib.faces.api.app:app_from_environment`."""
    return create_app()
