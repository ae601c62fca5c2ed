"""The local embedding engine: assets → per-encoder shards in this process, resumable and idempotent.

A shard covers a fixed slice of the assets (sorted by id). A re-run skips shards whose inputs did
not change, reuses unchanged rows of changed shards (by input hash), and so finishes a killed run
without repeating or duplicating work. An asset that keeps failing becomes a failure row; it is
never given a zero vector.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from assetlib.embedding.plan import Row, RowKey, plan_rows, shard_fingerprint
from assetlib.embedding.shards import EncoderCard, ShardFiles, encoder_dir
from assetlib.encoders.base import Encoder, EncoderError, mean_of_views
from assetlib.library.asset import Asset
from assetlib.logs import progress as progress_bar
from assetlib.media.images import ImageError
from assetlib.records import Failure, write_failures
from assetlib.vocab import VectorKind

log = logging.getLogger(__name__)

FAILURES = "failures.csv"  # beside the shards: every asset that failed, in any shard


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

    @property
    def items_per_second(self) -> float:
        """Computed rows per second of wall time."""
        return self.rows_computed / self.seconds if self.seconds else 0.0

    @property
    def failures_csv(self) -> Path:
        """The table of every asset that failed."""
        return self.out_dir / FAILURES


def _fatal(exc: Exception) -> bool:
    # A rejected API key or a missing model fails every asset alike: stop instead of listing them all.
    return getattr(exc, "status", None) in (401, 403)


def _compute(encoder: Encoder, rows: list[Row]) -> tuple[dict[RowKey, np.ndarray], list[Failure]]:
    """Vectors for rows, batched per kind; a failing batch is retried row by row to isolate the bad ones."""
    out: dict[RowKey, np.ndarray] = {}
    failures: list[Failure] = []
    by_kind: dict[tuple[VectorKind, str | None], list[Row]] = {}
    # Assets last: a per-view encoder's asset vector is the mean of view vectors computed just before.
    for row in sorted(rows, key=lambda r: r.kind is VectorKind.ASSET):
        by_kind.setdefault((row.kind, row.language), []).append(row)
    for (kind, language), all_rows in by_kind.items():
        group = all_rows
        if kind is VectorKind.ASSET and not encoder.info.fused_views:
            group = _means_of_computed_views(all_rows, rows, out)
            if not group:
                continue
        try:
            vectors = _encode_group(encoder, kind, language, group)
            out.update({row.key: vec for row, vec in zip(group, vectors, strict=True)})
            continue
        except (EncoderError, ImageError) as exc:
            if _fatal(exc):
                raise
            if len(group) > 1:
                log.info("a batch of %d %s rows failed (%s); retrying one by one", len(group), kind, exc)
        for row in group:
            try:
                out[row.key] = _encode_group(encoder, kind, language, [row])[0]
            except (EncoderError, ImageError) as exc:
                if _fatal(exc):
                    raise
                failures.append(Failure(row.asset_id, f"embed:{kind.value}", str(exc)))
                log.warning("embed %s %s of %s failed: %s", encoder.info.name, kind, row.asset_id, exc)
    return out, failures


def _means_of_computed_views(
    asset_rows: list[Row], rows: list[Row], out: dict[RowKey, np.ndarray]
) -> list[Row]:
    """Fill `out` with the asset rows whose every view was just computed (the normalised mean of
    those vectors: what `encode_asset_views` of a per-view encoder returns, without encoding the
    views twice); return the rest, which still go to the encoder."""
    by_path = {
        (r.asset_id, r.paths[0]): out[r.key] for r in rows if r.kind is VectorKind.VIEW and r.key in out
    }
    rest = []
    for row in asset_rows:
        views = [by_path.get((row.asset_id, path)) for path in row.paths]
        if row.paths and all(v is not None for v in views):
            out[row.key] = mean_of_views(np.stack(views), [len(views)])[0]  # type: ignore[arg-type]
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


def _recorded_failures(shard: ShardFiles) -> list[Failure]:
    """The failures a finished shard recorded in its done marker."""
    try:
        marker = json.loads(shard.done.read_text())
    except (OSError, ValueError):
        return []
    return [Failure(**f) for f in marker.get("failures", [])]


def embed_assets(
    assets: Sequence[Asset],
    encoder: Encoder,
    shard_root: str | Path,
    shard_size: int = 256,
    per_view: bool | None = None,
    languages: Sequence[str] = ("en", "zh"),
    progress: bool = True,
) -> EmbedSummary:
    """Embed assets into shards under shard_root/embeddings/<encoder>/; resumable and idempotent."""
    started = time.perf_counter()
    per_view = (not encoder.info.fused_views) if per_view is None else per_view
    folder = encoder_dir(Path(shard_root), encoder.info.name)
    folder.mkdir(parents=True, exist_ok=True)
    EncoderCard.of(encoder.info, per_view).write(folder)
    ordered = sorted(assets, key=lambda a: a.asset_id)
    summary = EmbedSummary(encoder.info.name, folder)
    every_failure: list[Failure] = []
    bar = progress_bar(
        total=len(ordered), desc=f"embed {encoder.info.name}", unit="asset", disable=not progress
    )
    for number, start in enumerate(range(0, len(ordered), shard_size)):
        chunk = ordered[start : start + shard_size]
        summary.shards += 1
        shard = ShardFiles(folder, number)
        rows = [row for asset in chunk for row in plan_rows(asset, encoder.info, per_view, languages)]
        fingerprint = shard_fingerprint(rows)
        if shard.fingerprint() == fingerprint:
            summary.shards_skipped += 1
            every_failure += _recorded_failures(shard)
            bar.update(len(chunk))
            continue
        previous = shard.previous()
        reused = {
            r.key: previous[r.key][1]
            for r in rows
            if r.key in previous and previous[r.key][0] == r.input_hash
        }
        computed, failures = _compute(encoder, [r for r in rows if r.key not in reused])
        failed_assets = {f.asset_id for f in failures}
        kept = [r for r in rows if r.asset_id not in failed_assets and (r.key in reused or r.key in computed)]
        vectors = (
            np.stack([reused[r.key] if r.key in reused else computed[r.key] for r in kept])
            if kept
            else np.zeros((0, encoder.info.dim), np.float32)
        )
        shard.write(kept, vectors, fingerprint, failures)
        summary.rows_computed += len(computed)
        summary.rows_reused += len(reused)
        summary.failures += failures
        every_failure += failures
        bar.update(len(chunk))
        bar.set_postfix(rows=summary.rows_computed, failed=len(summary.failures), refresh=False)
    bar.close()
    summary.seconds = time.perf_counter() - started
    summary.failures_total = len(every_failure)
    write_failures(every_failure, summary.failures_csv)
    log.info(
        "embedded with %s: %d shards (%d unchanged), %d rows computed (%.1f/s), %d reused, %d failures "
        "(%d in all shards: %s)",
        encoder.info.name,
        summary.shards,
        summary.shards_skipped,
        summary.rows_computed,
        summary.items_per_second,
        summary.rows_reused,
        len(summary.failures),
        summary.failures_total,
        summary.failures_csv,
    )
    return summary
