"""Warm renderers in child processes, each render under a time limit.

OpenGL contexts are slow to create (about a second on the CPU rasteriser, with the imports) and
a pathological mesh can take minutes or crash the driver. So renders run in long-lived child
processes: the first render of a process pays the start-up once, every later one only draws,
and a render past its time limit (or a crash) costs only that child, which is replaced.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from dataclasses import dataclass, field
from multiprocessing import get_context
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import numpy as np

from assetlib.media.meshes import MeshError
from assetlib.media.render import RenderSettings

log = logging.getLogger(__name__)

START_TIMEOUT_S = 120.0  # imports + an OpenGL context, on a loaded machine


class RenderTimeout(MeshError):
    """A mesh whose render took longer than the time limit (the renderer was stopped)."""


class RendererCrashed(MeshError):
    """The renderer process died on a mesh (a driver fault on odd content); it is replaced."""


@dataclass
class Rendered:
    """One render's outcome: views as RGBA arrays (or the PNGs written), cameras, notes, seconds."""

    views: list[np.ndarray] = field(default_factory=list)
    cameras: list[dict] = field(default_factory=list)
    paths: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    vertices: int = 0
    simplified: bool = False
    seconds: float = 0.0


def _child(conn: Connection, settings: RenderSettings) -> None:
    """The child's loop: one Renderer, then (mesh path, output folder or None) → Rendered or error."""
    from assetlib.media.render import Renderer, render_mesh_file, write_views

    renderer = Renderer(settings)
    conn.send(("ready", os.getpid()))
    while True:
        try:
            request = conn.recv()
        except EOFError:
            break
        if request is None:
            break
        mesh_path, folder = request
        started = time.perf_counter()
        try:
            views, prepared = render_mesh_file(renderer, Path(mesh_path))
            out = Rendered(notes=prepared.notes, vertices=prepared.vertices, simplified=prepared.simplified)
            if folder is None:
                out.views = [rgba for rgba, _ in views]
                out.cameras = [camera for _, camera in views]
            else:
                out.paths = write_views(views, Path(folder))
            out.seconds = time.perf_counter() - started
            conn.send(("ok", out))
        except MeshError as exc:
            conn.send(("mesh", f"{type(exc).__name__}\t{exc}"))
        except Exception as exc:  # a renderer failure on one mesh must not end the worker
            conn.send(("error", f"render failed: {type(exc).__name__}: {exc}"))
    renderer.close()


def _mesh_error(payload: str) -> MeshError:
    """The child's MeshError again in the parent, as its own type where known."""
    from assetlib.media.mesh_prep import NothingToRender
    from assetlib.media.meshes import UnsupportedMeshFormat

    kinds: dict[str, type[MeshError]] = {
        "NothingToRender": NothingToRender,
        "UnsupportedMeshFormat": UnsupportedMeshFormat,
    }
    name, _, message = payload.partition("\t")
    return kinds.get(name, MeshError)(message)


class RenderWorker:
    """One warm renderer process; `render` sends it a mesh and waits at most `timeout` seconds."""

    def __init__(self, settings: RenderSettings, timeout: float, name: str = "render") -> None:
        self.settings = settings
        self.timeout = timeout
        self.name = name
        self._process: Any = None
        self._conn: Connection | None = None
        self.renders = 0
        self.restarts = 0
        self._lock = threading.Lock()  # one conversation with the child at a time (warm-up included)

    def start(self) -> None:
        """Start the child and wait until its renderer is up (the cold start, paid once)."""
        with self._lock:
            self._start()

    def _start(self) -> None:
        if self._process is not None and self._process.is_alive():
            return
        started = time.perf_counter()
        ctx = get_context("spawn")  # fork would copy the parent's threads and OpenGL state
        parent, child = ctx.Pipe()
        self._process = ctx.Process(target=_child, args=(child, self.settings), name=self.name, daemon=True)
        self._process.start()
        child.close()
        self._conn = parent
        if not parent.poll(START_TIMEOUT_S):
            self._kill()
            raise RuntimeError(f"the {self.name} process did not start within {START_TIMEOUT_S:.0f}s")
        try:
            parent.recv()
        except EOFError as exc:
            self._kill()
            raise RuntimeError(f"the {self.name} process died while starting its renderer") from exc
        took = time.perf_counter() - started
        log.info("%s: renderer process %d up in %.1fs", self.name, self._process.pid, took)

    def render(self, mesh_path: Path, folder: Path | None = None, label: str | None = None) -> Rendered:
        """Render a mesh file (into `folder` as PNGs + JSON, or returned as arrays) within the limit."""
        with self._lock:
            return self._render(mesh_path, folder, label)

    def _render(self, mesh_path: Path, folder: Path | None, label: str | None) -> Rendered:
        self._start()
        assert self._conn is not None
        label = label or Path(mesh_path).name
        self._conn.send((str(mesh_path), str(folder) if folder is not None else None))
        if not self._conn.poll(self.timeout):
            self._kill()
            raise RenderTimeout(
                f"{label}: rendering took longer than {self.timeout:g}s, the limit; the render was "
                "stopped (a simpler or smaller mesh renders faster)"
            )
        try:
            kind, payload = self._conn.recv()
        except (EOFError, OSError) as exc:
            self._kill()
            raise RendererCrashed(f"{label}: the renderer crashed on this file") from exc
        self.renders += 1
        if kind == "ok":
            return payload
        if kind == "mesh":
            raise _mesh_error(payload)
        raise RuntimeError(payload)

    def _kill(self) -> None:
        if self._process is not None:
            self._process.kill()
            self._process.join(5)
            self.restarts += 1
        if self._conn is not None:
            self._conn.close()
        self._process, self._conn = None, None

    def close(self) -> None:
        """Stop the child (politely, then for good)."""
        with self._lock:
            self._close()

    def _close(self) -> None:
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


class RenderPool:
    """A few warm RenderWorkers shared by threads: `render` borrows an idle one (waiting if none is)."""

    def __init__(self, settings: RenderSettings, timeout: float, size: int = 1, name: str = "render") -> None:
        self.workers = [RenderWorker(settings, timeout, f"{name}-{i}") for i in range(max(1, size))]
        self._idle: queue.Queue[RenderWorker] = queue.Queue()
        for worker in self.workers:
            self._idle.put(worker)

    def warm(self) -> threading.Thread:
        """Start every worker beside the caller (the API does this at start-up)."""

        def start_all() -> None:
            for worker in self.workers:
                try:
                    worker.start()
                except Exception as exc:  # a later render reports it to its caller
                    log.warning("%s: could not start: %s", worker.name, exc)

        thread = threading.Thread(target=start_all, name="assetlib-render-warm", daemon=True)
        thread.start()
        return thread

    def render(self, mesh_path: Path, folder: Path | None = None, label: str | None = None) -> Rendered:
        """Render on the next idle worker."""
        worker = self._idle.get()
        try:
            return worker.render(mesh_path, folder, label)
        finally:
            self._idle.put(worker)

    def close(self) -> None:
        """Stop every worker."""
        for worker in self.workers:
            worker.close()
