"""Micro-batching: one worker thread encodes every local query; queries that wait together go as one batch.

Why: on a small machine, concurrent requests that each run a forward pass fight over the same
cores (8 clients made encoding 18x slower than one). A single worker owns the torch threads and
encodes whatever has queued while it was busy in one call, so the cost per query falls as the
load rises. Remote encoders (DashScope) are called directly: their time is spent waiting on the
network, and one slow request must not hold up the others.
"""

from __future__ import annotations

import logging
import os
import queue
import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from assetlib.encoders.base import Encoder, TextRole

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Encoded:
    """One query's vector and what it cost: time queued, time of the batch's forward pass, batch size."""

    vector: np.ndarray
    queue_ms: float
    encode_ms: float
    batch: int
    cached: bool = False  # the vector came from the query cache (search/query_cache.py): no encoding

    def timings(self) -> dict[str, float]:
        """The figures a search reports beside its database time."""
        return {
            "queue_ms": round(self.queue_ms, 2),
            "encode_ms": round(self.encode_ms, 2),
            "batch": self.batch,
            "cached": int(self.cached),
        }


# What queries can share one encoder call: texts of one language and role, single images, or the
# views of one object (each object its own group member, pooled by the encoder).
_Key = tuple[int, str, str, str]


@dataclass
class _Job:
    key: _Key
    encoder: Encoder
    payload: str | Image.Image | Sequence[Image.Image]
    language: str = "en"
    role: TextRole = "query"
    future: Future[Encoded] = field(default_factory=Future)
    queued: float = field(default_factory=time.perf_counter)


def _encode(encoder: Encoder, jobs: Sequence[_Job]) -> np.ndarray:
    """One encoder call for jobs that share a key."""
    kind = jobs[0].key[1]
    if kind == "text":
        return encoder.encode_texts([str(j.payload) for j in jobs], jobs[0].language, role=jobs[0].role)
    if kind == "image":
        return encoder.encode_images([j.payload for j in jobs], role="query")  # type: ignore[misc]
    return encoder.encode_asset_views([list(j.payload) for j in jobs], role="query")  # type: ignore[arg-type]


class EncodeBatcher:
    """Queues query encodings for one worker thread, which encodes each group of waiting queries at once."""

    def __init__(self, max_batch: int = 32, window_ms: float = 1.0, threads: int = 0) -> None:
        self.max_batch = max_batch
        # Once queries have been seen to overlap, the worker waits this long for more to join a
        # batch; a lone client never waits.
        self.window_s = window_ms / 1000
        # Half the cores by default: the HTTP server and PostgreSQL need the rest. Measured on 2 cores
        # at 8 clients (README "Serving under load"): one torch thread gave text→image p95 51–57 ms
        # in five runs, two threads 58–76 ms, at about the same throughput.
        self.threads = threads or max(1, (os.cpu_count() or 2) // 2)
        self._queue: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._worker: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._overlapping = False

    # -- what callers use ----------------------------------------------------------------------
    def text(self, encoder: Encoder, text: str, language: str, role: TextRole = "query") -> Encoded:
        """The vector of one query text, encoded with whatever else is waiting."""
        if not encoder.info.local:
            return self._direct(lambda: encoder.encode_texts([text], language, role=role)[0])
        return self._submit(_Job((id(encoder), "text", language, role), encoder, text, language, role))

    def images(self, encoder: Encoder, images: Sequence[Image.Image]) -> Encoded:
        """The vector of one image query, or of several views of one object (pooled by the encoder)."""
        single = len(images) == 1
        if not encoder.info.local:
            if single:
                return self._direct(lambda: encoder.encode_images(list(images), role="query")[0])
            return self._direct(lambda: encoder.encode_asset_views([list(images)], role="query")[0])
        if single:
            return self._submit(_Job((id(encoder), "image", "", ""), encoder, images[0]))
        return self._submit(_Job((id(encoder), "views", "", ""), encoder, list(images)))

    def close(self) -> None:
        """Stop the worker after the queries already queued."""
        if self._worker is not None:
            self._queue.put(None)
            self._worker.join(timeout=30)
            self._worker = None

    # -- the worker ----------------------------------------------------------------------------
    @staticmethod
    def _direct(call: Callable[[], np.ndarray]) -> Encoded:
        started = time.perf_counter()
        vector = call()
        return Encoded(vector, 0.0, (time.perf_counter() - started) * 1000, 1)

    def _submit(self, job: _Job) -> Encoded:
        self._ensure_worker()
        self._queue.put(job)
        return job.future.result()

    def _ensure_worker(self) -> None:
        with self._start_lock:
            if self._worker is None or not self._worker.is_alive():
                self._worker = threading.Thread(target=self._loop, name="query-encoder", daemon=True)
                self._worker.start()

    def _loop(self) -> None:
        torch = sys.modules.get("torch")  # imported by a local encoder; absent when they live in a child
        if torch is not None:
            # The one thread that runs forward passes; nothing else here encodes queries.
            torch.set_num_threads(self.threads)
        while True:
            first = self._queue.get()
            if first is None:
                return
            jobs = self._gather(first)
            stop = any(j is None for j in jobs)
            self._run([j for j in jobs if j is not None])
            if stop:
                return

    def _gather(self, first: _Job) -> list[_Job | None]:
        """The first job and every job that is waiting (or, under overlap, arrives within the window)."""
        jobs: list[_Job | None] = [first]
        deadline = time.perf_counter() + (self.window_s if self._overlapping else 0.0)
        while len(jobs) < self.max_batch:
            try:
                remaining = deadline - time.perf_counter()
                job = self._queue.get(timeout=remaining) if remaining > 0 else self._queue.get_nowait()
            except queue.Empty:
                break
            jobs.append(job)
            if job is None:
                break
        self._overlapping = len(jobs) > 1
        return jobs

    def _run(self, jobs: list[_Job]) -> None:
        groups: dict[_Key, list[_Job]] = {}
        for job in jobs:
            groups.setdefault(job.key, []).append(job)
        for group in groups.values():
            self._run_group(group)

    def _run_group(self, group: list[_Job]) -> None:
        started = time.perf_counter()
        try:
            vectors = _encode(group[0].encoder, group)
        except Exception as exc:
            if len(group) == 1:
                group[0].future.set_exception(exc)
                return
            # One bad query must not fail the others that happened to share its batch.
            log.info("query batch of %d failed (%s); encoding each alone", len(group), exc)
            for job in group:
                self._run_group([job])
            return
        done = time.perf_counter()
        encode_ms = (done - started) * 1000
        for job, vector in zip(group, vectors, strict=True):
            job.future.set_result(Encoded(vector, (started - job.queued) * 1000, encode_ms, len(group)))
