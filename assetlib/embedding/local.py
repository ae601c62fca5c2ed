"""The local embedding engine: assets → per-encoder shards on this machine, resumable and idempotent.

Views are read, decoded and preprocessed in `workers` loader processes (0: in this one) while the
model runs here, and finished shards are written on a background thread, so that with enough
workers the model is what bounds a run. Per-shard logic (plan, skip, reuse, failures, write) is
`shard_work`'s, shared with the Ray engine; a re-run skips unchanged shards and finishes a killed
run without repeating or duplicating work.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from assetlib.embedding.loader import ViewLoader
from assetlib.embedding.plan import Row
from assetlib.embedding.shard_work import (
    ShardWork,
    ShardWriter,
    absorb,
    batches_of,
    compute_rest,
    pixel_rows,
    plan_shard,
)
from assetlib.embedding.shards import EncoderCard, encoder_dir
from assetlib.embedding.summary import EmbedSummary, Report, progress_report
from assetlib.encoders.base import Encoder
from assetlib.encoders.pixels import PixelEncoder
from assetlib.library.asset import Asset
from assetlib.logs import progress as progress_bar
from assetlib.records import Failure, write_failures

log = logging.getLogger(__name__)


def embedding_workers(configured: int | None) -> int:
    """Loader processes to use: as configured, else all cores but one beside a GPU, none on a CPU
    (where the model needs the cores the loaders would take; benchmarks/embed_bench.py)."""
    if configured is not None:
        return configured
    import torch

    return max(1, min(8, (os.cpu_count() or 2) - 1)) if torch.cuda.is_available() else 0


def _jobs(
    works: Iterator[ShardWork], encoder: Encoder, pixels: bool
) -> Iterator[tuple[tuple[ShardWork, list[Row] | None], list[str]]]:
    """Loader jobs: each shard's view batches (when views go through the loader), then the shard
    itself (no paths) to finish it once its last batch is in."""
    for work in works:
        if pixels and isinstance(encoder, PixelEncoder):
            for rows in batches_of(pixel_rows(work, encoder), encoder.batch_size):
                yield (work, rows), [str(r.paths[0]) for r in rows]
        yield (work, None), []


def embed_assets(
    assets: Sequence[Asset],
    encoder: Encoder,
    shard_root: str | Path,
    shard_size: int = 256,
    per_view: bool | None = None,
    languages: Sequence[str] = ("en", "zh"),
    progress: bool = True,
    workers: int = 0,
    report: Report | None = None,
) -> EmbedSummary:
    """Embed assets into shards under shard_root/embeddings/<encoder>/; resumable and idempotent."""
    started = time.perf_counter()
    per_view = (not encoder.info.fused_views) if per_view is None else per_view
    folder = encoder_dir(Path(shard_root), encoder.info.name)
    folder.mkdir(parents=True, exist_ok=True)
    EncoderCard.of(encoder.info, per_view).write(folder)
    ordered = sorted(assets, key=lambda a: a.asset_id)
    pixels = isinstance(encoder, PixelEncoder) and per_view
    summary = EmbedSummary(encoder.info.name, folder, workers=workers if pixels else 0)
    every_failure: list[Failure] = []
    bar = progress_bar(
        total=len(ordered), desc=f"embed {encoder.info.name}", unit="asset", disable=not progress
    )
    works = (
        plan_shard(folder, number, ordered[start : start + shard_size], encoder.info, per_view, languages)
        for number, start in enumerate(range(0, len(ordered), shard_size))
    )
    preprocess = encoder.pixel_preprocessor() if pixels and isinstance(encoder, PixelEncoder) else None
    loader = ViewLoader(preprocess, summary.workers)
    done = computed_assets = 0
    with loader, ShardWriter(encoder.info.dim, summary.steps) as writer:
        summary.startup_seconds = time.perf_counter() - started
        for (work, rows), prepared in loader.map(_jobs(works, encoder, pixels)):
            if rows is not None:
                absorb(encoder, work, rows, prepared, summary.steps)  # type: ignore[arg-type]
                continue
            ticked = 0
            if not work.unchanged:

                def tick(n: int) -> None:
                    nonlocal ticked
                    ticked += n
                    bar.update(n)

                compute_rest(encoder, work, summary.steps, tick)
                writer.submit(work)
            summary.add_shard(work)
            every_failure += work.failures
            done += work.assets
            computed_assets += 0 if work.unchanged else work.assets
            bar.update(work.assets - min(ticked, work.assets))
            bar.set_postfix(rows=summary.rows_computed, failed=len(summary.failures), refresh=False)
            if report is not None:
                elapsed = time.perf_counter() - started
                report(progress_report(done, computed_assets, len(ordered), elapsed, summary))
    bar.close()
    summary.seconds = time.perf_counter() - started
    summary.failures_total = len(every_failure)
    write_failures(every_failure, summary.failures_csv)
    summary.log()
    return summary
