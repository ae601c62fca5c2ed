"""The catalog as the faces read it: one asset's record, and how many assets and vectors there are."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql

from assetlib.store.db import scalar
from assetlib.store.schema import CATALOG_COLUMNS, list_encoders
from assetlib.vocab import VectorKind

RECORD_COLUMNS = tuple(c for c in CATALOG_COLUMNS if c != "content_hash")


def asset_record(conn: psycopg.Connection, asset_id: str) -> dict[str, Any] | None:
    """An asset's catalog row as a dict (None when there is no such asset)."""
    row = conn.execute(
        sql.SQL("SELECT {} FROM assets WHERE asset_id = %s").format(
            sql.SQL(", ").join(map(sql.Identifier, RECORD_COLUMNS))
        ),
        (asset_id,),
    ).fetchone()
    return dict(zip(RECORD_COLUMNS, row, strict=True)) if row else None


# Below this many rows a table is counted exactly (a few milliseconds); above it the count is the
# planner's estimate, which costs the same at a million rows as at ten.
EXACT_COUNT_BELOW = 50_000

# The planner's own row estimate: rows per page at the last ANALYZE times the pages there are now,
# so rows added since still show. NULL when the table was never analysed (reltuples < 0).
_ESTIMATES = """
SELECT c.relname,
       CASE WHEN c.reltuples < 0 THEN NULL
            WHEN c.relpages = 0 THEN 0
            ELSE c.reltuples / c.relpages
                 * (pg_relation_size(c.oid) / current_setting('block_size')::float8)
       END
  FROM pg_class c
 WHERE c.relname = ANY(%s) AND c.relkind = 'r' AND pg_table_is_visible(c.oid)
"""


def row_counts(conn: psycopg.Connection, tables: list[str]) -> tuple[dict[str, int], bool]:
    """Rows per table, exact for small tables and estimated above EXACT_COUNT_BELOW; True if any estimated."""
    estimates = {name: est for name, est in conn.execute(_ESTIMATES, (tables,)).fetchall()}
    counts: dict[str, int] = {}
    estimated = False
    for name in tables:
        guess = estimates.get(name)
        if guess is not None and guess >= EXACT_COUNT_BELOW:
            counts[name] = round(guess)
            estimated = True
            continue
        # Small, or never analysed: count, but never past the threshold (an unanalysed huge table
        # must not turn this into a scan).
        capped = scalar(
            conn,
            sql.SQL("SELECT count(*) FROM (SELECT 1 FROM {} LIMIT %s) t").format(sql.Identifier(name)),
            (EXACT_COUNT_BELOW + 1,),
        )
        if int(capped) > EXACT_COUNT_BELOW:
            counts[name] = max(round(guess or 0), EXACT_COUNT_BELOW)
            estimated = True
        else:
            counts[name] = int(capped)
    return counts, estimated


def store_counts(conn: psycopg.Connection) -> dict[str, Any]:
    """How many assets the catalog holds and how many vectors each encoder has, in O(1) at any size.

    `estimated` is True when a count is the planner's estimate (tables over EXACT_COUNT_BELOW rows).
    """
    encoders = list_encoders(conn)
    names = ["assets"] + [tables.table(kind) for tables in encoders for kind in VectorKind]
    counts, estimated = row_counts(conn, names)
    vectors = {t.name: sum(counts.get(t.table(kind), 0) for kind in VectorKind) for t in encoders}
    return {"assets": counts["assets"], "vectors": vectors, "estimated": estimated}
