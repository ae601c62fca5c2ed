"""ANN indexes: how to build them (HNSW / IVFFlat), whether they fit in memory, prewarming, lookups."""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, replace
from typing import Literal

import psycopg
from psycopg import sql

from assetlib.config import Settings, setting_default
from assetlib.store.db import physical_memory, scalar
from assetlib.store.layout import guard_alternatives
from assetlib.store.schema import EncoderTables, SchemaError
from assetlib.vocab import MAX_INDEX_DIMS, ImageLayout, VectorKind, VectorStorage

log = logging.getLogger(__name__)

OPCLASS = {"vector": "vector_cosine_ops", "halfvec": "halfvec_cosine_ops"}


@dataclass(frozen=True)
class IndexBuild:
    """One index built: which, how, on how many rows, in how long."""

    index: str
    table: str
    method: str
    rows: int
    seconds: float
    where: str | None = None


@dataclass(frozen=True)
class IndexParams:
    """How to build ANN indexes; every default is the Settings default (`from_settings` for a process)."""

    method: Literal["auto", "hnsw", "ivfflat"] = setting_default("vector_index")
    m: int = setting_default("hnsw_m")
    ef_construction: int = setting_default("hnsw_ef_construction")
    lists: int | None = setting_default("ivfflat_lists")
    # auto: per-asset tables at least this large get IVFFlat
    ivfflat_min_rows: int = setting_default("ivfflat_min_rows")
    layout: ImageLayout = setting_default("image_layout")  # which tables get an index
    maintenance_work_mem: str = setting_default("maintenance_work_mem")
    memory_budget: int | None = None  # bytes an index may take; None = no guard (external server)

    @classmethod
    def from_settings(cls, settings: Settings) -> IndexParams:
        """The configured parameters, with the memory guard sized to this machine for the embedded server."""
        budget = int(settings.max_index_memory_fraction * physical_memory()) if settings.embedded else None
        return cls(
            method=settings.vector_index,
            m=settings.hnsw_m,
            ef_construction=settings.hnsw_ef_construction,
            lists=settings.ivfflat_lists,
            ivfflat_min_rows=settings.ivfflat_min_rows,
            layout=ImageLayout(settings.image_layout),
            maintenance_work_mem=settings.maintenance_work_mem,
            memory_budget=budget,
        )


BYTES_PER_VALUE = {"vector": 4, "halfvec": 2}


class IndexTooLarge(SchemaError):
    """An index build that would not fit in memory, refused before it starts."""


def estimate_index_bytes(rows: int, dim: int, storage: str, method: str = "hnsw", m: int = 16) -> int:
    """Expected size of an ANN index: whole index tuples packed into 8 kB pages.

    An HNSW element is its vector plus ~100 bytes of header and 2·m neighbour pointers (6 bytes each);
    tuples do not span pages, so a 768-d `vector` element (≈ 3.4 kB) fills half a page. That model
    gives exactly the 3,125 MB this project's store benchmark measured for 800,000 such rows at m=16.
    """
    vector = dim * BYTES_PER_VALUE[storage] + 8
    per_row = vector + 100 + 12 * m if method == "hnsw" else vector + 40
    per_page = max(1, 8160 // per_row)
    return math.ceil(rows / per_page) * 8192 if per_row <= 8160 else rows * per_row


def index_method(params: IndexParams, kind: VectorKind, rows: int) -> Literal["hnsw", "ivfflat"]:
    """The ANN method for one table: the setting, or for `auto` HNSW except on large per-asset tables.

    `auto` follows the million-asset benchmark (benchmarks/scale_bench.py, README "Search at a
    million assets"): over 1M per-asset means, IVFFlat builds 5x faster than HNSW and its
    candidates re-rank to a higher recall at a lower p95; below that HNSW needs no tuning and
    keeps its recall as rows are added, which IVFFlat's fixed lists do not.
    """
    if params.method != "auto":
        return params.method
    return "ivfflat" if kind is VectorKind.ASSET and rows >= params.ivfflat_min_rows else "hnsw"


def check_index_fits(tables: EncoderTables, kind: VectorKind, rows: int, params: IndexParams) -> None:
    """Refuse (IndexTooLarge) an index that would not fit in the memory budget, naming the alternatives."""
    if params.memory_budget is None:
        return
    table, dim, storage = tables.table(kind), tables.dim, tables.storage
    need = estimate_index_bytes(rows, dim, storage, params.method, params.m)
    if need <= params.memory_budget:
        return
    options = []
    if storage == "vector":
        half = estimate_index_bytes(rows, dim, "halfvec", params.method, params.m)
        options.append(f"VECTOR_STORAGE=halfvec (≈ {_size(half)})")
    options += guard_alternatives(kind)
    if params.method == "hnsw":
        ivf = estimate_index_bytes(rows, dim, storage, "ivfflat")
        if ivf <= params.memory_budget:  # at high dimensions IVFFlat is no smaller: not worth naming
            options.append(f"VECTOR_INDEX=ivfflat (≈ {_size(ivf)}, lower recall at the same speed)")
    options.append("raising MAX_INDEX_MEMORY_FRACTION if the machine has nothing else to do")
    raise IndexTooLarge(
        f"{params.method} index on {table}: {rows:,} rows × {dim}-d {storage} ≈ {_size(need)}, over the "
        f"{_size(params.memory_budget)} allowed (MAX_INDEX_MEMORY_FRACTION of this machine's RAM); "
        "refused before building. Alternatives: " + "; ".join(options)
    )


def _size(n: int) -> str:
    return f"{n / 1024**3:.1f} GB" if n >= 1024**3 else f"{n / 1024**2:.0f} MB"


def ivfflat_lists(rows: int) -> int:
    """pgvector's advice: rows/1000 lists up to 1M rows, sqrt(rows) beyond."""
    return max(1, rows // 1000) if rows <= 1_000_000 else int(math.sqrt(rows))


@dataclass(frozen=True)
class Prewarmed:
    """One ANN index read into shared buffers."""

    index: str
    mb: float
    seconds: float
    mode: str  # "buffer" (shared buffers) or "read" (the OS page cache, when shared buffers are full)


def prewarm_indexes(conn: psycopg.Connection) -> list[Prewarmed]:
    """Read every HNSW/IVFFlat index into memory (pg_prewarm), smallest first.

    At a million assets a cold index costs the first queries hundreds of milliseconds each (measured:
    730 ms for the first pooled query against 7 ms warm); reading it once, sequentially, takes
    seconds. Indexes go into shared buffers while 80% of them is free of other indexes, the rest
    into the OS page cache. A server without pg_prewarm, or a role that may not create it, is
    logged and skipped.
    """
    try:
        conn.execute("CREATE EXTENSION IF NOT EXISTS pg_prewarm")
    except psycopg.Error as exc:
        log.warning("pg_prewarm not available (%s): indexes stay cold until queried", str(exc).strip())
        return []
    rows = sorted(_ann_index_sizes(conn), key=lambda row: row[1])
    buffers = scalar(conn, "SELECT setting::bigint * 8192 FROM pg_settings WHERE name = 'shared_buffers'")
    done: list[Prewarmed] = []
    used = 0
    for name, size in rows:
        mode = "buffer" if used + size <= 0.8 * buffers else "read"
        used += size if mode == "buffer" else 0
        started = time.perf_counter()
        conn.execute("SELECT pg_prewarm(%s::regclass, %s)", (name, mode))
        done.append(Prewarmed(name, round(size / 2**20, 1), round(time.perf_counter() - started, 2), mode))
        log.info("prewarmed %s (%.1f MB, %s) in %.2fs", name, done[-1].mb, mode, done[-1].seconds)
    return done


def _ann_index_sizes(conn: psycopg.Connection, table: str | None = None) -> list[tuple[str, int]]:
    """(name, bytes) of the HNSW/IVFFlat indexes on one table, or on every table."""
    return conn.execute(
        """SELECT i.relname, pg_relation_size(i.oid) FROM pg_index x
           JOIN pg_class i ON i.oid = x.indexrelid JOIN pg_class t ON t.oid = x.indrelid
           JOIN pg_am am ON am.oid = i.relam
           WHERE am.amname IN ('hnsw', 'ivfflat') AND (%(table)s::text IS NULL OR t.relname = %(table)s)""",
        {"table": table},
    ).fetchall()


def ann_indexes(conn: psycopg.Connection, table: str) -> list[str]:
    """Names of the HNSW/IVFFlat indexes on one table."""
    return [name for name, _ in _ann_index_sizes(conn, table)]


def drop_indexes(conn: psycopg.Connection, table: str) -> list[str]:
    """Drop every ANN index of one vector table (before a large reload)."""
    names = ann_indexes(conn, table)
    for name in names:
        conn.execute(sql.SQL("DROP INDEX IF EXISTS {}").format(sql.Identifier(name)))
    return names


def build_indexes(
    conn: psycopg.Connection,
    tables: EncoderTables,
    params: IndexParams,
    kinds: tuple[VectorKind, ...] = tuple(VectorKind),
) -> list[IndexBuild]:
    """(Re)build cosine ANN indexes on an encoder's tables after loading, then ANALYZE them.

    Caption tables get one partial index per language, so a language-filtered query is
    served by its own index instead of filtering another language's neighbours away.
    """
    limit = MAX_INDEX_DIMS[VectorStorage(tables.storage)]
    if tables.dim > limit:
        raise SchemaError(
            f"encoder {tables.name}: pgvector indexes {tables.storage} up to {limit} dimensions, "
            f"this one has {tables.dim}; use halfvec storage (VECTOR_STORAGE=halfvec) for up to "
            f"{MAX_INDEX_DIMS[VectorStorage.HALFVEC]}"
        )
    builds: list[IndexBuild] = []
    with conn.transaction():
        # SET LOCAL: the raised memory must not leak into a pooled connection's later use.
        conn.execute(
            sql.SQL("SET LOCAL maintenance_work_mem = {}").format(sql.Literal(params.maintenance_work_mem))
        )
        for kind in kinds:
            builds.extend(_build_kind_indexes(conn, tables, params, kind))
    return builds


def _build_kind_indexes(
    conn: psycopg.Connection, tables: EncoderTables, params: IndexParams, kind: VectorKind
) -> list[IndexBuild]:
    builds: list[IndexBuild] = []
    table = tables.table(kind)
    rows = int(scalar(conn, sql.SQL("SELECT count(*) FROM {}").format(tables.ident(kind))))
    params = replace(params, method=index_method(params, kind, rows))
    check_index_fits(tables, kind, rows, params)  # before anything is dropped
    drop_indexes(conn, table)
    if rows == 0:
        log.info("%s: empty, no index built", table)
        return builds
    partitions: list[tuple[str, sql.Composed | sql.SQL, str | None]] = []
    if kind is VectorKind.CAPTION:
        languages = [
            r[0]
            for r in conn.execute(
                sql.SQL("SELECT DISTINCT language FROM {} ORDER BY 1").format(tables.ident(kind))
            )
        ]
        for lang in languages:
            where = sql.SQL(" WHERE language = {}").format(sql.Literal(lang))
            partitions.append((f"{table}_{lang}_{params.method}", where, f"language = '{lang}'"))
    else:
        partitions.append((f"{table}_{params.method}", sql.SQL(""), None))
    if params.method == "hnsw":
        options = sql.SQL("WITH (m = {}, ef_construction = {})").format(
            sql.Literal(params.m), sql.Literal(params.ef_construction)
        )
    else:
        options = sql.SQL("WITH (lists = {})").format(sql.Literal(params.lists or ivfflat_lists(rows)))
    for index_name, condition, where_text in partitions:
        started = time.perf_counter()
        conn.execute(
            sql.SQL(
                "CREATE INDEX {index} ON {table} USING {method} (embedding {opclass}) {options}{where}"
            ).format(
                index=sql.Identifier(index_name),
                table=tables.ident(kind),
                method=sql.SQL(params.method),
                opclass=sql.SQL(OPCLASS[tables.storage]),
                options=options,
                where=condition,
            )
        )
        seconds = time.perf_counter() - started
        builds.append(IndexBuild(index_name, table, params.method, rows, seconds, where_text))
        log.info("built %s on %s (%d rows) in %.1fs", params.method, index_name, rows, seconds)
    conn.execute(sql.SQL("ANALYZE {}").format(tables.ident(kind)))
    return builds
