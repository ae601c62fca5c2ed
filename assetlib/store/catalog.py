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


def store_counts(conn: psycopg.Connection) -> dict[str, Any]:
    """How many assets the catalog holds and how many vectors each encoder has."""
    assets = scalar(conn, "SELECT count(*) FROM assets")
    vectors = {
        tables.name: sum(
            scalar(conn, sql.SQL("SELECT count(*) FROM {}").format(tables.ident(kind))) for kind in VectorKind
        )
        for tables in list_encoders(conn)
    }
    return {"assets": int(assets), "vectors": vectors}
