"""One shard's work, shared by every engine: plan its rows, skip it when unchanged, reuse unchanged
rows by input hash, take in view vectors computed from loader batches, compute the rest, write.

A shard covers a fixed slice of the assets (sorted by id), so engines that run shards in any order
or on any machine write the same files, and a re-run finishes a killed one without repeating or
duplicating work. An asset that keeps failing becomes a failure row; it is never given a zero vector.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from assetlib.embedding.loader import Prepared, StepTimes, ViewLoader
from assetlib.embedding.plan import Row, RowKey, plan_rows, shard_fingerprint
from assetlib.embedding.shards import ShardFiles
from assetlib.encoders.base import Encoder, EncoderError, EncoderInfo, mean_of_views
from assetlib.encoders.pixels import PixelEncoder, batch_rows, slice_batch
from assetlib.library.asset import Asset
from assetlib.media.images import ImageError
from assetlib.records import Failure
from assetlib.vocab import VectorKind

log = logging.getLogger(__name__)

Tick = Callable[[int], None]  # told how many more assets of the shard are done


@dataclass
class ShardWork:
    """What one shard needs: its rows, what an earlier run left that still holds, what is computed."""

    number: int
    files: ShardFiles
    assets: int
    views: int  # view files among the shard's inputs
    rows: list[Row]
    fingerprint: str
    unchanged: bool = False
    vectors: dict[RowKey, np.ndarray] = field(default_factory=dict)  # reused and computed so far
    reused: int = 0
    computed: int = 0
    failures: list[Failure] = field(default_factory=list)

    @property
    def failed_assets(self) -> set[str]:
        """Assets with a failure in this shard: none of their rows is written."""
        return {f.asset_id for f in self.failures}


def recorded_failures(files: ShardFiles) -> list[Failure]:
    """The failures a finished shard recorded in its done marker."""
    try:
        marker = json.loads(files.done.read_text())
    except (OSError, ValueError):
        return []
    return [Failure(**f) for f in marker.get("failures", [])]


def plan_shard(
    folder: Path,
    number: int,
    chunk: Sequence[Asset],
    info: EncoderInfo,
    per_view: bool,
    languages: Sequence[str],
) -> ShardWork:
    """The shard's rows and fingerprint; unchanged when a finished shard has the same fingerprint,
    else with the rows of an earlier version whose input hash still matches taken as they were."""
    files = ShardFiles(folder, number)
    rows = [row for asset in chunk for row in plan_rows(asset, info, per_view, languages)]
    views = sum(len(a.view_paths) for a in chunk) if info.embeds_images else 0
    work = ShardWork(number, files, len(chunk), views, rows, shard_fingerprint(rows))
    if files.fingerprint() == work.fingerprint:
        work.unchanged = True
        work.failures = recorded_failures(files)
        return work
    previous = files.previous()
    for row in rows:
        if row.key in previous and previous[row.key][0] == row.input_hash:
            work.vectors[row.key] = previous[row.key][1]
    work.reused = len(work.vectors)
    return work


def pixel_rows(work: ShardWork, encoder: Encoder) -> list[Row]:
    """The view rows a loader should prepare for this shard (none for an encoder without pixels)."""
    if work.unchanged or not isinstance(encoder, PixelEncoder):
        return []
    return [r for r in work.rows if r.kind is VectorKind.VIEW and r.key not in work.vectors]


def batches_of(rows: list[Row], size: int) -> Iterator[list[Row]]:
    """Consecutive slices of at most `size` rows."""
    for start in range(0, len(rows), size):
        yield rows[start : start + size]


def _fatal(exc: Exception) -> bool:
    # A rejected API key or a missing model fails every asset alike: stop instead of listing them all.
    return getattr(exc, "status", None) in (401, 403)


def absorb(
    encoder: PixelEncoder, work: ShardWork, rows: list[Row], prepared: Prepared, times: StepTimes
) -> None:
    """Run the model on a prepared batch of the shard's view rows and keep the vectors; a view that
    could not be decoded, or that the model fails on alone, fails its asset."""
    times.merge(prepared.times)
    for position, reason in prepared.errors:
        work.failures.append(Failure(rows[position].asset_id, "embed:view", reason))
        log.warning("embed %s view of %s failed: %s", encoder.info.name, rows[position].asset_id, reason)
    if prepared.batch is None:
        return
    started = time.perf_counter()
    try:
        vectors = list(encoder.embed_pixels(prepared.batch))
        done = prepared.ok
    except EncoderError as exc:
        log.info("a batch of %d views failed (%s); retrying one by one", len(prepared.ok), exc)
        vectors, done = [], []
        for index, position in enumerate(prepared.ok):
            try:
                vectors.append(encoder.embed_pixels(slice_batch(prepared.batch, index))[0])
                done.append(position)
            except EncoderError as one:
                work.failures.append(Failure(rows[position].asset_id, "embed:view", str(one)))
    times.add("model", time.perf_counter() - started, batch_rows(prepared.batch))
    for position, vector in zip(done, vectors, strict=True):
        work.vectors[rows[position].key] = vector
        work.computed += 1


def _means_of_views(asset_rows: list[Row], rows: list[Row], vectors: dict[RowKey, np.ndarray]) -> list[Row]:
    """Give every asset row whose views all have vectors the normalised mean of them (what
    `encode_asset_views` of a per-view encoder returns, without encoding the views twice); return
    the rest, which still go to the encoder."""
    by_path = {
        (r.asset_id, r.paths[0]): vectors[r.key]
        for r in rows
        if r.kind is VectorKind.VIEW and r.key in vectors
    }
    rest = []
    for row in asset_rows:
        views = [by_path.get((row.asset_id, path)) for path in row.paths]
        if row.paths and all(v is not None for v in views):
            vectors[row.key] = mean_of_views(np.stack(views), [len(views)])[0]  # type: ignore[arg-type]
        else:
            rest.append(row)
    return rest


def _encode_group(encoder: Encoder, kind: VectorKind, language: str | None, rows: list[Row]) -> np.ndarray:
    # Views go to the encoder as files: a local encoder decodes them safely, a remote one may send
    # a public URL instead of the pixels.
    if kind is VectorKind.CAPTION:
        return encoder.encode_texts([r.text or "" for r in rows], language or "en", role="document")
    if kind is VectorKind.VIEW:
        return encoder.encode_images([r.paths[0] for r in rows])
    return encoder.encode_asset_views([list(r.paths) for r in rows])


def _encode_isolating_failures(
    encoder: Encoder, work: ShardWork, kind: VectorKind, language: str | None, group: list[Row]
) -> None:
    """Vectors for a group in one call; when it fails, row by row, so only the bad rows fail."""
    try:
        vectors = _encode_group(encoder, kind, language, group)
        work.vectors.update({row.key: vec for row, vec in zip(group, vectors, strict=True)})
        work.computed += len(group)
        return
    except (EncoderError, ImageError) as exc:
        if _fatal(exc):
            raise
        if len(group) > 1:
            log.info("a batch of %d %s rows failed (%s); retrying one by one", len(group), kind, exc)
    for row in group:
        try:
            work.vectors[row.key] = _encode_group(encoder, kind, language, [row])[0]
            work.computed += 1
        except (EncoderError, ImageError) as exc:
            if _fatal(exc):
                raise
            work.failures.append(Failure(row.asset_id, f"embed:{kind.value}", str(exc)))
            log.warning("embed %s %s of %s failed: %s", encoder.info.name, kind, row.asset_id, exc)


def compute_rest(
    encoder: Encoder,
    work: ShardWork,
    times: StepTimes,
    tick: Tick | None = None,
    chunk: int = 64,
) -> None:
    """Everything the loader did not compute: captions, views of encoders without pixels, asset
    vectors (means of the views just computed, or the encoder's fused vectors, `chunk` assets per
    call so that a slow encoder's progress shows)."""
    failed = work.failed_assets
    todo = [r for r in work.rows if r.key not in work.vectors and r.asset_id not in failed]
    by_kind: dict[tuple[VectorKind, str | None], list[Row]] = {}
    # Assets last: a per-view encoder's asset vector is the mean of view vectors computed just before.
    for row in sorted(todo, key=lambda r: r.kind is VectorKind.ASSET):
        by_kind.setdefault((row.kind, row.language), []).append(row)
    for (kind, language), group in by_kind.items():
        if kind is VectorKind.ASSET and not encoder.info.fused_views:
            before = len(work.vectors)
            group = _means_of_views(group, work.rows, work.vectors)
            work.computed += len(work.vectors) - before
        failed = work.failed_assets
        group = [r for r in group if r.asset_id not in failed]
        # Fused or remote asset vectors are slow per asset: `chunk` at a time, so that progress shows
        # and a bad view re-runs its chunk row by row, not the whole shard.
        slow = kind is VectorKind.ASSET and (encoder.info.fused_views or not encoder.info.local)
        step = chunk if slow else max(1, len(group))
        for part in batches_of(group, step):
            started = time.perf_counter()
            _encode_isolating_failures(encoder, work, kind, language, part)
            seconds = time.perf_counter() - started
            if kind is VectorKind.CAPTION:
                times.add("text", seconds, len(part))
            else:
                times.add("model", seconds, sum(len(r.paths) for r in part))
            if kind is VectorKind.ASSET and tick is not None:
                tick(len(part))


def shard_output(work: ShardWork, dim: int) -> tuple[list[Row], np.ndarray]:
    """The rows to write (every row of every asset that did not fail) and their vectors."""
    failed = work.failed_assets
    kept = [r for r in work.rows if r.asset_id not in failed and r.key in work.vectors]
    vectors = np.stack([work.vectors[r.key] for r in kept]) if kept else np.zeros((0, dim), np.float32)
    return kept, vectors


def write_shard(work: ShardWork, dim: int, times: StepTimes) -> None:
    """Write the shard's files, the done marker last."""
    started = time.perf_counter()
    kept, vectors = shard_output(work, dim)
    work.files.write(kept, vectors, work.fingerprint, work.failures)
    times.add("write", time.perf_counter() - started, work.views)


class ShardWriter:
    """Writes finished shards on a background thread, at most `pending` behind the computation."""

    def __init__(self, dim: int, times: StepTimes, background: bool = True, pending: int = 2) -> None:
        self.dim, self.times, self.pending = dim, times, pending
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="shard-writer") if background else None
        self._futures: list[Future[None]] = []

    def submit(self, work: ShardWork) -> None:
        """Write `work` (now, or on the writer thread); a failed earlier write raises here."""
        if self._pool is None:
            write_shard(work, self.dim, self.times)
            return
        self._futures.append(self._pool.submit(write_shard, work, self.dim, self.times))
        while len(self._futures) > self.pending or (self._futures and self._futures[0].done()):
            self._futures.pop(0).result()

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            for future in self._futures:
                future.result()  # a write that failed raises; shards written before it stay done
        finally:
            if self._pool is not None:
                self._pool.shutdown(wait=True)


def run_shard(
    encoder: Encoder,
    folder: Path,
    number: int,
    chunk: Sequence[Asset],
    per_view: bool,
    languages: Sequence[str],
    loader: ViewLoader,
    times: StepTimes,
) -> ShardWork:
    """One whole shard, start to finish and written (the unit of work of the Ray engine): skipped
    when unchanged, else its views through `loader`, the rest through the encoder, then its files."""
    work = plan_shard(folder, number, chunk, encoder.info, per_view, languages)
    if work.unchanged:
        return work
    if per_view and isinstance(encoder, PixelEncoder):
        jobs = (
            (rows, [str(r.paths[0]) for r in rows])
            for rows in batches_of(pixel_rows(work, encoder), encoder.batch_size)
        )
        for rows, prepared in loader.map(jobs):
            absorb(encoder, work, rows, prepared, times)
    compute_rest(encoder, work, times)
    write_shard(work, encoder.info.dim, times)
    return work
