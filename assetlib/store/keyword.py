"""Keyword search over captions, names, tags and categories: full text for English, trigrams for Chinese.

Both statements are written so their GIN indexes serve them (migration 3): `@@` on
assetlib_words_en(...) for English, `<%` (word similarity) on assetlib_words_all(...) for Chinese,
which has no word breaks for a full-text parser to use.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql

from assetlib.store.filters import NO_FILTERS, SearchFilters
from assetlib.store.knn import HIT_CATALOG_COLUMNS, StoreHit, hits_from_rows

# How much of a Chinese query's trigrams a caption must hold somewhere (pg_trgm's word similarity;
# its default 0.6 drops most two-character words inside a longer caption).
WORD_SIMILARITY_THRESHOLD = 0.3

_EN_DOC = "assetlib_words_en(a.caption_en, a.name, a.tags, a.categories)"
_ALL_DOC = "assetlib_words_all(a.caption_cn, a.caption_en, a.name, a.tags)"


def _where(filters: SearchFilters, first: str) -> sql.Composable:
    conditions: list[sql.Composable] = [sql.SQL(first), *filters.catalog_conditions("a")]
    if filters.high_quality:
        conditions.append(sql.SQL("a.high_quality"))
    return sql.SQL(" AND ").join(conditions)


def keyword_sql(language: str, filters: SearchFilters = NO_FILTERS) -> sql.Composed:
    """The keyword statement for a language: matches through the index, best rank first, then k."""
    if language == "zh":
        match = f"%(text)s <%% {_ALL_DOC}"  # <%: word similarity above the threshold
        score = f"word_similarity(%(text)s, {_ALL_DOC})"
        source = sql.SQL("assets a")
    else:
        # Any of the query's words (OR), ranked by cover density, normalised to [0, 1) (flag 32):
        # an everyday query rarely has all its words in one caption.
        match = f"{_EN_DOC} @@ q.tsq"
        score = f"ts_rank_cd({_EN_DOC}, q.tsq, 32)"
        source = sql.SQL(
            "(SELECT replace(plainto_tsquery('english', %(text)s)::text, ' & ', ' | ')::tsquery AS tsq) q, "
            "assets a"
        )
    return sql.SQL(
        "SELECT a.asset_id, {score}, NULL::int2, NULL::text, {columns}, 0 FROM {source} WHERE {where} "
        "ORDER BY 2 DESC, a.asset_id LIMIT %(k)s"
    ).format(
        score=sql.SQL(score),
        columns=sql.SQL(HIT_CATALOG_COLUMNS),
        source=source,
        where=_where(filters, match),
    )


def _params(text: str, k: int, filters: SearchFilters) -> dict[str, Any]:
    return {"text": text.lower(), "k": k, **filters.params()}


def _run(conn: psycopg.Connection, statement: sql.Composed, language: str, params: dict) -> list[tuple]:
    with conn.transaction():
        if language == "zh":
            # The planner prices `<%` like a cheap filter and scans the table; each row's word
            # similarity costs ~14 µs (85 ms at 6k rows, ~14 s at a million), the trigram index
            # a few ms: keep it on the index.
            conn.execute(
                f"SET LOCAL pg_trgm.word_similarity_threshold = {WORD_SIMILARITY_THRESHOLD}; "
                "SET LOCAL enable_seqscan = off"
            )
        return conn.execute(statement, params).fetchall()


def keyword_search(
    conn: psycopg.Connection, text: str, language: str, k: int, filters: SearchFilters = NO_FILTERS
) -> list[StoreHit]:
    """The k assets whose words best match `text` (English: any word, stemmed; Chinese: trigrams)."""
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    return hits_from_rows(_run(conn, keyword_sql(language, filters), language, _params(text, k, filters)))


def explain_keyword(
    conn: psycopg.Connection, text: str, language: str, k: int, filters: SearchFilters = NO_FILTERS
) -> str:
    """EXPLAIN (ANALYZE) of the keyword statement, to check its GIN index is used."""
    statement = sql.SQL("EXPLAIN (ANALYZE, COSTS OFF) ") + keyword_sql(language, filters)
    return "\n".join(r[0] for r in _run(conn, statement, language, _params(text, k, filters)))
