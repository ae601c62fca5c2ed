"""A long-lived child process that answers requests over a pipe, replaced when it hangs or dies.

The renderer and the query encoder both run this way: work that is slow to start (OpenGL, torch
and weights) is started once, then served many times; work that can hang or crash (a driver on an
odd mesh, the OOM killer) costs only the child, never the caller.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from multiprocessing import get_context
from multiprocessing.connection import Connection
from typing import Any

log = logging.getLogger(__name__)

START_TIMEOUT_S = 120.0  # imports + start-up (an OpenGL context, weights), on a loaded machine


class ChildTimeout(RuntimeError):
    """The child did not answer within the time given; it was stopped (the next request starts another)."""


class ChildDied(RuntimeError):
    """The child died (a crash, the OOM killer) before answering; the next request starts another."""


def announce_ready(conn: Connection) -> None:
    """What a child's main function sends once it is ready to serve: its pid."""
    conn.send(("ready", os.getpid()))


class ChildProcess:
    """One spawned child running `target(conn, *args)`; `ask` sends a request and waits for its answer.

    The target calls `announce_ready(conn)` once started, then answers every request it receives
    with exactly one message, until it receives None. One conversation at a time (a lock).
    """

    def __init__(
        self,
        target: Callable[..., None],
        args: tuple[Any, ...],
        name: str,
        start_timeout: float = START_TIMEOUT_S,
    ) -> None:
        self.target = target
        self.args = args
        self.name = name
        self.start_timeout = start_timeout
        self.restarts = 0
        self._process: Any = None
        self._conn: Connection | None = None
        self.lock = threading.Lock()

    @property
    def pid(self) -> int | None:
        """The running child's pid (None before it starts)."""
        return self._process.pid if self._process is not None else None

    def start(self) -> None:
        """Start the child and wait until it is ready (the cold start, paid once)."""
        with self.lock:
            self._start()

    def ask(self, request: Any, timeout: float | None = None) -> Any:
        """Send one request and return the child's answer (ChildTimeout / ChildDied when there is none)."""
        with self.lock:
            self._start()
            assert self._conn is not None
            try:
                self._conn.send(request)
            except (OSError, BrokenPipeError) as exc:
                self._kill()
                raise ChildDied(f"the {self.name} process is gone") from exc
            if timeout is not None and not self._conn.poll(timeout):
                self._kill()
                raise ChildTimeout(f"the {self.name} process did not answer within {timeout:g}s")
            try:
                return self._conn.recv()
            except (EOFError, OSError) as exc:
                self._kill()
                raise ChildDied(f"the {self.name} process died") from exc

    def close(self) -> None:
        """Stop the child (politely, then for good)."""
        with self.lock:
            if self._conn is not None and self._process is not None and self._process.is_alive():
                try:
                    self._conn.send(None)
                    self._process.join(5)
                except (OSError, BrokenPipeError):
                    pass
            if self._process is not None and self._process.is_alive():
                self._process.kill()
                self._process.join(5)
            if self._conn is not None:
                self._conn.close()
            self._process, self._conn = None, None

    def _start(self) -> None:
        if self._process is not None and self._process.is_alive():
            return
        if self._process is not None:  # died since the last request
            self._kill()
        started = time.perf_counter()
        ctx = get_context("spawn")  # fork would copy the parent's threads, locks and OpenGL state
        parent, child = ctx.Pipe()
        self._process = ctx.Process(target=self.target, args=(child, *self.args), name=self.name, daemon=True)
        self._process.start()
        child.close()
        self._conn = parent
        if not parent.poll(self.start_timeout):
            self._kill()
            raise RuntimeError(f"the {self.name} process did not start within {self.start_timeout:.0f}s")
        try:
            parent.recv()
        except EOFError as exc:
            self._kill()
            raise RuntimeError(f"the {self.name} process died while starting") from exc
        log.info("%s: process %d up in %.1fs", self.name, self._process.pid, time.perf_counter() - started)

    def _kill(self) -> None:
        if self._process is not None:
            self._process.kill()
            self._process.join(5)
            self.restarts += 1
        if self._conn is not None:
            self._conn.close()
        self._process, self._conn = None, None
