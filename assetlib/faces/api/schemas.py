"""The REST contract: request and response bodies, with the field names existing clients use."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field, field_validator

from assetlib.store.filters import MAX_FILTER_VALUES, SearchFilters
from assetlib.vocab import (
    MAX_QUERY_CHARS,
    MAX_TOP_K,
    Algorithm,
    ImageLayout,
    Language,
    Mode,
    QueryLanguage,
    TextMode,
)


class Filters(BaseModel):
    """Metadata filters: any of the values within a field, every field given (see store/filters.py)."""

    categories: list[str] = Field(default_factory=list, max_length=MAX_FILTER_VALUES)
    lvis: list[str] = Field(default_factory=list, max_length=MAX_FILTER_VALUES)
    licenses: list[str] = Field(default_factory=list, max_length=MAX_FILTER_VALUES)
    tags: list[str] = Field(default_factory=list, max_length=MAX_FILTER_VALUES)
    face_min: int | None = Field(default=None, ge=0)
    face_max: int | None = Field(default=None, ge=0)
    high_quality: bool = False

    def to_search(self) -> SearchFilters:
        """As the store takes them (FilterError for a range that is upside down)."""
        return SearchFilters(
            tuple(self.categories),
            tuple(self.lvis),
            tuple(self.licenses),
            tuple(self.tags),
            self.face_min,
            self.face_max,
            self.high_quality,
        )


class TextQuery(BaseModel):
    """A text search, as existing clients send it (`cross_modal` picks text→image)."""

    query: str = Field(min_length=1, max_length=MAX_QUERY_CHARS, description="English or Chinese text")
    algorithm: Algorithm = Algorithm.SIGLIP
    language: QueryLanguage = QueryLanguage.AUTO
    cross_modal: bool = Field(False, description="search renders (text→image) instead of captions")
    mode: TextMode | None = Field(None, description="overrides cross_modal; 'fused' combines both")
    top_k: int = Field(10, ge=1, le=MAX_TOP_K)
    high_quality_only: bool = False
    layout: ImageLayout | None = Field(None, description="image layout; unset = what the store serves best")
    filters: Filters = Field(default_factory=lambda: Filters())
    facets: bool = Field(False, description="count categories, licences, tags… over the top 200 candidates")

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
    model_source: str | None = Field(
        None, description="local (served here), remote (MODEL_URL_TEMPLATE) or null (no model)"
    )
    name: str | None = None
    license: str | None = None
    categories: list[str] = Field(default_factory=list)
    lvis: list[str] = Field(default_factory=list)
    tags: list[str] = Field(default_factory=list)
    face_count: int | None = None


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
    layout: str | None = None
    filters: dict[str, Any] = Field(default_factory=dict, description="the filters applied")
    facets: dict[str, list[dict[str, Any]]] | None = Field(
        None, description="per field, [{value, count}] over `candidates` results (when asked for)"
    )
    candidates: int = 0


class Side(BaseModel):
    """One column of a comparison: an algorithm, a mode, and optionally an image layout."""

    algorithm: Algorithm = Algorithm.SIGLIP
    mode: TextMode = TextMode.TEXT_TO_IMAGE
    layout: ImageLayout | None = None


class CompareQuery(BaseModel):
    """The same text query searched two ways."""

    query: str = Field(min_length=1, max_length=MAX_QUERY_CHARS)
    language: QueryLanguage = QueryLanguage.AUTO
    top_k: int = Field(10, ge=1, le=MAX_TOP_K)
    filters: Filters = Field(default_factory=lambda: Filters())
    a: Side
    b: Side


class CompareResponse(BaseModel):
    """Both result lists, how much they agree (overlap@k), and what each found alone."""

    a: SearchResponse
    b: SearchResponse
    k: int
    overlap: int
    overlap_at_k: float
    both: list[str]
    only_a: list[str]
    only_b: list[str]


class JudgmentKeyIn(BaseModel):
    """Which result a mark is about (all a DELETE needs; a whole mark is accepted too)."""

    query: str = Field(min_length=1, max_length=MAX_QUERY_CHARS)
    language: Language
    algorithm: str = Field(min_length=1, max_length=200)
    mode: Mode
    asset_id: str = Field(min_length=1, max_length=500)


class JudgmentIn(JudgmentKeyIn):
    """A researcher's mark on one result."""

    relevant: bool
    rank: int | None = Field(None, ge=1, le=MAX_TOP_K)


class JudgmentOut(JudgmentIn):
    """A stored judgment, with when it was made."""

    judged_at: datetime


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
