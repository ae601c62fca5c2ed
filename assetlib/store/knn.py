"""kNN SQL for each search mode, written so the ANN index serves it; per-view over-fetch and grouping."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import psycopg
from psycopg import sql

from assetlib.config import Settings, setting_default
from assetlib.store.db import session_tuning
from assetlib.store.filters import NO_FILTERS, SearchFilters
from assetlib.store.schema import EncoderTables
from assetlib.vocab import VectorKind

log = logging.getLogger(__name__)

MAX_EF_SEARCH = 1000  # pgvector's upper bound for hnsw.ef_search


@dataclass(frozen=True)
class SearchTuning:
    """Knobs of one query: ANN breadth, per-view over-fetch, or exact (sequential) search.

    Every default is the Settings default; `from_settings` gives a process's configured values.
    """

    ef_search: int = setting_default("hnsw_ef_search")
    probes: int = setting_default("ivfflat_probes")
    views_per_asset: int = setting_default("views_per_asset")  # rows per asset in a view table
    exact: bool = False
    # pooled layout: candidates per requested result, re-ranked by view
    rerank_factor: int = setting_default("pooled_rerank_factor")

    @classmethod
    def from_settings(cls, settings: Settings) -> SearchTuning:
        """The configured search knobs (HNSW_EF_SEARCH, IVFFLAT_PROBES, VIEWS_PER_ASSET, …)."""
        return cls(
            ef_search=settings.hnsw_ef_search,
            probes=settings.ivfflat_probes,
            views_per_asset=settings.views_per_asset,
            rerank_factor=settings.pooled_rerank_factor,
        )


@dataclass(frozen=True)
class StoreHit:
    """One asset found, with the catalog fields a face needs to show it."""

    asset_id: str
    score: float  # cosine similarity, 1 - cosine distance
    matched_view: int | None
    matched_language: str | None
    objaverse_uid: str | None
    caption_en: str | None
    caption_cn: str | None
    glb_path: str | None
    view_count: int
    high_quality: bool
    name: str | None = None
    license: str | None = None
    categories: tuple[str, ...] = ()
    lvis: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    face_count: int | None = None
    glb_relpath: str | None = None


class QueryVectorError(ValueError):
    """The query vector cannot be searched (wrong size, NaN, zero)."""


def _check_query(query: np.ndarray, dim: int) -> np.ndarray:
    query = np.asarray(query, dtype=np.float32).reshape(-1)
    if query.shape[0] != dim:
        raise QueryVectorError(f"query vector has {query.shape[0]} dimensions, the store holds {dim}")
    if not np.isfinite(query).all():
        raise QueryVectorError("query vector contains NaN or Inf")
    if float(np.linalg.norm(query)) < 1e-12:
        raise QueryVectorError("query vector is zero; cosine similarity is undefined")
    return query


# The tail of every kNN statement, after a CTE `best` (asset_id, view_index, language, distance; one
# row per asset) and `nn` (the ANN rows): cut to k, then one primary-key catalog lookup per hit.
# LIMIT 1 in the LATERAL keeps the planner from flattening it into a hash join over the whole catalog
# (measured: an 88 ms scan of 1M assets per query).
# The catalog columns of a hit, in StoreHit's order (the keyword SQL selects the same).
HIT_CATALOG_COLUMNS = (
    "a.objaverse_uid, a.caption_en, a.caption_cn, a.glb_path, a.view_count, a.high_quality, a.name, "
    "a.license, a.categories, a.lvis, a.tags, a.face_count, a.glb_relpath"
)
_TOP_K_WITH_CATALOG = (
    """, top AS MATERIALIZED (
               SELECT * FROM best ORDER BY distance, asset_id LIMIT %(k)s
           )
           SELECT b.asset_id, 1 - b.distance, b.view_index, b.language, """
    + HIT_CATALOG_COLUMNS
    + """, (SELECT count(*) FROM nn)
           FROM top b
           CROSS JOIN LATERAL (SELECT * FROM assets c WHERE c.asset_id = b.asset_id LIMIT 1) a
           ORDER BY b.distance, b.asset_id"""
)


def _query_param(tables: EncoderTables) -> sql.SQL:
    return sql.SQL("%(q)s") if tables.storage == "vector" else sql.SQL("CAST(%(q)s AS halfvec)")


def _vector_where(
    table: sql.Identifier, high_quality_only: bool, filters: SearchFilters, by_language: bool = False
) -> sql.Composable:
    """The WHERE of an index-shaped vector scan: language, the quality flag copied into vector rows,
    and the catalog filters (inside the scan, so iterative scans keep reading until k rows pass)."""
    conditions: list[sql.Composable] = []
    if by_language:
        conditions.append(sql.SQL("language = %(language)s"))
    if high_quality_only or filters.high_quality:
        conditions.append(sql.SQL("high_quality"))
    on_catalog = filters.vector_row_condition(table)
    if on_catalog is not None:
        conditions.append(on_catalog)
    return sql.SQL("WHERE ") + sql.SQL(" AND ").join(conditions) if conditions else sql.SQL("")


def knn_sql(
    tables: EncoderTables,
    kind: VectorKind,
    language: str | None,
    high_quality_only: bool,
    filters: SearchFilters = NO_FILTERS,
) -> sql.Composed:
    """The kNN statement: ANN over-fetch ordered by ascending distance, then group by asset.

    The inner query has exactly the shape pgvector's index serves (ORDER BY embedding <=> q
    LIMIT n); grouping, the catalog join and re-ranking happen on those n rows only.
    """
    by_language = kind is VectorKind.CAPTION and language is not None
    where = _vector_where(tables.ident(kind), high_quality_only, filters, by_language)
    sub = {
        VectorKind.VIEW: (sql.SQL("view_index"), sql.SQL("NULL::text")),
        VectorKind.CAPTION: (sql.SQL("NULL::int2"), sql.SQL("language")),
        VectorKind.ASSET: (sql.SQL("NULL::int2"), sql.SQL("NULL::text")),
    }[kind]
    return sql.SQL(
        """WITH nn AS MATERIALIZED (
               SELECT asset_id, {view} AS view_index, {lang} AS language, embedding <=> {q} AS distance
               FROM {table} {where}
               ORDER BY embedding <=> {q}
               LIMIT %(fetch)s
           ), best AS (
               SELECT DISTINCT ON (asset_id) asset_id, view_index, language, distance
               FROM nn ORDER BY asset_id, distance
           )"""
        + _TOP_K_WITH_CATALOG
    ).format(view=sub[0], lang=sub[1], q=_query_param(tables), table=tables.ident(kind), where=where)


def pooled_sql(
    tables: EncoderTables, high_quality_only: bool, filters: SearchFilters = NO_FILTERS
) -> sql.Composed:
    """Pooled layout: ANN over the per-asset vectors for candidates, then exact max-over-views re-rank.

    The inner query is index-shaped on the asset table; the re-rank reads each candidate's views
    through the view table's primary key (asset_id, view_index), so no view index is needed.
    """
    where = _vector_where(tables.ident(VectorKind.ASSET), high_quality_only, filters)
    return sql.SQL(
        """WITH nn AS MATERIALIZED (
               SELECT asset_id FROM {assets} {where} ORDER BY embedding <=> {q} LIMIT %(fetch)s
           ), best AS (
               SELECT DISTINCT ON (v.asset_id) v.asset_id, v.view_index, NULL::text AS language,
                      v.embedding <=> {q} AS distance
               FROM nn CROSS JOIN LATERAL (
                   SELECT asset_id, view_index, embedding FROM {views} w WHERE w.asset_id = nn.asset_id
               ) v
               ORDER BY v.asset_id, distance
           )"""
        + _TOP_K_WITH_CATALOG
    ).format(
        assets=tables.ident(VectorKind.ASSET),
        views=tables.ident(VectorKind.VIEW),
        q=_query_param(tables),
        where=where,
    )


def knn_pooled(
    conn: psycopg.Connection,
    tables: EncoderTables,
    query: np.ndarray,
    k: int,
    high_quality_only: bool = False,
    tuning: SearchTuning | None = None,
    filters: SearchFilters = NO_FILTERS,
) -> list[StoreHit]:
    """The k nearest assets by their best view, among candidates from the per-asset ANN index."""
    tuning = tuning or SearchTuning()
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    params = {
        "q": _check_query(query, tables.dim),
        "k": k,
        "fetch": k * tuning.rerank_factor,
        **filters.params(),
    }
    rows = _execute(conn, pooled_sql(tables, high_quality_only, filters), tuning, params)
    return hits_from_rows(rows)


def hits_from_rows(rows: list[tuple]) -> list[StoreHit]:
    """StoreHits from rows of (asset_id, score, view, language, HIT_CATALOG_COLUMNS…, fetched)."""
    return [
        StoreHit(
            r[0],
            float(r[1]),
            r[2],
            r[3],
            r[4],
            r[5],
            r[6],
            r[7],
            int(r[8]),
            bool(r[9]),
            r[10],
            r[11],
            tuple(r[12] or ()),
            tuple(r[13] or ()),
            tuple(r[14] or ()),
            r[15],
            r[16],
        )
        for r in rows
    ]


def _session_serves(conn: psycopg.Connection, tuning: SearchTuning, fetch: int) -> bool:
    """True when the connection's session settings already are what this search needs."""
    session = session_tuning(conn)
    return (
        session is not None
        and not tuning.exact
        and session == (tuning.ef_search, tuning.probes)
        and fetch <= tuning.ef_search
    )


def _apply_tuning(conn: psycopg.Connection, tuning: SearchTuning, fetch: int) -> None:
    # One statement (no parameters, so psycopg sends it as a simple query), inside the search's
    # transaction, so these values end with it.
    if tuning.exact:
        conn.execute("SET LOCAL enable_indexscan = off; SET LOCAL enable_bitmapscan = off")
        return
    ef = min(MAX_EF_SEARCH, max(tuning.ef_search, fetch))
    # pgvector >= 0.8: keep scanning the index until LIMIT rows pass a filter or the fetch is met;
    # relaxed order is safe, the statements sort their own final rows.
    conn.execute(
        f"SET LOCAL hnsw.ef_search = {int(ef)}; SET LOCAL ivfflat.probes = {int(tuning.probes)}; "
        "SET LOCAL hnsw.iterative_scan = relaxed_order; SET LOCAL ivfflat.iterative_scan = relaxed_order"
    )


def _rows_per_asset(kind: VectorKind, language: str | None, tuning: SearchTuning) -> int:
    # Several rows can belong to one asset (views, or captions in several languages): over-fetch.
    if kind is VectorKind.VIEW:
        return tuning.views_per_asset
    if kind is VectorKind.CAPTION and language is None:
        return 2
    return 1


def _execute(
    conn: psycopg.Connection, statement: sql.Composed, tuning: SearchTuning, params: dict[str, Any]
) -> list[tuple]:
    if _session_serves(conn, tuning, params["fetch"]):
        return conn.execute(statement, params).fetchall()  # one round trip: the common case
    with conn.transaction():
        _apply_tuning(conn, tuning, params["fetch"])
        return conn.execute(statement, params).fetchall()


def knn(
    conn: psycopg.Connection,
    tables: EncoderTables,
    kind: VectorKind,
    query: np.ndarray,
    k: int,
    language: str | None = None,
    high_quality_only: bool = False,
    tuning: SearchTuning | None = None,
    filters: SearchFilters = NO_FILTERS,
) -> list[StoreHit]:
    """The k nearest assets to a query vector among one encoder's caption, view or asset vectors."""
    tuning = tuning or SearchTuning()
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    params: dict[str, Any] = {
        "q": _check_query(query, tables.dim),
        "k": k,
        "language": language,
        **filters.params(),
    }
    per_asset = _rows_per_asset(kind, language, tuning)
    statement = knn_sql(tables, kind, language, high_quality_only, filters)
    started = time.perf_counter()
    while True:
        params["fetch"] = k * per_asset
        rows = _execute(conn, statement, tuning, params)
        fetched = int(rows[0][-1]) if rows else 0
        # Too few distinct assets while the index still had rows to give: fetch more and regroup.
        if len(rows) >= k or fetched < params["fetch"] or per_asset >= 64 or tuning.exact:
            break
        per_asset *= 2
    elapsed_ms = (time.perf_counter() - started) * 1000
    log.debug(
        "knn %s k=%d fetch=%d: %d hits in %.1f ms",
        tables.table(kind),
        k,
        params["fetch"],
        len(rows),
        elapsed_ms,
    )
    return hits_from_rows(rows)


def explain_knn(
    conn: psycopg.Connection,
    tables: EncoderTables,
    kind: VectorKind,
    query: np.ndarray,
    k: int,
    language: str | None = None,
    high_quality_only: bool = False,
    tuning: SearchTuning | None = None,
    filters: SearchFilters = NO_FILTERS,
) -> str:
    """EXPLAIN (ANALYZE) text of the first kNN statement `knn` would run, to check the ANN index is used."""
    tuning = tuning or SearchTuning()
    params = {
        "q": _check_query(query, tables.dim),
        "k": k,
        "language": language,
        "fetch": k * _rows_per_asset(kind, language, tuning),
        **filters.params(),
    }
    statement = sql.SQL("EXPLAIN (ANALYZE, COSTS OFF) ") + knn_sql(
        tables, kind, language, high_quality_only, filters
    )
    rows = _execute(conn, statement, tuning, params)
    return "\n".join(r[0] for r in rows)
