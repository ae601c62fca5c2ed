"""What `assetlib db check` shows: server and pgvector versions, tables with row counts, indexes."""

from __future__ import annotations

from dataclasses import dataclass, field

import psycopg

from assetlib.store.db import scalar
from assetlib.store.schema import schema_version

MIN_SERVER_MAJOR = 16
MIN_PGVECTOR = (0, 8)


@dataclass
class TableInfo:
    """One table of the assetlib schema."""

    name: str
    rows: int
    size: str
    indexes: list[str] = field(default_factory=list)


@dataclass
class DatabaseReport:
    """A snapshot of the database that `db check` prints and `/health` reuses."""

    where: str
    server_version: str
    server_major: int
    pgvector_version: str | None
    schema_version: int
    encoders: list[dict]
    tables: list[TableInfo]

    def problems(self) -> list[str]:
        """Reasons this database cannot serve assetlib as configured (empty when all is well)."""
        found = []
        if self.server_major < MIN_SERVER_MAJOR:
            found.append(f"PostgreSQL {self.server_version} is older than {MIN_SERVER_MAJOR}")
        if self.pgvector_version is None:
            found.append("the pgvector extension is not installed in this database")
        elif _version_tuple(self.pgvector_version) < MIN_PGVECTOR:
            found.append(
                f"pgvector {self.pgvector_version} is older than 0.8 (filtered searches need iterative scans)"
            )
        return found


def _version_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in text.split(".") if p.isdigit())


def database_report(conn: psycopg.Connection, where: str) -> DatabaseReport:
    """Collect versions, encoders, and every table of the public schema with rows, size and indexes."""
    version = scalar(conn, "SHOW server_version")
    major = int(scalar(conn, "SHOW server_version_num")) // 10000
    row = conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'").fetchone()
    encoders = [
        {"name": r[0], "dim": r[1], "storage": r[2], "tables": r[3]}
        for r in conn.execute("SELECT name, dim, storage, table_prefix FROM encoders ORDER BY name")
    ]
    tables = []
    for (name,) in conn.execute(
        "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename"
    ).fetchall():
        rows = scalar(conn, psycopg.sql.SQL("SELECT count(*) FROM {}").format(psycopg.sql.Identifier(name)))
        size = scalar(conn, "SELECT pg_size_pretty(pg_total_relation_size(%s::regclass))", (name,))
        indexes = [
            f"{r[0]} ({r[1]}, {r[2]})"
            for r in conn.execute(
                """SELECT i.relname, am.amname, pg_size_pretty(pg_relation_size(i.oid))
                   FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid
                   JOIN pg_class t ON t.oid = x.indrelid JOIN pg_am am ON am.oid = i.relam
                   WHERE t.relname = %s ORDER BY i.relname""",
                (name,),
            )
        ]
        tables.append(TableInfo(name, int(rows), size, indexes))
    return DatabaseReport(
        where, version, major, row[0] if row else None, schema_version(conn), encoders, tables
    )


def format_report(report: DatabaseReport) -> str:
    """Human-readable lines of a report."""
    lines = [
        f"database:   {report.where}",
        f"PostgreSQL: {report.server_version}",
        f"pgvector:   {report.pgvector_version or 'not installed'}",
        f"schema:     version {report.schema_version}",
        f"encoders:   {len(report.encoders)}",
    ]
    lines += [
        f"  - {e['name']}: {e['dim']}-d {e['storage']} (tables {e['tables']}_*)" for e in report.encoders
    ]
    lines.append("tables:")
    width = max((len(t.name) for t in report.tables), default=10)
    for t in report.tables:
        lines.append(f"  {t.name:<{width}}  {t.rows:>12,} rows  {t.size:>10}")
        lines += [f"  {'':<{width}}    index {ix}" for ix in t.indexes]
    problems = report.problems()
    lines.append("status:     " + ("OK" if not problems else "PROBLEMS: " + "; ".join(problems)))
    return "\n".join(lines)
