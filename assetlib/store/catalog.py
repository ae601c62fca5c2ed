"""The catalog as the faces read it: one asset's record, and how many assets and vectors there are."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql

from assetlib.store.schema import list_encoders
from assetlib.vocab import VectorKind

RECORD_COLUMNS = (
    "asset_id",
    "objaverse_uid",
    "caption_en",
    "caption_cn",
    "view_count",
    "view_paths",
    "glb_path",
    "high_quality",
    "tags",
    "attributes",
)


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
    assets = conn.execute("SELECT count(*) FROM assets").fetchone()[0]
    vectors = {
        tables.name: sum(
            conn.execute(sql.SQL("SELECT count(*) FROM {}").format(tables.ident(kind))).fetchone()[0]
            for kind in VectorKind
        )
        for tables in list_encoders(conn)
    }
    return {"assets": int(assets), "vectors": vectors}
