"""Views read, decoded, composited and preprocessed in worker processes, in order, a bounded number
of batches ahead of the model, with each step's time measured.

`ViewLoader(preprocess, workers=0)` does the same work inline, through the same function, so a run
with workers gives the very tensors (and vectors) a run without them does. Workers are spawned,
never forked: the parent may hold threads (a notebook kernel's, the shard writer, a DB pool) whose
locks a forked child would inherit held. Tensors come back through shared memory
(`torch.multiprocessing`'s reductions), not through the pipe.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from assetlib.encoders.base import EncoderError
from assetlib.encoders.pixels import PixelBatch, ProcessorCall
from assetlib.media.images import ImageError, load_rgb, read_image_bytes

log = logging.getLogger(__name__)

STEPS = ("read", "decode", "preprocess", "model", "write")  # per view; captions go to "text"
T = TypeVar("T")


@dataclass
class StepTimes:
    """Seconds spent in each step of the view pipeline, summed over processes, and views through it."""

    seconds: dict[str, float] = field(default_factory=lambda: dict.fromkeys(STEPS, 0.0))
    views: dict[str, int] = field(default_factory=lambda: dict.fromkeys(STEPS, 0))

    def add(self, step: str, seconds: float, views: int) -> None:
        """Count `views` (captions, for the "text" step) that took `seconds` in `step`."""
        self.seconds[step] = self.seconds.get(step, 0.0) + seconds
        self.views[step] = self.views.get(step, 0) + views

    def merge(self, other: StepTimes) -> None:
        """Add another process's times to these."""
        for step, seconds in other.seconds.items():
            self.add(step, seconds, other.views.get(step, 0))

    def rates(self) -> dict[str, float]:
        """Views per second of each step's own time (one process); a step with no views is absent."""
        return {
            step: round(self.views[step] / self.seconds[step], 1)
            for step in self.seconds
            if self.views.get(step) and self.seconds[step] > 0
        }

    def bound(self) -> str | None:
        """The slowest step per view: what bounds a run (given one process per step)."""
        rates = {k: v for k, v in self.rates().items() if k in STEPS}  # views, not captions
        return min(rates, key=rates.__getitem__) if rates else None

    def as_dict(self) -> dict[str, Any]:
        """For stage metrics: seconds, views and views/s per step, and the bounding step."""
        return {
            "seconds": {k: round(v, 3) for k, v in self.seconds.items() if self.views.get(k)},
            "views": {k: v for k, v in self.views.items() if v},
            "views_per_second": self.rates(),
            "bound_by": self.bound(),
        }


@dataclass
class Prepared:
    """One batch of views ready for the model: tensors for those that decoded, errors for the rest."""

    batch: PixelBatch | None  # None when no view of the batch could be used
    ok: list[int]  # positions, in the job's paths, of the views in `batch`
    errors: list[tuple[int, str]]  # (position, reason) of views that could not be read or decoded
    times: StepTimes


def prepare(preprocess: ProcessorCall, paths: Sequence[str]) -> Prepared:
    """Read, decode (RGBA onto white) and preprocess one batch of view files."""
    times = StepTimes()
    images, ok, errors = [], [], []
    for position, path in enumerate(paths):
        started = time.perf_counter()
        try:
            data = read_image_bytes(path)
            read = time.perf_counter()
            times.add("read", read - started, 1)
            images.append(load_rgb(data))
            times.add("decode", time.perf_counter() - read, 1)
            ok.append(position)
        except ImageError as exc:
            errors.append((position, f"{path}: {exc}" if str(path) not in str(exc) else str(exc)))
    batch = None
    if images:
        started = time.perf_counter()
        batch = preprocess(images)
        times.add("preprocess", time.perf_counter() - started, len(images))
    return Prepared(batch, ok, errors, times)


_WORKER_PREPROCESS: ProcessorCall | None = None


def _init_worker(preprocess: ProcessorCall, threads: int) -> None:
    global _WORKER_PREPROCESS
    import torch
    import torch.multiprocessing

    # Each worker is one of several processes on the machine: one intra-op thread each.
    torch.set_num_threads(threads)
    _WORKER_PREPROCESS = preprocess


def _prepare_in_worker(paths: Sequence[str]) -> Prepared:
    assert _WORKER_PREPROCESS is not None, "loader worker used before its initializer ran"
    return prepare(_WORKER_PREPROCESS, paths)


@dataclass
class _Done(Generic[T]):
    value: T

    def result(self) -> T:
        return self.value


class ViewLoader:
    """Maps (tag, paths) jobs to (tag, Prepared) in order, `workers` processes at a time (0: inline)."""

    def __init__(
        self, preprocess: ProcessorCall | None, workers: int = 0, prefetch: int | None = None
    ) -> None:
        # No preprocessor: only jobs without paths (shard boundaries) pass through, inline.
        self.preprocess, self.workers = preprocess, max(0, workers) if preprocess is not None else 0
        self.prefetch = prefetch or max(2, 2 * self.workers)
        self._pool: ProcessPoolExecutor | None = None

    def __enter__(self) -> ViewLoader:
        if self.workers and self.preprocess is not None:
            import torch.multiprocessing as mp

            started = time.perf_counter()
            self._pool = ProcessPoolExecutor(
                self.workers,
                mp_context=mp.get_context("spawn"),
                initializer=_init_worker,
                initargs=(self.preprocess, 1),
            )
            # Start them now, so that the first batch's time is not the workers' start-up.
            for f in [self._pool.submit(time.sleep, 0) for _ in range(self.workers)]:
                f.result()
            log.info("%d loader workers started in %.1fs", self.workers, time.perf_counter() - started)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def _submit(self, paths: Sequence[str]) -> Future[Prepared] | _Done[Prepared]:
        if not paths:
            return _Done(Prepared(None, [], [], StepTimes()))
        if self.preprocess is None:
            raise EncoderError("this encoder has no image preprocessor to prepare views with")
        if self._pool is None:
            return _Done(prepare(self.preprocess, paths))
        return self._pool.submit(_prepare_in_worker, list(paths))

    def map(self, jobs: Iterable[tuple[T, Sequence[str]]]) -> Iterator[tuple[T, Prepared]]:
        """Prepared batches in the order of `jobs`, consumed lazily, at most `prefetch` ahead."""
        pending: deque[tuple[T, Future[Prepared] | _Done[Prepared]]] = deque()
        source = iter(jobs)
        ahead = self.prefetch if self._pool is not None else 1
        while True:
            while len(pending) < ahead:
                job = next(source, None)
                if job is None:
                    break
                pending.append((job[0], self._submit(job[1])))
            if not pending:
                return
            tag, future = pending.popleft()
            try:
                prepared = future.result()
            except BrokenProcessPool as exc:
                raise EncoderError(
                    "a view loader worker died (out of memory, or a decoder crashed); "
                    "re-run to resume, perhaps with fewer workers"
                ) from exc
            yield tag, prepared
