"""Warm renderers in child processes, each render under a time limit.

OpenGL contexts are slow to create (about a second on the CPU rasteriser, with the imports) and
a pathological mesh can take minutes or crash the driver. So renders run in long-lived child
processes: the first render of a process pays the start-up once, every later one only draws,
and a render past its time limit (or a crash) costs only that child, which is replaced.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path

import numpy as np

from assetlib.media.meshes import MeshError
from assetlib.media.render import RenderSettings
from assetlib.procs import ChildDied, ChildProcess, ChildTimeout, announce_ready

log = logging.getLogger(__name__)


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
    announce_ready(conn)
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
        self.renders = 0
        self._child = ChildProcess(_child, (settings,), name)

    @property
    def restarts(self) -> int:
        """How often the renderer was replaced after a timeout or a crash."""
        return self._child.restarts

    def start(self) -> None:
        """Start the child and wait until its renderer is up (the cold start, paid once)."""
        self._child.start()

    def render(self, mesh_path: Path, folder: Path | None = None, label: str | None = None) -> Rendered:
        """Render a mesh file (into `folder` as PNGs + JSON, or returned as arrays) within the limit."""
        label = label or Path(mesh_path).name
        request = (str(mesh_path), str(folder) if folder is not None else None)
        try:
            kind, payload = self._child.ask(request, self.timeout)
        except ChildTimeout as exc:
            raise RenderTimeout(
                f"{label}: rendering took longer than {self.timeout:g}s, the limit; the render was "
                "stopped (a simpler or smaller mesh renders faster)"
            ) from exc
        except ChildDied as exc:
            raise RendererCrashed(f"{label}: the renderer crashed on this file") from exc
        self.renders += 1
        if kind == "ok":
            return payload
        if kind == "mesh":
            raise _mesh_error(payload)
        raise RuntimeError(payload)

    def close(self) -> None:
        """Stop the child (politely, then for good)."""
        self._child.close()


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
