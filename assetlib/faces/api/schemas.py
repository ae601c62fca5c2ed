"""The REST contract: request and response bodies, with the field names existing clients use."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field, field_validator

from assetlib.vocab import MAX_QUERY_CHARS, MAX_TOP_K, Algorithm, QueryLanguage, TextMode


class TextQuery(BaseModel):
    """A text search, as existing clients send it (`cross_modal` picks text→image)."""

    query: str = Field(min_length=1, max_length=MAX_QUERY_CHARS, description="English or Chinese text")
    algorithm: Algorithm = Algorithm.SIGLIP
    language: QueryLanguage = QueryLanguage.AUTO
    cross_modal: bool = Field(False, description="search renders (text→image) instead of captions")
    mode: TextMode | None = Field(None, description="overrides cross_modal; 'fused' combines both")
    top_k: int = Field(10, ge=1, le=MAX_TOP_K)
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
    notes: list[str] = Field(
        default_factory=list, description="what was done to the query (a model's skipped lines, decimation…)"
    )


class ErrorBody(BaseModel):
    """An error a client can show: what went wrong, in words (and, for a server fault, its request id)."""

    detail: Any
    request_id: str | None = None


UNAVAILABLE: dict[int | str, dict[str, Any]] = {
    503: {
        "model": ErrorBody,
        "description": "algorithm or database not usable now, with the reason",
        "headers": {
            "Retry-After": {
                "description": "seconds to wait before trying again (while the database is away)",
                "schema": {"type": "integer"},
            }
        },
    },
}
SERVER_FAULT: dict[int | str, dict[str, Any]] = {
    500: {"model": ErrorBody, "description": "a fault of the server; the log holds the request id"},
}
ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody, "description": "unreadable upload (corrupt image or mesh)"},
    413: {"model": ErrorBody, "description": "upload over the size limit"},
    415: {"model": ErrorBody, "description": "not an image / not a supported mesh format"},
    422: {
        "model": ErrorBody,
        "description": "invalid parameters (the valid values are listed), or a mesh with nothing to "
        "render or over the render time limit",
    },
    **SERVER_FAULT,
    **UNAVAILABLE,
}
NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorBody, "description": "no such asset or file"},
    **SERVER_FAULT,
    **UNAVAILABLE,
}
