"""Watches a database that went away: probes it, restarts a dead embedded server, says when it is back.

A request that fails to get a working connection reports it here and fails at once; a watcher
thread then probes the server every `interval` seconds (restarting the embedded one when its
postmaster is gone) until a probe succeeds. While the outage lasts, callers are told so without
touching the pool, so nobody waits on it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger(__name__)

PROBE_INTERVAL_S = 0.25


@dataclass(frozen=True)
class Outage:
    """The database is unreachable since `since` (time.monotonic()), for `reason`."""

    since: float
    reason: str

    @property
    def seconds(self) -> float:
        """How long the outage has lasted so far."""
        return time.monotonic() - self.since


class Supervisor:
    """One database's health: the current outage (if any) and the thread that ends it."""

    def __init__(
        self,
        where: str,
        probe: Callable[[], None],
        restart: Callable[[], None] | None,
        on_recovered: Callable[[], None],
        interval: float = PROBE_INTERVAL_S,
    ) -> None:
        self.where = where
        self._probe = probe  # raises when the server does not answer
        self._restart = restart  # starts a dead embedded server; None for an external one
        self._on_recovered = on_recovered
        self._interval = interval
        self._lock = threading.Lock()
        self._outage: Outage | None = None
        self._watcher: threading.Thread | None = None
        self._up = threading.Event()
        self._up.set()
        self._closed = threading.Event()
        self.outages = 0  # how many outages this process has seen end (for logs and tests)

    @property
    def outage(self) -> Outage | None:
        """The outage in progress, or None while the server answers."""
        return self._outage

    def report(self, reason: str) -> None:
        """A caller could not use the database: check it from a watcher thread (returns at once)."""
        with self._lock:
            if self._closed.is_set() or (self._watcher is not None and self._watcher.is_alive()):
                return
            self._up.clear()
            self._watcher = threading.Thread(
                target=self._watch, args=(reason,), name="assetlib-db-watch", daemon=True
            )
            self._watcher.start()

    def wait_until_up(self, timeout: float) -> bool:
        """Block until no outage is in progress (or `timeout` seconds); True when the server is up."""
        return self._up.wait(timeout)

    def close(self) -> None:
        """Stop watching (the watcher thread ends at its next probe)."""
        self._closed.set()
        self._up.set()

    def _watch(self, reason: str) -> None:
        started = time.monotonic()
        attempts = 0
        while not self._closed.is_set():
            attempts += 1
            try:
                self._probe()
            except Exception as exc:  # any failure to answer is the outage; its text is the reason
                self._begin(started, f"{reason}; now: {first_line(exc)}")
                self._try_restart()
                self._closed.wait(self._interval)
                continue
            break
        if self._closed.is_set():
            return
        was_down = self._outage is not None
        if was_down or attempts > 1:
            # Connections of the pool predate the outage: the caller replaces them.
            try:
                self._on_recovered()
            except Exception:
                log.exception("database %s: recovering the pool failed", self.where)
        with self._lock:
            self._outage = None
            self._up.set()
        if was_down:
            self.outages += 1
            took = time.monotonic() - started
            log.warning("database %s is back after %.1fs (%d probes)", self.where, took, attempts)
        else:
            log.info("database %s answers; the failure that was reported was not an outage", self.where)

    def _begin(self, started: float, reason: str) -> None:
        with self._lock:
            first = self._outage is None
            self._outage = Outage(self._outage.since if self._outage else started, reason)
        if first:
            log.warning(
                "database %s unavailable (%s); retrying every %.2fs", self.where, reason, self._interval
            )

    def _try_restart(self) -> None:
        if self._restart is None:
            return
        try:
            self._restart()
        except Exception as exc:  # e.g. old backends still hold shared memory: try again next probe
            log.info("database %s: restart not possible yet: %s", self.where, first_line(exc))


def first_line(exc: BaseException) -> str:
    """An exception's first line of text (its type name when it has none): short enough for a log."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
