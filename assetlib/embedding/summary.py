"""What an embedding run did, whichever engine ran it: counts, failures, each step's views/s, progress."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from assetlib.embedding.loader import StepTimes
from assetlib.embedding.shard_work import ShardWork
from assetlib.records import Failure

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
    startup_seconds: float = 0.0  # starting loader workers (and, on Ray, the cluster and actors)
    steps: StepTimes = field(default_factory=StepTimes)

    @property
    def items_per_second(self) -> float:
        """Computed rows per second of wall time."""
        return self.rows_computed / self.seconds if self.seconds else 0.0

    @property
    def views_per_second(self) -> float:
        """View files embedded per second of wall time after start-up (what a sizing table needs)."""
        running = self.seconds - self.startup_seconds
        return self.steps.views.get("model", 0) / running if running > 0 else 0.0

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


def progress_report(done: int, computed: int, total: int, seconds: float, summary: EmbedSummary) -> dict:
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
