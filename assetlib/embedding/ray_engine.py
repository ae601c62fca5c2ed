"""The Ray engine: the local engine's shards as Ray Data tasks, over the GPUs and machines of a cluster.

The shard plan is the unit of work: the driver slices the sorted assets into the same shards the
local engine would, and each model actor (one model each, one GPU each when the cluster has them)
runs `shard_work.run_shard` on a shard: skipped when its done marker's fingerprint matches,
unchanged rows reused by input hash, views through the actor's own loader workers, files written
with the done marker last. So a Ray run writes byte-for-byte what the local engine writes, a run
killed midway finishes on the next without duplicating anything, and the driver never loads a
model. Shards must live on storage every node sees (NFS, a shared disk), as must the renders.
"""

from __future__ import annotations

import logging
import pickle
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from assetlib.embedding.loader import StepTimes, ViewLoader
from assetlib.embedding.shard_work import run_shard
from assetlib.embedding.shards import EncoderCard, encoder_dir
from assetlib.embedding.summary import EmbedSummary, Report, progress_report
from assetlib.encoders.base import Encoder
from assetlib.encoders.pixels import PixelEncoder
from assetlib.library.asset import Asset
from assetlib.logs import progress as progress_bar
from assetlib.records import Failure, write_failures

log = logging.getLogger(__name__)

EncoderFactory = Callable[[], Encoder]  # picklable: it travels to every actor


class ShardEmbedder:
    """A Ray actor: one encoder (and its loader workers), embedding one shard per call."""

    def __init__(
        self,
        factory: EncoderFactory,
        shard_root: str,
        per_view: bool | None,
        languages: Sequence[str],
        workers: int,
    ) -> None:
        self.encoder = factory()
        info = self.encoder.info
        self.per_view = (not info.fused_views) if per_view is None else per_view
        self.folder = encoder_dir(Path(shard_root), info.name)
        self.folder.mkdir(parents=True, exist_ok=True)
        EncoderCard.of(info, self.per_view).write(self.folder)  # the same card from every actor
        self.languages = list(languages)
        pixels = self.per_view and isinstance(self.encoder, PixelEncoder)
        preprocess = self.encoder.pixel_preprocessor() if pixels else None  # type: ignore[attr-defined]
        self.loader = ViewLoader(preprocess, workers).__enter__()

    def __call__(self, batch: dict[str, Any]) -> dict[str, list]:
        """Embed the shards of a batch (one, as the engine sends them); their outcomes, pickled."""
        outcomes = []
        for number, payload in zip(batch["shard"], batch["assets"], strict=True):
            chunk: list[Asset] = pickle.loads(payload)
            times = StepTimes()
            work = run_shard(
                self.encoder,
                self.folder,
                int(number),
                chunk,
                self.per_view,
                self.languages,
                self.loader,
                times,
            )
            work.vectors = {}  # the vectors are on disk; only the counts go back
            outcomes.append(pickle.dumps((self.encoder.info.name, self.folder, work, times)))
        return {"outcome": outcomes}

    def __del__(self) -> None:
        loader = getattr(self, "loader", None)
        if loader is not None:
            loader.__exit__(None, None, None)


def connect(address: str | None, num_cpus: int | None = None) -> dict[str, float]:
    """Join the Ray cluster at `address`, or start one on this machine; its resources."""
    import ray

    if not ray.is_initialized():
        # Actors log into Ray's session folder; the terminal keeps our progress bar and summary.
        options: dict[str, Any] = {
            "include_dashboard": False,
            "log_to_driver": False,
            "logging_level": logging.WARNING,
        }
        if address:
            options["address"] = address
        elif num_cpus:
            options["num_cpus"] = num_cpus
        ray.init(**options)
    import ray.data

    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False  # ours counts shards and assets, with an ETA
    context.print_on_execution_start = False
    resources = {k: float(v) for k, v in ray.cluster_resources().items()}
    log.info(
        "Ray cluster %s: %d CPUs, %d GPUs, %d nodes",
        address or "(local)",
        resources.get("CPU", 0),
        resources.get("GPU", 0),
        len(ray.nodes()),
    )
    return resources


def embed_assets_ray(
    assets: Sequence[Asset],
    factory: EncoderFactory,
    shard_root: str | Path,
    shard_size: int = 256,
    per_view: bool | None = None,
    languages: Sequence[str] = ("en", "zh"),
    progress: bool = True,
    workers: int = 0,
    address: str | None = None,
    actors: int | None = None,
    num_cpus: int | None = None,
    report: Report | None = None,
) -> EmbedSummary:
    """Embed assets into the same shards as `embed_assets`, on a Ray cluster; resumable, idempotent."""
    import ray.data

    started = time.perf_counter()
    resources = connect(address, num_cpus)
    gpus = int(resources.get("GPU", 0))
    actors = actors or max(1, gpus)
    ordered = sorted(assets, key=lambda a: a.asset_id)
    items = [
        {"shard": number, "assets": pickle.dumps(ordered[start : start + shard_size])}
        for number, start in enumerate(range(0, len(ordered), shard_size))
    ]
    summary: EmbedSummary | None = None
    if not items:
        raise ValueError("no assets to embed")
    dataset = ray.data.from_items(items, override_num_blocks=len(items))
    results = dataset.map_batches(
        ShardEmbedder,
        fn_constructor_kwargs={
            "factory": factory,
            "shard_root": str(shard_root),
            "per_view": per_view,
            "languages": list(languages),
            "workers": workers,
        },
        batch_size=1,
        compute=ray.data.ActorPoolStrategy(size=actors),
        num_gpus=1 if gpus else 0,
        # The model's process and its loader workers; never more than the cluster can give each
        # actor, or Ray waits forever for CPUs that will not come.
        num_cpus=min(1 + workers, max(1.0, resources.get("CPU", 1) / actors)),
    )
    bar = progress_bar(total=len(ordered), desc="embed (ray)", unit="asset", disable=not progress)
    every_failure: list[Failure] = []
    done = computed_assets = 0
    for row in results.iter_rows():
        name, folder, work, times = pickle.loads(row["outcome"])
        if summary is None:  # the encoder's name comes from the actors: the driver loads no model
            summary = EmbedSummary(name, folder, workers=workers, engine="ray")
            # Up to the first shard: the cluster, the actors' models, and one shard's work.
            summary.startup_seconds = time.perf_counter() - started
            bar.set_description(f"embed {name} (ray)")
        summary.add_shard(work)
        summary.steps.merge(times)
        every_failure += work.failures
        done += work.assets
        computed_assets += 0 if work.unchanged else work.assets
        bar.update(work.assets)
        if report is not None:
            elapsed = time.perf_counter() - started
            report(progress_report(done, computed_assets, len(ordered), elapsed, summary))
    bar.close()
    assert summary is not None, "Ray returned no shard outcomes"
    summary.seconds = time.perf_counter() - started
    summary.failures_total = len(every_failure)
    write_failures(sorted(every_failure, key=lambda f: f.asset_id), summary.failures_csv)
    summary.log()
    return summary
