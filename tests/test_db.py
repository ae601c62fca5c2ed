"""Embedded and external servers: reports, clear errors, concurrent starts, a server that goes away."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import httpx
import pytest

from assetlib.config import load_settings
from assetlib.faces.cli import main
from assetlib.store.db import Database, DatabaseUnavailable, embedded_server_settings, stop_embedded
from assetlib.store.report import DatabaseReport, database_report
from assetlib.store.schema import MIGRATIONS


def test_db_check_reports_versions_on_the_embedded_default(settings, monkeypatch, capsys):
    monkeypatch.setenv("ASSETLIB_HOME", str(settings.home))
    monkeypatch.setenv("DB_NAME", settings.db_name)
    assert main(["db", "check"]) == 0
    out = capsys.readouterr().out
    assert "PostgreSQL: 18." in out and "pgvector:   0.8." in out and "status:     OK" in out
    assert "assets" in out and "schema_migrations" in out


def test_report_meets_the_minimum_versions(db):
    with db.connection() as conn:
        report = database_report(conn, db.where)
    assert report.server_major >= 16
    assert tuple(int(x) for x in report.pgvector_version.split(".")[:2]) >= (0, 8)
    assert report.problems() == []
    old = DatabaseReport("x", "15.4", 15, None, 1, [], [])
    assert old.problems() == [
        "PostgreSQL 15.4 is older than 16",
        "the pgvector extension is not installed in this database",
    ]


def test_unreachable_external_server_is_a_clear_error(monkeypatch, capsys):
    monkeypatch.setenv("DB_HOST", "127.0.0.1")
    monkeypatch.setenv("DB_PORT", "1")  # nothing listens on port 1
    monkeypatch.setenv("DB_CONNECT_TIMEOUT", "2")
    assert main(["db", "check"]) == 3
    err = capsys.readouterr().err
    assert "cannot connect to PostgreSQL at 127.0.0.1:1/assetlib" in err
    assert "Traceback" not in err


CONCURRENT_OPEN = textwrap.dedent(
    """
    import sys
    from assetlib.config import load_settings
    from assetlib.store.db import Database
    settings = load_settings(environ={}, home=sys.argv[1])
    with Database.open(settings) as db, db.connection() as conn:
        print(conn.execute("SELECT count(*) FROM schema_migrations").fetchone()[0])
        # shared_buffers in bytes: the tuned value only once the first process restarted the server.
        row = conn.execute("SELECT setting::bigint * 8192 FROM pg_settings WHERE name = 'shared_buffers'")
        print(row.fetchone()[0])
    """
)


@pytest.mark.slow
def test_concurrent_processes_share_one_fresh_embedded_server():
    tuned_shared_buffers = int(embedded_server_settings()["shared_buffers"].removesuffix("MB")) * 1024 * 1024
    with tempfile.TemporaryDirectory(prefix="alc-") as home:
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", CONCURRENT_OPEN, home],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(3)
        ]
        outputs = [p.communicate(timeout=120) for p in procs]
        try:
            for proc, (out, err) in zip(procs, outputs, strict=True):
                assert proc.returncode == 0, err[-3000:]
                migrations, shared_buffers = out.split()
                assert migrations == str(len(MIGRATIONS))  # migrated once, not once per process
                # Every process saw the tuned server: none joined before the first one's restart.
                assert int(shared_buffers) == tuned_shared_buffers
            # The last process to leave stopped the server.
            assert not (Path(home) / "pgdata" / "postmaster.pid").exists()
        finally:
            stop_embedded(Path(home) / "pgdata")


@pytest.mark.slow
def test_a_server_that_goes_away_gives_a_clear_error_and_comes_back():
    with tempfile.TemporaryDirectory(prefix="alg-") as home:
        settings = load_settings(environ={}, home=home, db_connect_timeout=2)
        db = Database.open(settings)
        try:
            assert db.ping()
            assert stop_embedded(settings.pgdata)
            with pytest.raises(DatabaseUnavailable, match="PostgreSQL") as raised, db.connection() as conn:
                conn.execute("SELECT 1")
            assert raised.value.retry_after == 1
            # The same Database (no reopen) starts the embedded server again and is back by itself.
            assert db.supervisor.wait_until_up(10)
            assert db.ping() and db.supervisor.outage is None
        finally:
            db.close()
            stop_embedded(settings.pgdata)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_an_api_stopped_with_sigterm_stops_the_embedded_server_it_used():
    # uvicorn re-raises SIGTERM after shutting down; with Python's default handler the process
    # died without atexit and the embedded server ran on with nobody registered.
    with tempfile.TemporaryDirectory(prefix="alt-") as home:
        env = {k: v for k, v in os.environ.items() if not k.startswith("DB_")} | {"ASSETLIB_HOME": home}
        port = _free_port()
        api = subprocess.Popen(
            [sys.executable, "-m", "assetlib", "serve", "api", "--port", str(port)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        pgdata = Path(home) / "pgdata"
        try:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                try:
                    if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.5)
            assert (pgdata / "postmaster.pid").exists()
            api.send_signal(signal.SIGTERM)
            _, err = api.communicate(timeout=60)
            assert api.returncode == 0, err[-2000:]
            assert not (pgdata / "postmaster.pid").exists()  # the last user left: the server stopped
        finally:
            if api.poll() is None:
                api.kill()
            stop_embedded(pgdata)
