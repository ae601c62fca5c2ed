"""Schema: versioned migrations, per-encoder vector tables, and ANN index builds."""

from __future__ import annotations

import hashlib
import logging
import math
import os
import re
import time
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import TYPE_CHECKING, Literal

import psycopg
from psycopg import sql

if TYPE_CHECKING:
    from assetlib.config import Settings

log = logging.getLogger(__name__)

# Index dimension limits of pgvector 0.8 (HNSW and IVFFlat alike).
MAX_INDEX_DIMS = {"vector": 2000, "halfvec": 4000}
OPCLASS = {"vector": "vector_cosine_ops", "halfvec": "halfvec_cosine_ops"}

# Serialises concurrent migrators (two notebooks opening the store at once).
_MIGRATION_LOCK = 0x61737365  # "asse"

MIGRATIONS: list[tuple[int, str, str]] = [
    (
        1,
        "catalog, encoders, load batches",
        """
        CREATE EXTENSION IF NOT EXISTS vector;
        CREATE TABLE assets (
            asset_id      text PRIMARY KEY,
            objaverse_uid text,
            caption_en    text,
            caption_cn    text,
            view_count    integer NOT NULL DEFAULT 0 CHECK (view_count >= 0),
            glb_path      text,
            high_quality  boolean NOT NULL DEFAULT false,
            tags          text[] NOT NULL DEFAULT '{}',
            attributes    jsonb NOT NULL DEFAULT '{}',
            content_hash  text NOT NULL,
            updated_at    timestamptz NOT NULL DEFAULT now()
        );
        CREATE INDEX assets_objaverse_uid_idx ON assets (objaverse_uid);
        CREATE TABLE encoders (
            name         text PRIMARY KEY,
            table_prefix text NOT NULL UNIQUE,
            dim          integer NOT NULL CHECK (dim > 0),
            storage      text NOT NULL CHECK (storage IN ('vector', 'halfvec')),
            info         jsonb NOT NULL DEFAULT '{}',
            created_at   timestamptz NOT NULL DEFAULT now()
        );
        CREATE TABLE load_batches (
            target      text NOT NULL,
            batch_key   text NOT NULL,
            batch_hash  text NOT NULL,
            rows        integer NOT NULL,
            inserted    integer NOT NULL,
            updated     integer NOT NULL,
            unchanged   integer NOT NULL,
            finished_at timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (target, batch_key)
        );
        """,
    ),
    (
        2,
        "view paths in the catalog, so faces can show an asset's renders",
        """
        ALTER TABLE assets ADD COLUMN view_paths text[] NOT NULL DEFAULT '{}';
        """,
    ),
]


class VectorKind(StrEnum):
    """What a vector row embeds: a caption, one rendered view, or a whole asset (fused or pooled)."""

    CAPTION = "caption"
    VIEW = "view"
    ASSET = "asset"


# Primary key columns besides asset_id, per kind.
KEY_COLUMNS: dict[VectorKind, tuple[str, ...]] = {
    VectorKind.CAPTION: ("asset_id", "language"),
    VectorKind.VIEW: ("asset_id", "view_index"),
    VectorKind.ASSET: ("asset_id",),
}


@dataclass(frozen=True)
class EncoderTables:
    """Where one encoder's vectors live and how they are stored."""

    name: str
    prefix: str
    dim: int
    storage: Literal["vector", "halfvec"]

    def table(self, kind: VectorKind) -> str:
        """Table name for one kind of vector of this encoder."""
        return f"{self.prefix}_{kind.value}"

    def ident(self, kind: VectorKind) -> sql.Identifier:
        """The table as a safe SQL identifier."""
        return sql.Identifier(self.table(kind))

    @property
    def vector_type(self) -> sql.Composable:
        """SQL type of the embedding column, e.g. vector(768)."""
        return sql.SQL("{}({})").format(sql.SQL(self.storage), sql.Literal(self.dim))


class SchemaError(RuntimeError):
    """The stored schema disagrees with what the caller asked for."""


def migrate(conn: psycopg.Connection) -> list[int]:
    """Apply pending migrations under an advisory lock; return the versions applied."""
    applied: list[int] = []
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
        conn.execute(
            """CREATE TABLE IF NOT EXISTS schema_migrations (
                   version integer PRIMARY KEY, name text NOT NULL,
                   applied_at timestamptz NOT NULL DEFAULT now())"""
        )
        done = {row[0] for row in conn.execute("SELECT version FROM schema_migrations")}
        for version, name, ddl in MIGRATIONS:
            if version in done:
                continue
            conn.execute(ddl)
            conn.execute("INSERT INTO schema_migrations (version, name) VALUES (%s, %s)", (version, name))
            applied.append(version)
            log.info("applied migration %d: %s", version, name)
    return applied


def schema_version(conn: psycopg.Connection) -> int:
    """Highest applied migration (0 for an empty database)."""
    row = conn.execute("SELECT coalesce(max(version), 0) FROM schema_migrations").fetchone()
    return int(row[0]) if row else 0


def table_prefix(encoder_name: str) -> str:
    """A short, safe, collision-free table prefix for an encoder name like 'siglip:demo-v1'."""
    slug = re.sub(r"[^a-z0-9]+", "_", encoder_name.lower()).strip("_")[:30]
    digest = hashlib.sha1(encoder_name.encode()).hexdigest()[:6]
    return f"emb_{slug}_{digest}"


def inline_storage_fits(dim: int, storage: str) -> bool:
    """Whether a row with this vector fits a heap page uncompressed (8 kB page, headroom for keys)."""
    return dim * (2 if storage == "halfvec" else 4) + 8 <= 7000


def get_encoder(conn: psycopg.Connection, name: str) -> EncoderTables | None:
    """The stored tables of an encoder, or None when it has none yet."""
    row = conn.execute("SELECT table_prefix, dim, storage FROM encoders WHERE name = %s", (name,)).fetchone()
    return EncoderTables(name, row[0], int(row[1]), row[2]) if row else None


def list_encoders(conn: psycopg.Connection) -> list[EncoderTables]:
    """Every encoder with tables in this database."""
    rows = conn.execute("SELECT name, table_prefix, dim, storage FROM encoders ORDER BY name").fetchall()
    return [EncoderTables(r[0], r[1], int(r[2]), r[3]) for r in rows]


def ensure_encoder(
    conn: psycopg.Connection,
    name: str,
    dim: int,
    storage: Literal["vector", "halfvec"] = "vector",
    info: dict | None = None,
) -> EncoderTables:
    """Create an encoder's caption, view and asset tables if needed; refuse a changed dimension."""
    if dim <= 0:
        raise SchemaError(f"encoder {name}: dimension must be positive, got {dim}")
    existing = get_encoder(conn, name)
    if existing is not None:
        if existing.dim != dim:
            raise SchemaError(
                f"encoder {name} is stored with {existing.dim} dimensions but now yields {dim}: "
                "give the new model another name, or drop the old vectors first (assetlib db drop-encoder)"
            )
        return existing
    tables = EncoderTables(name, table_prefix(name), dim, storage)
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
        if get_encoder(conn, name) is not None:
            return get_encoder(conn, name)  # type: ignore[return-value]
        for kind, keys in KEY_COLUMNS.items():
            extra = {
                VectorKind.CAPTION: sql.SQL("language text NOT NULL CHECK (language ~ '^[a-z]{2,3}$'),"),
                VectorKind.VIEW: sql.SQL("view_index smallint NOT NULL CHECK (view_index >= 0),"),
                VectorKind.ASSET: sql.SQL(""),
            }[kind]
            conn.execute(
                sql.SQL(
                    """CREATE TABLE {table} (
                        asset_id     text NOT NULL REFERENCES assets (asset_id) ON DELETE CASCADE,
                        {extra}
                        embedding    {vtype} NOT NULL,
                        encoder      text NOT NULL DEFAULT {name} CHECK (encoder = {name}),
                        high_quality boolean NOT NULL DEFAULT false,
                        content_hash text NOT NULL,
                        updated_at   timestamptz NOT NULL DEFAULT now(),
                        PRIMARY KEY ({keys})
                    )"""
                ).format(
                    table=tables.ident(kind),
                    extra=extra,
                    vtype=tables.vector_type,
                    name=sql.Literal(name),
                    keys=sql.SQL(", ").join(map(sql.Identifier, keys)),
                )
            )
            if inline_storage_fits(dim, storage):
                # Keep vectors in the heap row: TOASTed out of line they cost a second lookup per row
                # on load and on every exact re-rank (pgvector stores vector with EXTERNAL by default).
                conn.execute(
                    sql.SQL("ALTER TABLE {} ALTER COLUMN embedding SET STORAGE PLAIN").format(
                        tables.ident(kind)
                    )
                )
        conn.execute(
            "INSERT INTO encoders (name, table_prefix, dim, storage, info) VALUES (%s, %s, %s, %s, %s)",
            (name, tables.prefix, dim, storage, psycopg.types.json.Jsonb(info or {})),
        )
    log.info("created vector tables for encoder %s (%d-d %s, prefix %s)", name, dim, storage, tables.prefix)
    return tables


def drop_encoder(conn: psycopg.Connection, name: str) -> bool:
    """Drop an encoder's vector tables and load records; return whether it existed."""
    tables = get_encoder(conn, name)
    if tables is None:
        return False
    with conn.transaction():
        for kind in VectorKind:
            conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(tables.ident(kind)))
        conn.execute("DELETE FROM load_batches WHERE target LIKE %s", (f"{name}/%",))
        conn.execute("DELETE FROM encoders WHERE name = %s", (name,))
    log.info("dropped encoder %s", name)
    return True


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
    """How to build ANN indexes (see Settings for the defaults)."""

    method: Literal["auto", "hnsw", "ivfflat"] = "auto"
    m: int = 16
    ef_construction: int = 64
    lists: int | None = None
    ivfflat_min_rows: int = 500_000  # auto: per-asset tables at least this large get IVFFlat
    index_views: bool = False  # IMAGE_LAYOUT=views: also index every view (pooled needs only per-asset)
    maintenance_work_mem: str = "2GB"
    memory_budget: int | None = None  # bytes an index may take; None = no guard (external server)


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


def physical_memory() -> int:
    """Bytes of RAM on this machine."""
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def index_params_from(settings: Settings) -> IndexParams:
    """IndexParams from settings, with the memory guard sized to this machine for the embedded server."""
    budget = int(settings.max_index_memory_fraction * physical_memory()) if settings.embedded else None
    return IndexParams(
        method=settings.vector_index,
        m=settings.hnsw_m,
        ef_construction=settings.hnsw_ef_construction,
        lists=settings.ivfflat_lists,
        ivfflat_min_rows=settings.ivfflat_min_rows,
        index_views=settings.image_layout == "views",
        maintenance_work_mem=settings.maintenance_work_mem,
        memory_budget=budget,
    )


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


def check_index_fits(table: str, rows: int, dim: int, storage: str, params: IndexParams) -> None:
    """Refuse (IndexTooLarge) an index that would not fit in the memory budget, naming the alternatives."""
    if params.memory_budget is None:
        return
    need = estimate_index_bytes(rows, dim, storage, params.method, params.m)
    if need <= params.memory_budget:
        return
    options = []
    if storage == "vector":
        half = estimate_index_bytes(rows, dim, "halfvec", params.method, params.m)
        options.append(f"VECTOR_STORAGE=halfvec (≈ {_size(half)})")
    if table.endswith("_view"):
        options.append(
            "IMAGE_LAYOUT=pooled (the default): no per-view index; the per-asset table (one mean "
            "vector per asset, 1/8 of the rows) gives candidates, re-ranked exactly by view"
        )
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
    buffers = conn.execute(
        "SELECT setting::bigint * 8192 FROM pg_settings WHERE name = 'shared_buffers'"
    ).fetchone()[0]
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


def present_kinds(conn: psycopg.Connection, tables: EncoderTables) -> list[VectorKind]:
    """The kinds of vectors this encoder has rows of."""
    return [
        kind
        for kind in VectorKind
        if conn.execute(sql.SQL("SELECT EXISTS (SELECT 1 FROM {})").format(tables.ident(kind))).fetchone()[0]
    ]


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
    if tables.dim > MAX_INDEX_DIMS[tables.storage]:
        raise SchemaError(
            f"encoder {tables.name}: pgvector indexes {tables.storage} up to "
            f"{MAX_INDEX_DIMS[tables.storage]} dimensions, this one has {tables.dim}; "
            "use halfvec storage (VECTOR_STORAGE=halfvec) for up to 4000"
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
    rows = int(conn.execute(sql.SQL("SELECT count(*) FROM {}").format(tables.ident(kind))).fetchone()[0])
    params = replace(params, method=index_method(params, kind, rows))
    check_index_fits(table, rows, tables.dim, tables.storage, params)  # before anything is dropped
    drop_indexes(conn, table)
    if rows == 0:
        log.info("%s: empty, no index built", table)
        return builds
    partitions: list[tuple[str, sql.Composable, str | None]] = []
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
    for index_name, where, where_text in partitions:
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
                where=where,
            )
        )
        seconds = time.perf_counter() - started
        builds.append(IndexBuild(index_name, table, params.method, rows, seconds, where_text))
        log.info("built %s on %s (%d rows) in %.1fs", params.method, index_name, rows, seconds)
    conn.execute(sql.SQL("ANALYZE {}").format(tables.ident(kind)))
    return builds
