"""Relevance judgments: a researcher's marks on results, stored, summarised and turned into a query set."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg


class JudgmentError(ValueError):
    """A judgment that cannot be stored (unknown asset, empty query): the client's to fix."""


@dataclass(frozen=True)
class JudgmentKey:
    """What a mark is about: this asset, for this query, as found by this algorithm and mode."""

    query: str
    language: str
    algorithm: str
    mode: str
    asset_id: str


@dataclass(frozen=True)
class Judgment(JudgmentKey):
    """One mark: this asset is (not) relevant to this query, as found by this algorithm and mode."""

    relevant: bool
    rank: int | None = None
    judged_at: datetime | None = None


_COLUMNS = "query, language, algorithm, mode, asset_id, relevant, rank, judged_at"


def record_judgment(conn: psycopg.Connection, judgment: Judgment) -> Judgment:
    """Store a judgment; judging the same (query, language, algorithm, mode, asset) again replaces it."""
    if not judgment.query.strip():
        raise JudgmentError("a judgment needs the query it was made for")
    try:
        row = conn.execute(
            f"""INSERT INTO judgments (query, language, algorithm, mode, asset_id, relevant, rank)
                VALUES (%s, %s, %s, %s, %s, %s, %s)
                ON CONFLICT (query, language, algorithm, mode, asset_id) DO UPDATE
                    SET relevant = EXCLUDED.relevant, rank = EXCLUDED.rank, judged_at = now()
                RETURNING {_COLUMNS}""",
            (
                judgment.query.strip(),
                judgment.language,
                judgment.algorithm,
                judgment.mode,
                judgment.asset_id,
                judgment.relevant,
                judgment.rank,
            ),
        ).fetchone()
    except psycopg.errors.ForeignKeyViolation:
        raise JudgmentError(f"no asset {judgment.asset_id!r} in the catalog") from None
    except psycopg.errors.CheckViolation as exc:
        raise JudgmentError(f"judgment refused: {exc.diag.message_primary}") from None
    assert row is not None
    return Judgment(*row)


def list_judgments(conn: psycopg.Connection, query: str | None = None) -> list[Judgment]:
    """Every judgment (or those of one query), as the results were shown: by query, algorithm, mode, rank."""
    where, params = ("WHERE query = %s", (query.strip(),)) if query else ("", ())  # stored stripped
    rows = conn.execute(
        f"SELECT {_COLUMNS} FROM judgments {where} "
        "ORDER BY query, language, algorithm, mode, rank NULLS LAST, asset_id",
        params,
    )
    return [Judgment(*r) for r in rows.fetchall()]


def delete_judgment(conn: psycopg.Connection, key: JudgmentKey) -> bool:
    """Take a judgment back; whether there was one (the query matched as it was stored: stripped)."""
    cur = conn.execute(
        "DELETE FROM judgments WHERE query = %s AND language = %s AND algorithm = %s AND mode = %s "
        "AND asset_id = %s",
        (key.query.strip(), key.language, key.algorithm, key.mode, key.asset_id),
    )
    return cur.rowcount > 0


def judged_precision(conn: psycopg.Connection) -> list[dict[str, Any]]:
    """Per algorithm and mode: results judged, judged relevant, and precision among the judged."""
    rows = conn.execute(
        """SELECT algorithm, mode, count(DISTINCT query || '|' || language), count(*),
                  count(*) FILTER (WHERE relevant)
           FROM judgments GROUP BY algorithm, mode ORDER BY algorithm, mode"""
    ).fetchall()
    return [
        {
            "algorithm": a,
            "mode": m,
            "queries": int(q),
            "judged": int(n),
            "relevant": int(r),
            "judged_precision": round(r / n, 4) if n else None,
        }
        for a, m, q, n, r in rows
    ]


def relevance_by_query(conn: psycopg.Connection) -> list[tuple[str, str, list[str], list[str]]]:
    """(query, language, relevant assets, judged assets) per judged query: the latest mark of an asset
    for a query wins, whichever algorithm showed it."""
    rows = conn.execute(
        """SELECT query, language,
                  array_agg(asset_id ORDER BY asset_id) FILTER (WHERE relevant),
                  array_agg(asset_id ORDER BY asset_id)
           FROM (SELECT DISTINCT ON (query, language, asset_id) query, language, asset_id, relevant
                 FROM judgments ORDER BY query, language, asset_id, judged_at DESC) latest
           GROUP BY query, language ORDER BY query, language"""
    ).fetchall()
    return [(q, lang, list(rel or []), list(judged)) for q, lang, rel, judged in rows]
