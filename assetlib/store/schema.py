"""Schema: versioned migrations, and each encoder's caption, view and asset vector tables."""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from assetlib.store.db import scalar
from assetlib.vocab import VectorKind, VectorStorage

log = logging.getLogger(__name__)

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
    (
        3,
        "asset metadata (names, licences, categories, counts), keyword indexes, relevance judgments",
        """
        ALTER TABLE assets
            ADD COLUMN name         text,
            ADD COLUMN license      text,
            ADD COLUMN categories   text[] NOT NULL DEFAULT '{}',
            ADD COLUMN lvis         text[] NOT NULL DEFAULT '{}',
            ADD COLUMN face_count   integer CHECK (face_count >= 0),
            ADD COLUMN vertex_count integer CHECK (vertex_count >= 0),
            ADD COLUMN like_count   integer CHECK (like_count >= 0),
            ADD COLUMN public_views integer CHECK (public_views >= 0),
            ADD COLUMN glb_relpath  text;
        -- The words keyword search reads. IMMUTABLE so indexes can be built on them: array_to_string
        -- is only STABLE in general, but over text[] its result depends on nothing but its input.
        CREATE FUNCTION assetlib_words_en(caption text, name text, tags text[], categories text[])
            RETURNS tsvector LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
            SELECT setweight(to_tsvector('english'::regconfig, coalesce(name, '') || ' '
                                         || array_to_string(tags, ' ') || ' '
                                         || array_to_string(categories, ' ')), 'A')
                   || setweight(to_tsvector('english'::regconfig, coalesce(caption, '')), 'B')
        $$;
        -- Chinese has no spaces for a parser to split words at, and character trigrams miss a caption
        -- that puts a word between the query's (红色的椅子 / 红色椅子): index every character and
        -- every pair of adjacent characters instead (CJK bigrams, as Lucene's CJK analyser does),
        -- with the Latin words beside them, so a query's bigrams are looked up like words.
        -- (One function, calling only pg_catalog: index builds run with a search_path of pg_catalog.)
        CREATE FUNCTION assetlib_words_zh(caption_cn text, caption_en text, name text, tags text[],
                                          categories text[])
            RETURNS tsvector LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
            WITH words(t) AS (
                SELECT concat_ws(' ', caption_cn, name, array_to_string(tags, ' '),
                                 array_to_string(categories, ' '), caption_en)
            )
            SELECT array_to_tsvector(coalesce(array_agg(DISTINCT tok), '{}')) FROM (
                SELECT substr(m[1], i, w.n) AS tok
                  FROM words,
                       regexp_matches(words.t, '([\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]+)', 'g') AS m,
                       generate_series(1, char_length(m[1])) AS i, (VALUES (1), (2)) AS w(n)
                 WHERE i + w.n - 1 <= char_length(m[1])
                UNION ALL
                SELECT lower(m[1]) FROM words, regexp_matches(words.t, '([A-Za-z0-9]+)', 'g') AS m
            ) found
        $$;
        -- Stored, not only indexed: ranking reads each match's words, which an index expression
        -- would compute again per row (seconds when a common word matches 100k assets).
        ALTER TABLE assets
            ADD COLUMN words_en tsvector
                GENERATED ALWAYS AS (assetlib_words_en(caption_en, name, tags, categories)) STORED,
            ADD COLUMN words_zh tsvector
                GENERATED ALWAYS AS (
                    assetlib_words_zh(caption_cn, caption_en, name, tags, categories)
                ) STORED;
        CREATE INDEX assets_words_en_idx ON assets USING gin (words_en);
        CREATE INDEX assets_words_zh_idx ON assets USING gin (words_zh);
        -- Filters: any-of over arrays, equality on the licence, ranges on face counts.
        CREATE INDEX assets_categories_idx ON assets USING gin (categories);
        CREATE INDEX assets_lvis_idx ON assets USING gin (lvis);
        CREATE INDEX assets_tags_idx ON assets USING gin (tags);
        CREATE INDEX assets_license_idx ON assets (license);
        CREATE INDEX assets_face_count_idx ON assets (face_count);
        CREATE TABLE judgments (
            query      text NOT NULL CHECK (length(query) BETWEEN 1 AND 1000),
            language   text NOT NULL CHECK (language ~ '^[a-z]{2,3}$'),
            algorithm  text NOT NULL,
            mode       text NOT NULL,
            asset_id   text NOT NULL REFERENCES assets (asset_id) ON DELETE CASCADE,
            relevant   boolean NOT NULL,
            rank       integer CHECK (rank >= 1),
            judged_at  timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (query, language, algorithm, mode, asset_id)
        );
        CREATE INDEX judgments_asset_idx ON judgments (asset_id);
        """,
    ),
]


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
    storage: VectorStorage

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


# What an asset's annotations say (migration 3), named as on `Asset`.
METADATA_COLUMNS = (
    "name",
    "license",
    "categories",
    "lvis",
    "face_count",
    "vertex_count",
    "like_count",
    "public_views",
    "glb_relpath",
)

# The catalog's columns as the loader writes them (content_hash last: it fingerprints the others).
CATALOG_COLUMNS = (
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
    *METADATA_COLUMNS,
    "content_hash",
)


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


def encoder_tables(conn: psycopg.Connection, name: str) -> EncoderTables | None:
    """The stored tables of an encoder, or None when it has none yet."""
    row = conn.execute("SELECT table_prefix, dim, storage FROM encoders WHERE name = %s", (name,)).fetchone()
    return EncoderTables(name, row[0], int(row[1]), VectorStorage(row[2])) if row else None


def list_encoders(conn: psycopg.Connection) -> list[EncoderTables]:
    """Every encoder with tables in this database."""
    rows = conn.execute("SELECT name, table_prefix, dim, storage FROM encoders ORDER BY name").fetchall()
    return [EncoderTables(r[0], r[1], int(r[2]), VectorStorage(r[3])) for r in rows]


def ensure_encoder(
    conn: psycopg.Connection,
    name: str,
    dim: int,
    storage: VectorStorage | str,
    info: dict | None = None,
) -> EncoderTables:
    """Create an encoder's caption, view and asset tables if needed; refuse a changed dimension."""
    if dim <= 0:
        raise SchemaError(f"encoder {name}: dimension must be positive, got {dim}")
    existing = encoder_tables(conn, name)
    if existing is not None:
        if existing.dim != dim:
            raise SchemaError(
                f"encoder {name} is stored with {existing.dim} dimensions but now yields {dim}: "
                "give the new model another name, or drop the old vectors first (assetlib db drop-encoder)"
            )
        return existing
    tables = EncoderTables(name, table_prefix(name), dim, VectorStorage(storage))
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
        raced = encoder_tables(conn, name)
        if raced is not None:  # another process created them while we waited for the lock
            return raced
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
            if inline_storage_fits(dim, tables.storage):
                # Keep vectors in the heap row: TOASTed out of line they cost a second lookup per row
                # on load and on every exact re-rank (pgvector stores vector with EXTERNAL by default).
                conn.execute(
                    sql.SQL("ALTER TABLE {} ALTER COLUMN embedding SET STORAGE PLAIN").format(
                        tables.ident(kind)
                    )
                )
        conn.execute(
            "INSERT INTO encoders (name, table_prefix, dim, storage, info) VALUES (%s, %s, %s, %s, %s)",
            (name, tables.prefix, dim, tables.storage.value, Jsonb(info or {})),
        )
    log.info("created vector tables for encoder %s (%d-d %s, prefix %s)", name, dim, storage, tables.prefix)
    return tables


def drop_encoder(conn: psycopg.Connection, name: str) -> bool:
    """Drop an encoder's vector tables and load records; return whether it existed."""
    tables = encoder_tables(conn, name)
    if tables is None:
        return False
    with conn.transaction():
        for kind in VectorKind:
            conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(tables.ident(kind)))
        conn.execute("DELETE FROM load_batches WHERE target LIKE %s", (f"{name}/%",))
        conn.execute("DELETE FROM encoders WHERE name = %s", (name,))
    log.info("dropped encoder %s", name)
    return True


def present_kinds(conn: psycopg.Connection, tables: EncoderTables) -> list[VectorKind]:
    """The kinds of vectors this encoder has rows of."""
    return [
        kind
        for kind in VectorKind
        if scalar(conn, sql.SQL("SELECT EXISTS (SELECT 1 FROM {})").format(tables.ident(kind)))
    ]
