"""The local embedding engine: assets → per-encoder shards on this machine, resumable and idempotent.

Views are read, decoded and preprocessed in `workers` loader processes (0: in this one) while the
model runs here, and finished shards are written on a background thread, so that with enough
workers the model is what bounds a run. Per-shard logic (plan, skip, reuse, failures, write) is
`shard_work`'s, shared with the Ray engine; a re-run skips unchanged shards and finishes a killed
run without repeating or duplicating work.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from assetlib.embedding.loader import StepTimes, ViewLoader
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
from assetlib.encoders.base import Encoder
from assetlib.encoders.pixels import PixelEncoder
from assetlib.library.asset import Asset
from assetlib.logs import progress as progress_bar
from assetlib.records import Failure, write_failures

log = logging.getLogger(__name__)

FAILURES = "failures.csv"  # beside the shards: every asset that failed, in any shard
Report = Callable[[dict], None]  # told how far a run is, after each shard


@dataclass
class EmbedSummary:
    """What an embedding run did."""

    encoder: str
    out_dir: Path
    shards: int = 0
    shards_skipped: int = 0
    rows_computed: int = 0
    rows_reused: int = 0
    failures: list[Failure] = field(default_factory=list)  # in the shards computed by this run
    failures_total: int = 0  # in every shard, earlier runs' included (failures.csv)
    seconds: float = 0.0
    workers: int = 0
    engine: str = "local"
    steps: StepTimes = field(default_factory=StepTimes)

    @property
    def items_per_second(self) -> float:
        """Computed rows per second of wall time."""
        return self.rows_computed / self.seconds if self.seconds else 0.0

    @property
    def views_per_second(self) -> float:
        """View files embedded per second of wall time (what a sizing table needs)."""
        return self.steps.views.get("model", 0) / self.seconds if self.seconds else 0.0

    def add_shard(self, work: ShardWork) -> None:
        """Count one shard's outcome."""
        self.shards += 1
        if work.unchanged:
            self.shards_skipped += 1
        else:
            self.rows_computed += work.computed
            self.rows_reused += work.reused
            self.failures += work.failures

    def log(self) -> None:
        """One summary line, and one with each step's views/s."""
        log.info(
            "embedded with %s (%s engine, %d workers): %d shards (%d unchanged), %d rows computed "
            "(%.1f/s), %d reused, %d failures (%d in all shards: %s) in %.1fs",
            self.encoder,
            self.engine,
            self.workers,
            self.shards,
            self.shards_skipped,
            self.rows_computed,
            self.items_per_second,
            self.rows_reused,
            len(self.failures),
            self.failures_total,
            self.failures_csv,
            self.seconds,
        )
        rates = self.steps.rates()
        if rates:
            log.info(
                "views/s per step (one process each): %s; bound by %s",
                ", ".join(f"{k} {v:,.0f}" for k, v in rates.items()),
                self.steps.bound(),
            )

    @property
    def failures_csv(self) -> Path:
        """The table of every asset that failed."""
        return self.out_dir / FAILURES


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
                report(_progress_report(done, computed_assets, len(ordered), elapsed, summary))
    bar.close()
    summary.seconds = time.perf_counter() - started
    summary.failures_total = len(every_failure)
    write_failures(every_failure, summary.failures_csv)
    summary.log()
    return summary


def _progress_report(done: int, computed: int, total: int, seconds: float, summary: EmbedSummary) -> dict:
    """How far the run is and when it should end, at the rate of the shards computed so far."""
    rate = computed / seconds if seconds > 0 else 0.0
    return {
        "assets_done": done,
        "assets_total": total,
        "assets_per_second": round(rate, 2),
        "eta_seconds": round((total - done) / rate, 1) if rate else None,
        "vectors_computed": summary.rows_computed,
        "failures": len(summary.failures),
    }
