"""The judgment routes: mark results relevant or not, list and take back marks, judged precision,
the judgments as an evaluation query set, and the judged results as a download."""

import json
from collections.abc import Callable  # (no __future__ annotations: FastAPI reads these at runtime)
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response

from assetlib.evaluation.queries import judged_query_set
from assetlib.faces.api.export import ExportFormat, export_content, export_response
from assetlib.faces.api.links import model_link
from assetlib.faces.api.schemas import ERRORS, JudgmentIn, JudgmentKeyIn, JudgmentOut
from assetlib.search.service import SearchService
from assetlib.store.catalog import asset_record
from assetlib.store.judgments import (
    Judgment,
    JudgmentKey,
    delete_judgment,
    judged_precision,
    list_judgments,
    record_judgment,
    relevance_by_query,
)


def _judged_results(service: SearchService, request: Request, query: str | None) -> tuple[str, dict]:
    """The judged results as a search-response-shaped JSON body and their labels by asset."""
    with service.db.connection() as conn:
        marks = list_judgments(conn, query)
        records = {a: asset_record(conn, a) for a in dict.fromkeys(m.asset_id for m in marks)}
    results: list[dict[str, Any]] = []
    seen: set[str] = set()
    for mark in marks:
        if mark.asset_id in seen:
            continue  # one row per asset; its label is the latest mark (below)
        seen.add(mark.asset_id)
        record = records.get(mark.asset_id) or {}
        model_url, source = model_link(
            service.settings,
            request,
            mark.asset_id,
            record.get("glb_path"),
            record.get("glb_relpath"),
            record.get("objaverse_uid"),
        )
        results.append(
            {
                "asset_id": mark.asset_id,
                "objaverse_id": record.get("objaverse_uid"),
                "similarity": None,
                "caption_en": record.get("caption_en"),
                "caption_cn": record.get("caption_cn"),
                "name": record.get("name"),
                "license": record.get("license"),
                "categories": record.get("categories"),
                "tags": record.get("tags"),
                "face_count": record.get("face_count"),
                "model_url": model_url,
                "model_source": source,
                "query": mark.query,
                "algorithm": mark.algorithm,
                "mode": mark.mode,
            }
        )
    relevance: dict[str, bool] = {}
    for mark in sorted(marks, key=lambda m: m.judged_at or datetime.min.replace(tzinfo=UTC)):
        relevance[mark.asset_id] = mark.relevant  # the latest mark wins
    return json.dumps({"results": results}, ensure_ascii=False, default=str), relevance


def add_judgment_routes(app: FastAPI, get_service: Callable[[], SearchService]) -> None:
    """Register the /judgments routes on the app."""
    Service = Annotated[SearchService, Depends(get_service)]

    @app.post("/judgments", response_model=JudgmentOut, status_code=201, responses=ERRORS, tags=["judgments"])
    async def judge(body: JudgmentIn, service: Service) -> JudgmentOut:
        """Mark a result relevant or not (judging it again replaces the mark)."""

        def store() -> Judgment:
            with service.db.connection() as conn:
                return record_judgment(conn, Judgment(**body.model_dump()))

        return JudgmentOut(**asdict(await run_in_threadpool(store)))

    @app.get("/judgments", response_model=list[JudgmentOut], responses=ERRORS, tags=["judgments"])
    async def judgments(service: Service, query: str | None = None) -> list[JudgmentOut]:
        """Every judgment, or those of one query, as results were shown: by query, algorithm, mode, rank."""

        def read() -> list[Judgment]:
            with service.db.connection() as conn:
                return list_judgments(conn, query)

        return [JudgmentOut(**asdict(j)) for j in await run_in_threadpool(read)]

    @app.delete("/judgments", responses=ERRORS, tags=["judgments"])
    async def unjudge(body: JudgmentKeyIn, service: Service) -> dict:
        """Take a mark back: the query, language, algorithm, mode and asset say which."""

        def drop() -> bool:
            with service.db.connection() as conn:
                return delete_judgment(conn, JudgmentKey(**body.model_dump()))

        return {"deleted": await run_in_threadpool(drop)}

    @app.get("/judgments/precision", responses=ERRORS, tags=["judgments"])
    async def precision(service: Service) -> list[dict]:
        """Per algorithm and mode: results judged, judged relevant, precision among the judged."""

        def read() -> list[dict]:
            with service.db.connection() as conn:
                return judged_precision(conn)

        return await run_in_threadpool(read)

    @app.get("/judgments/query-set", responses=ERRORS, tags=["judgments"])
    async def query_set(service: Service) -> dict:
        """The judgments as a query set (queries.json) that `assetlib evaluate --queries` reads."""

        def read() -> dict:
            with service.db.connection() as conn:
                qs = judged_query_set(relevance_by_query(conn))
            return {"seed": qs.seed, "source": qs.source, "queries": [asdict(q) for q in qs.queries]}

        return await run_in_threadpool(read)

    @app.get(
        "/judgments/export", responses={**ERRORS, **export_content({"type": "object"})}, tags=["judgments"]
    )
    async def export(
        request: Request, service: Service, format: ExportFormat = ExportFormat.CSV, query: str | None = None
    ) -> Response:
        """The judged results (one row per asset, its latest mark) as csv, rows (JSON) or glb-list."""
        body, relevance = await run_in_threadpool(_judged_results, service, request, query)
        return export_response(body, format, "assetlib-judged", relevance)
