"""Bulk, idempotent, resumable loads: binary COPY into staging, de-duplicate, upsert what changed."""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import psycopg
from pgvector import HalfVector
from psycopg import sql
from psycopg.types.json import Jsonb

from assetlib.library.asset import Asset
from assetlib.store.db import one_row
from assetlib.store.schema import CATALOG_COLUMNS, KEY_COLUMNS, METADATA_COLUMNS, EncoderTables, list_encoders
from assetlib.vocab import VectorKind

log = logging.getLogger(__name__)

CATALOG_TARGET = "assets"
_SHOWN_IDS = 20  # how many offending row ids an error message names


class BadVectorsError(ValueError):
    """Vectors refused before anything was written; `rows` maps each reason to the offending row ids."""

    def __init__(self, target: str, rows: dict[str, list[str]]) -> None:
        self.rows = rows
        parts = []
        for reason, ids in rows.items():
            shown = ", ".join(ids[:_SHOWN_IDS]) + (
                f" … (+{len(ids) - _SHOWN_IDS} more)" if len(ids) > _SHOWN_IDS else ""
            )
            parts.append(f"{len(ids)} {reason}: {shown}")
        super().__init__(f"refused to load into {target}: " + "; ".join(parts))


@dataclass(frozen=True)
class LoadResult:
    """What one batch did to the store."""

    target: str
    batch_key: str
    rows: int
    inserted: int
    updated: int
    unchanged: int
    skipped: bool
    seconds: float

    @property
    def rows_per_second(self) -> float:
        """Throughput of this batch (rows offered per wall second)."""
        return self.rows / self.seconds if self.seconds > 0 else float("inf")


def vector_target(tables: EncoderTables, kind: VectorKind) -> str:
    """The load_batches target name of one encoder's vectors of one kind."""
    return f"{tables.name}/{kind.value}"


def row_ids(kind: VectorKind, asset_ids: Sequence[str], sub_keys: Sequence | None) -> list[str]:
    """Readable ids of rows for error messages: 'a1', 'a1#view3', 'a1@zh'."""
    if kind is VectorKind.VIEW:
        return [f"{a}#view{int(v)}" for a, v in zip(asset_ids, sub_keys or (), strict=True)]
    if kind is VectorKind.CAPTION:
        return [f"{a}@{lang}" for a, lang in zip(asset_ids, sub_keys or (), strict=True)]
    return list(asset_ids)


def check_vectors(vectors: np.ndarray, dim: int, ids: Sequence[str], target: str) -> np.ndarray:
    """Return the vectors as float32 or raise BadVectorsError naming NaN/Inf, zero and wrong-size rows."""
    if vectors.ndim != 2:
        raise BadVectorsError(target, {f"batch is not a 2-d array (shape {vectors.shape})": list(ids)})
    if len(ids) != vectors.shape[0]:
        raise ValueError(f"{target}: {len(ids)} ids for {vectors.shape[0]} vectors")
    if vectors.shape[1] != dim:
        raise BadVectorsError(
            target, {f"vectors of {vectors.shape[1]} dimensions, expected {dim}": list(ids)}
        )
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    problems: dict[str, list[str]] = {}
    finite = np.isfinite(vectors).all(axis=1)
    if not finite.all():
        problems["vectors with NaN or Inf"] = [ids[int(i)] for i in np.flatnonzero(~finite)]
    # Cosine distance to a zero vector is NaN and HNSW silently skips it: never store one.
    norms = np.linalg.norm(np.where(np.isfinite(vectors), vectors, 0.0), axis=1)
    zero = finite & (norms < 1e-12)
    if zero.any():
        problems["zero vectors"] = [ids[int(i)] for i in np.flatnonzero(zero)]
    if problems:
        raise BadVectorsError(target, problems)
    return vectors


def _row_hashes(vectors: np.ndarray) -> list[str]:
    return [hashlib.blake2b(row.tobytes(), digest_size=12).hexdigest() for row in vectors]


def _batch_hash(ids: Sequence[str], row_hashes: Sequence[str]) -> str:
    digest = hashlib.blake2b(digest_size=16)
    for rid, rh in zip(ids, row_hashes, strict=True):
        digest.update(rid.encode())
        digest.update(rh.encode())
    return digest.hexdigest()


def _already_loaded(conn: psycopg.Connection, target: str, batch_key: str, batch_hash: str) -> bool:
    row = conn.execute(
        "SELECT batch_hash FROM load_batches WHERE target = %s AND batch_key = %s", (target, batch_key)
    ).fetchone()
    return row is not None and row[0] == batch_hash


def _record_batch(conn: psycopg.Connection, result: LoadResult, batch_hash: str) -> None:
    conn.execute(
        """INSERT INTO load_batches (target, batch_key, batch_hash, rows, inserted, updated, unchanged)
           VALUES (%s, %s, %s, %s, %s, %s, %s)
           ON CONFLICT (target, batch_key) DO UPDATE SET batch_hash = EXCLUDED.batch_hash,
               rows = EXCLUDED.rows, inserted = EXCLUDED.inserted, updated = EXCLUDED.updated,
               unchanged = EXCLUDED.unchanged, finished_at = now()""",
        (
            result.target,
            result.batch_key,
            batch_hash,
            result.rows,
            result.inserted,
            result.updated,
            result.unchanged,
        ),
    )


def _log_result(result: LoadResult) -> None:
    log.info(
        "%s %s: %d rows, %d inserted, %d updated, %d unchanged (%.0f rows/s)",
        result.target,
        result.batch_key,
        result.rows,
        result.inserted,
        result.updated,
        result.unchanged,
        result.rows_per_second,
    )


def _last_per_key(ids: Sequence[str]) -> list[int]:
    """Indices of the last occurrence of each row id, in their original order."""
    last = {rid: i for i, rid in enumerate(ids)}
    return sorted(last.values()) if len(last) < len(ids) else list(range(len(ids)))


def _require_own_transaction(conn: psycopg.Connection, what: str) -> None:
    if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
        raise RuntimeError(
            f"{what} needs a connection outside any open transaction (autocommit), so that each "
            "batch commits on its own and a crash loses at most the batch in flight"
        )


def load_vectors(
    conn: psycopg.Connection,
    tables: EncoderTables,
    kind: VectorKind,
    asset_ids: Sequence[str],
    vectors: np.ndarray,
    batch_key: str,
    sub_keys: Sequence | None = None,
) -> LoadResult:
    """Load one batch of one encoder's vectors in one transaction; a re-run of the same batch is a no-op.

    `sub_keys` are the view indices (VIEW) or language codes (CAPTION) beside each asset id.
    Vectors of unknown assets, NaN/Inf, zero or wrong-size vectors refuse the whole batch.
    """
    started = time.perf_counter()
    target = vector_target(tables, kind)
    asset_ids = [str(a) for a in asset_ids]
    if (kind is VectorKind.ASSET) != (sub_keys is None):
        raise ValueError(f"{target}: sub_keys are {'not ' if kind is VectorKind.ASSET else ''}expected")
    ids = row_ids(kind, asset_ids, sub_keys)
    vectors = check_vectors(np.asarray(vectors), tables.dim, ids, target)
    hashes = _row_hashes(vectors)
    batch_hash = _batch_hash(ids, hashes)
    # De-duplicate here, keeping the last row per key: sorting 3 kB vector rows in SQL would spill.
    keep = _last_per_key(ids)
    if len(keep) < len(ids):
        log.warning(
            "%s %s: %d duplicate keys, keeping the last of each", target, batch_key, len(ids) - len(keep)
        )
        asset_ids = [asset_ids[i] for i in keep]
        sub_keys = [sub_keys[i] for i in keep] if sub_keys is not None else None
        vectors, hashes = vectors[keep], [hashes[i] for i in keep]
    unique = len(keep)
    keys = KEY_COLUMNS[kind]
    _require_own_transaction(conn, "load_vectors")
    with conn.transaction():
        if _already_loaded(conn, target, batch_key, batch_hash):
            log.debug("%s %s: already loaded, skipped", target, batch_key)
            return LoadResult(
                target, batch_key, len(ids), 0, 0, len(ids), True, time.perf_counter() - started
            )
        sub_type = {VectorKind.VIEW: "int2", VectorKind.CAPTION: "text"}.get(kind)
        conn.execute(
            sql.SQL(
                "CREATE TEMP TABLE assetlib_staging (asset_id text, {sub} embedding {vt}, "
                "content_hash text) ON COMMIT DROP"
            ).format(
                sub=sql.SQL("{} {},").format(sql.Identifier(keys[1]), sql.SQL(sub_type))
                if sub_type
                else sql.SQL(""),
                vt=tables.vector_type,
            )
        )
        columns = ["asset_id", *keys[1:], "embedding", "content_hash"]
        with conn.cursor().copy(
            sql.SQL("COPY assetlib_staging ({}) FROM STDIN WITH (FORMAT BINARY)").format(
                sql.SQL(", ").join(map(sql.Identifier, columns))
            )
        ) as copy:
            copy.set_types(["text", *([sub_type] if sub_type else []), tables.storage, "text"])
            # pgvector's binary dumper takes numpy arrays for vector, HalfVector objects for halfvec.
            adapt = HalfVector if tables.storage == "halfvec" else (lambda v: v)
            if sub_type and sub_keys is not None:
                for aid, sub, vec, h in zip(asset_ids, sub_keys, vectors, hashes, strict=True):
                    copy.write_row((aid, sub, adapt(vec), h))
            else:
                for aid, vec, h in zip(asset_ids, vectors, hashes, strict=True):
                    copy.write_row((aid, adapt(vec), h))
        unknown = [
            r[0]
            for r in conn.execute(
                """SELECT DISTINCT s.asset_id FROM assetlib_staging s
                   LEFT JOIN assets a USING (asset_id) WHERE a.asset_id IS NULL ORDER BY 1"""
            )
        ]
        if unknown:
            raise BadVectorsError(target, {"vectors of assets missing from the catalog": unknown})
        inserted, updated = _upsert_from_staging(conn, tables, kind)
        result = LoadResult(
            target,
            batch_key,
            len(ids),
            inserted,
            updated,
            unique - inserted - updated,
            False,
            time.perf_counter() - started,
        )
        # Recorded in the same transaction: a crash either keeps the batch and its record, or neither.
        _record_batch(conn, result, batch_hash)
    _log_result(result)
    return result


def _upsert_from_staging(
    conn: psycopg.Connection, tables: EncoderTables, kind: VectorKind
) -> tuple[int, int]:
    keys = KEY_COLUMNS[kind]
    key_list = sql.SQL(", ").join(map(sql.Identifier, keys))
    staged_keys = sql.SQL(", ").join(sql.SQL("s.{}").format(sql.Identifier(k)) for k in keys)
    row = one_row(
        conn,
        sql.SQL(
            """WITH src AS (
                   SELECT {staged_keys}, s.embedding, s.content_hash, a.high_quality
                   FROM assetlib_staging s JOIN assets a USING (asset_id)
               ), up AS (
                   INSERT INTO {table} AS t ({keys}, embedding, content_hash, high_quality)
                   SELECT {keys}, embedding, content_hash, high_quality FROM src
                   ON CONFLICT ({keys}) DO UPDATE
                       SET embedding = EXCLUDED.embedding, content_hash = EXCLUDED.content_hash,
                           high_quality = EXCLUDED.high_quality, updated_at = now()
                       WHERE t.content_hash IS DISTINCT FROM EXCLUDED.content_hash
                          OR t.high_quality IS DISTINCT FROM EXCLUDED.high_quality
                   RETURNING (xmax = 0) AS fresh
               )
               SELECT count(*) FILTER (WHERE fresh), count(*) FILTER (WHERE NOT fresh) FROM up"""
        ).format(staged_keys=staged_keys, table=tables.ident(kind), keys=key_list),
    )
    return int(row[0]), int(row[1])


def _asset_row(asset: Asset) -> tuple:
    record = {
        "objaverse_uid": asset.objaverse_uid,
        "caption_en": asset.caption_en,
        "caption_cn": asset.caption_cn,
        "view_count": asset.view_count,
        "view_paths": [str(p) for p in asset.view_paths],
        "glb_path": str(asset.glb_path) if asset.glb_path else None,
        "high_quality": bool(asset.high_quality),
        "tags": list(asset.tags),
        "attributes": asset.attributes,
        "name": asset.name,
        "license": asset.license,
        "categories": list(asset.categories),
        "lvis": list(asset.lvis),
        "face_count": asset.face_count,
        "vertex_count": asset.vertex_count,
        "like_count": asset.like_count,
        "public_views": asset.public_views,
        "glb_relpath": asset.glb_relpath,
    }
    digest = hashlib.blake2b(
        json.dumps(record, sort_keys=True, ensure_ascii=False, default=str).encode(), digest_size=12
    ).hexdigest()
    return (
        asset.asset_id,
        record["objaverse_uid"],
        record["caption_en"],
        record["caption_cn"],
        record["view_count"],
        record["view_paths"],
        record["glb_path"],
        record["high_quality"],
        record["tags"],
        Jsonb(record["attributes"]),
        *(record[c] for c in METADATA_COLUMNS),
        digest,
    )


def load_catalog(conn: psycopg.Connection, assets: Sequence[Asset], batch_key: str) -> LoadResult:
    """Upsert one batch of catalog rows; quality-flag changes reach every encoder's vector rows."""
    started = time.perf_counter()
    rows = [_asset_row(a) for a in assets]
    empty = [r[0] for r in rows if not r[0] or not r[0].strip()]
    if empty:
        raise BadVectorsError(CATALOG_TARGET, {"assets with an empty id": [repr(e) for e in empty]})
    batch_hash = _batch_hash([r[0] for r in rows], [r[-1] for r in rows])
    columns = list(CATALOG_COLUMNS)
    _require_own_transaction(conn, "load_catalog")
    with conn.transaction():
        if _already_loaded(conn, CATALOG_TARGET, batch_key, batch_hash):
            return LoadResult(
                CATALOG_TARGET, batch_key, len(rows), 0, 0, len(rows), True, time.perf_counter() - started
            )
        conn.execute(
            "CREATE TEMP TABLE assetlib_catalog_staging (ord serial, LIKE assets INCLUDING DEFAULTS) "
            "ON COMMIT DROP"
        )
        with conn.cursor().copy(
            sql.SQL("COPY assetlib_catalog_staging ({}) FROM STDIN").format(
                sql.SQL(", ").join(map(sql.Identifier, columns))
            )
        ) as copy:
            for row in rows:
                copy.write_row(row)
        assignments = sql.SQL(", ").join(
            sql.SQL("{0} = EXCLUDED.{0}").format(sql.Identifier(c)) for c in columns[1:]
        )
        changed = conn.execute(
            sql.SQL(
                """WITH src AS (
                       SELECT DISTINCT ON (asset_id) {cols} FROM assetlib_catalog_staging
                       ORDER BY asset_id, ord DESC
                   )
                   INSERT INTO assets AS t ({cols}) SELECT {cols} FROM src
                   ON CONFLICT (asset_id) DO UPDATE SET {assignments}, updated_at = now()
                   WHERE t.content_hash IS DISTINCT FROM EXCLUDED.content_hash
                   RETURNING asset_id, (xmax = 0) AS fresh"""
            ).format(cols=sql.SQL(", ").join(map(sql.Identifier, columns)), assignments=assignments)
        ).fetchall()
        inserted = sum(1 for _, fresh in changed if fresh)
        updated_ids = [aid for aid, fresh in changed if not fresh]
        if updated_ids:
            _propagate_quality(conn, updated_ids)
        result = LoadResult(
            CATALOG_TARGET,
            batch_key,
            len(rows),
            inserted,
            len(updated_ids),
            len(rows) - len(changed),
            False,
            time.perf_counter() - started,
        )
        _record_batch(conn, result, batch_hash)
    _log_result(result)
    return result


def _propagate_quality(conn: psycopg.Connection, asset_ids: list[str]) -> None:
    # The quality flag is copied into vector rows so that filtered kNN stays a single-table index scan.
    for tables in list_encoders(conn):
        for kind in VectorKind:
            conn.execute(
                sql.SQL(
                    """UPDATE {t} v SET high_quality = a.high_quality FROM assets a
                       WHERE v.asset_id = a.asset_id AND a.asset_id = ANY(%s)
                         AND v.high_quality IS DISTINCT FROM a.high_quality"""
                ).format(t=tables.ident(kind)),
                (asset_ids,),
            )


def chunked(items: Sequence, size: int) -> Iterable[tuple[int, Sequence]]:
    """Yield (batch number, slice) pairs of at most `size` items."""
    for number, start in enumerate(range(0, len(items), size)):
        yield number, items[start : start + size]
