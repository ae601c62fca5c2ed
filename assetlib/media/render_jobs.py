"""Rendering a library: many meshes on warm worker processes, resumable, each under a time limit."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from assetlib.media.meshes import MeshError
from assetlib.media.render import RenderSettings, asset_render_dir
from assetlib.media.render_worker import RenderPool
from assetlib.records import Failure

log = logging.getLogger(__name__)

LIBRARY_RENDER_TIMEOUT_S = 300.0  # per asset: full detail, 8 views, on the CPU rasteriser


@dataclass(frozen=True)
class RenderJob:
    """One asset to render: its id, mesh file and output folder."""

    asset_id: str
    mesh_path: Path
    folder: Path


def _done(job: RenderJob, views: int) -> bool:
    last = job.folder / f"{views - 1:05d}" / f"{views - 1:05d}.png"
    return last.exists() and (job.folder / f"{views - 1:05d}" / f"{views - 1:05d}.json").exists()


def render_many(
    jobs: Sequence[RenderJob],
    settings: RenderSettings,
    workers: int | None = None,
    progress: bool = True,
    skip_done: bool = True,
    timeout: float = LIBRARY_RENDER_TIMEOUT_S,
) -> tuple[list[str], list[Failure]]:
    """Render meshes on worker processes, skipping finished ones; return (rendered ids, failures).

    A mesh that cannot be used, that crashes the renderer or takes longer than `timeout` seconds
    becomes a failure row; the run goes on.
    """
    from assetlib.logs import progress as tqdm

    todo = [j for j in jobs if not (skip_done and _done(j, settings.views))]
    skipped = len(jobs) - len(todo)
    if skipped:
        log.info("render: %d of %d assets already rendered, skipped", skipped, len(jobs))
    count = max(1, min(workers or os.cpu_count() or 1, len(todo) or 1))
    waiting = {j.asset_id for j in todo}
    done, failures = [j.asset_id for j in jobs if j.asset_id not in waiting], []
    started = time.perf_counter()
    if todo:
        pool = RenderPool(settings, timeout, size=count, name="library-render")
        lock = threading.Lock()
        pending = iter(todo)
        bar = tqdm(total=len(todo), desc="render", unit="asset", disable=not progress)

        def drive() -> None:
            while True:
                with lock:
                    job = next(pending, None)
                if job is None:
                    return
                error = None
                try:
                    pool.render(job.mesh_path, job.folder, label=job.asset_id)
                except MeshError as exc:
                    error = str(exc)
                except Exception as exc:  # a renderer failure on one asset must not end a long run
                    error = f"render failed: {type(exc).__name__}: {exc}"
                with lock:
                    if error is None:
                        done.append(job.asset_id)
                    else:
                        failures.append(Failure(job.asset_id, "render", error))
                        log.warning("render %s: %s", job.asset_id, error)
                    bar.update(1)

        threads = [threading.Thread(target=drive, daemon=True) for _ in range(count)]
        try:
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
        finally:
            bar.close()
            pool.close()
    elapsed = time.perf_counter() - started
    log.info(
        "rendered %d assets (%d views each) in %.1fs with %d processes; %d failed",
        len(todo) - len(failures),
        settings.views,
        elapsed,
        count,
        len(failures),
    )
    return done, failures


def iter_jobs(
    pairs: Sequence[tuple[str, Path]], render_root: Path, settings: RenderSettings
) -> Iterator[RenderJob]:
    """Render jobs for (asset id, mesh path) pairs into the G-Objaverse layout under `render_root`."""
    for asset_id, mesh_path in pairs:
        yield RenderJob(asset_id, mesh_path, asset_render_dir(render_root, asset_id, settings.campos_layout))
