"""Embedding stage: assets → per-encoder shards (vectors + metadata + done marker) → the store.

A shard covers a fixed slice of the assets (sorted by id). It is written as shard_NNNNN.npy and
shard_NNNNN.parquet, then shard_NNNNN.done.json last. A re-run skips shards whose inputs did not
change, reuses unchanged rows of changed shards (by content hash), and so finishes a killed run
without repeating or duplicating work. An asset that keeps failing becomes a failure row; it is
never given a zero vector.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from assetlib.encoders.base import Encoder, EncoderError
from assetlib.library.asset import Asset, Failure
from assetlib.media.images import ImageError, load_rgb

log = logging.getLogger(__name__)

COLUMNS = ["kind", "asset_id", "language", "view_index", "input_hash"]


@dataclass
class Row:
    """One vector to compute: a caption (per language), a view, or a whole asset."""

    kind: str  # "caption" | "view" | "asset"
    asset_id: str
    language: str | None = None
    view_index: int | None = None
    input_hash: str = ""
    text: str | None = None
    paths: tuple[Path, ...] = ()

    @property
    def key(self) -> tuple:
        """Identity of the row within an encoder's output."""
        return (self.kind, self.asset_id, self.language, self.view_index)


@dataclass
class EmbedSummary:
    """What an embedding run did."""

    encoder: str
    out_dir: Path
    shards: int = 0
    shards_skipped: int = 0
    rows_computed: int = 0
    rows_reused: int = 0
    failures: list[Failure] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def items_per_second(self) -> float:
        """Computed rows per second of wall time."""
        return self.rows_computed / self.seconds if self.seconds else 0.0


def _digest(*parts: bytes | str) -> str:
    h = hashlib.blake2b(digest_size=12)
    for part in parts:
        h.update(part.encode() if isinstance(part, str) else part)
        h.update(b"\0")
    return h.hexdigest()


def _file_hash(path: Path) -> str:
    # Size and modification time, not content: every re-run fingerprints all views, and reading
    # millions of PNGs just to find them unchanged would cost as much as a fresh decode.
    try:
        stat = path.stat()
    except OSError:
        return "missing"
    return _digest(str(path), str(stat.st_size), str(stat.st_mtime_ns))


def plan_rows(asset: Asset, encoder: Encoder, per_view: bool, languages: Sequence[str]) -> list[Row]:
    """The rows an encoder produces for one asset: captions per language, views, the asset vector."""
    info = encoder.info
    rows = []
    for language in languages:
        text = asset.caption_en if language == "en" else asset.caption_cn if language == "zh" else None
        if text and language in info.languages:
            rows.append(
                Row(
                    "caption",
                    asset.asset_id,
                    language=language,
                    text=text,
                    input_hash=_digest(info.name, info.version, language, text),
                )
            )
    if info.embeds_images and asset.view_paths:
        view_hashes = [_file_hash(p) for p in asset.view_paths]
        if per_view:
            for index, (path, digest) in enumerate(zip(asset.view_paths, view_hashes, strict=True)):
                rows.append(
                    Row(
                        "view",
                        asset.asset_id,
                        view_index=index,
                        paths=(path,),
                        input_hash=_digest(info.name, info.version, digest),
                    )
                )
        rows.append(
            Row(
                "asset",
                asset.asset_id,
                paths=tuple(asset.view_paths),
                input_hash=_digest(
                    info.name, info.version, "fused" if info.fused_views else "mean", *view_hashes
                ),
            )
        )
    return rows


def encoder_dir(run_dir: Path, encoder_name: str) -> Path:
    """Folder of one encoder's shards under a run."""
    return run_dir / "embeddings" / encoder_name.replace(":", "__").replace("/", "_")


class ShardWriter:
    """Reads and writes one shard's files; the done marker is written last."""

    def __init__(self, folder: Path, number: int) -> None:
        self.vectors = folder / f"shard_{number:05d}.npy"
        self.meta = folder / f"shard_{number:05d}.parquet"
        self.done = folder / f"shard_{number:05d}.done.json"

    def fingerprint(self) -> str | None:
        """The input fingerprint of a finished shard, or None."""
        if not self.done.exists():
            return None
        try:
            return json.loads(self.done.read_text())["fingerprint"]
        except (OSError, ValueError, KeyError):
            return None

    def previous(self) -> dict[tuple, tuple[str, np.ndarray]]:
        """Rows of an earlier finished version of this shard: key → (input hash, vector)."""
        if self.fingerprint() is None or not self.vectors.exists() or not self.meta.exists():
            return {}
        meta = pd.read_parquet(self.meta)
        vectors = np.load(self.vectors)
        out = {}
        for i, r in enumerate(meta.itertuples(index=False)):
            view = None if pd.isna(r.view_index) else int(r.view_index)
            language = None if r.language is None or pd.isna(r.language) else r.language
            out[(r.kind, r.asset_id, language, view)] = (r.input_hash, vectors[i])
        return out

    def write(self, rows: list[Row], vectors: np.ndarray, fingerprint: str, failures: list[Failure]) -> None:
        """Write vectors, metadata, then the done marker (each atomically)."""
        meta = pd.DataFrame(
            [(r.kind, r.asset_id, r.language, r.view_index, r.input_hash) for r in rows], columns=COLUMNS
        ).astype({"view_index": "Int16"})
        tmp = self.vectors.with_suffix(".tmp.npy")
        np.save(tmp, vectors.astype(np.float32))
        tmp.replace(self.vectors)
        tmp_meta = self.meta.with_suffix(".tmp.parquet")
        meta.to_parquet(tmp_meta, index=False)
        tmp_meta.replace(self.meta)
        marker = {"fingerprint": fingerprint, "rows": len(rows), "failures": [f.__dict__ for f in failures]}
        tmp_done = self.done.with_suffix(".tmp")
        tmp_done.write_text(json.dumps(marker))
        tmp_done.replace(self.done)


def _fatal(exc: Exception) -> bool:
    # A rejected API key or a missing model fails every asset alike: stop instead of listing them all.
    return getattr(exc, "status", None) in (401, 403)


def _compute(encoder: Encoder, rows: list[Row]) -> tuple[dict[tuple, np.ndarray], list[Failure]]:
    """Vectors for rows, batched per kind; a failing batch is retried row by row to isolate the bad ones."""
    out: dict[tuple, np.ndarray] = {}
    failures: list[Failure] = []
    by_kind: dict[tuple, list[Row]] = {}
    for row in rows:
        by_kind.setdefault((row.kind, row.language), []).append(row)
    for (kind, language), group in by_kind.items():
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
                failures.append(Failure(row.asset_id, f"embed:{kind}", str(exc)))
                log.warning("embed %s %s of %s failed: %s", encoder.info.name, kind, row.asset_id, exc)
    return out, failures


def _encode_group(encoder: Encoder, kind: str, language: str | None, rows: list[Row]) -> np.ndarray:
    if kind == "caption":
        return encoder.encode_texts([r.text or "" for r in rows], language or "en", role="document")
    if kind == "view":
        return encoder.encode_images([load_rgb(r.paths[0]) for r in rows])
    if encoder.info.fused_views:
        return encoder.encode_asset_views([list(r.paths) for r in rows])
    return encoder.encode_asset_views([[load_rgb(p) for p in r.paths] for r in rows])


def embed_assets(
    assets: Sequence[Asset],
    encoder: Encoder,
    run_dir: str | Path,
    shard_size: int = 256,
    per_view: bool | None = None,
    languages: Sequence[str] = ("en", "zh"),
    progress: bool = True,
) -> EmbedSummary:
    """Embed assets into shards under run_dir/embeddings/<encoder>/; resumable and idempotent."""
    from assetlib.logs import progress as tqdm

    started = time.perf_counter()
    per_view = (not encoder.info.fused_views) if per_view is None else per_view
    folder = encoder_dir(Path(run_dir), encoder.info.name)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "encoder.json").write_text(
        json.dumps(
            {
                "name": encoder.info.name,
                "dim": encoder.info.dim,
                "fused_views": encoder.info.fused_views,
                "per_view": per_view,
                "languages": list(encoder.info.languages),
            },
            indent=2,
        )
    )
    ordered = sorted(assets, key=lambda a: a.asset_id)
    summary = EmbedSummary(encoder.info.name, folder)
    bar = tqdm(total=len(ordered), desc=f"embed {encoder.info.name}", unit="asset", disable=not progress)
    for number, start in enumerate(range(0, len(ordered), shard_size)):
        chunk = ordered[start : start + shard_size]
        summary.shards += 1
        shard = ShardWriter(folder, number)
        rows = [row for asset in chunk for row in plan_rows(asset, encoder, per_view, languages)]
        fingerprint = _digest(*(f"{r.key}{r.input_hash}" for r in rows))
        if shard.fingerprint() == fingerprint:
            summary.shards_skipped += 1
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
            np.stack([reused.get(r.key, computed.get(r.key)) for r in kept])
            if kept
            else np.zeros((0, encoder.info.dim), np.float32)
        )
        shard.write(kept, vectors, fingerprint, failures)
        summary.rows_computed += len(computed)
        summary.rows_reused += len(reused)
        summary.failures += failures
        bar.update(len(chunk))
        bar.set_postfix(rows=summary.rows_computed, failed=len(summary.failures), refresh=False)
    bar.close()
    summary.seconds = time.perf_counter() - started
    if summary.failures:
        from assetlib.library.readers import write_failures

        write_failures(summary.failures, folder / "failures.csv")
    log.info(
        "embedded with %s: %d shards (%d unchanged), %d rows computed (%.1f/s), %d reused, %d failures",
        encoder.info.name,
        summary.shards,
        summary.shards_skipped,
        summary.rows_computed,
        summary.items_per_second,
        summary.rows_reused,
        len(summary.failures),
    )
    return summary


@dataclass
class StoreLoad:
    """What loading an encoder's shards into the store did."""

    encoder: str
    rows: int
    inserted: int
    updated: int
    skipped_batches: int
    seconds: float
    indexes: list = field(default_factory=list)
    refused: str | None = None  # an index the memory guard refused, with its reason


def load_shards(
    db: object,
    run_dir: str | Path,
    encoder_name: str,
    assets: Sequence[Asset],
    storage: str = "vector",
    index_params: object | None = None,
    progress: bool = True,
) -> StoreLoad:
    """Load the catalog and every finished shard of one encoder, then (re)build its indexes."""
    from assetlib.logs import progress as tqdm
    from assetlib.store.load import chunked, load_catalog, load_vectors
    from assetlib.store.schema import (
        IndexParams,
        IndexTooLarge,
        VectorKind,
        ann_indexes,
        build_indexes,
        drop_indexes,
        ensure_encoder,
        present_kinds,
    )

    started = time.perf_counter()
    folder = encoder_dir(Path(run_dir), encoder_name)
    meta = json.loads((folder / "encoder.json").read_text())
    result = StoreLoad(encoder_name, 0, 0, 0, 0, 0.0)
    with db.connection() as conn:  # type: ignore[attr-defined]
        ordered = sorted(assets, key=lambda a: a.asset_id)
        for number, batch in chunked(ordered, 5000):
            load_catalog(conn, list(batch), f"catalog_{number:05d}")
        tables = ensure_encoder(
            conn,
            encoder_name,
            int(meta["dim"]),
            storage=storage,  # type: ignore[arg-type]
            info={k: meta[k] for k in ("fused_views", "per_view", "languages")},
        )
        for done in tqdm(
            sorted(folder.glob("shard_*.done.json")), desc=f"load {encoder_name}", disable=not progress
        ):
            stem = done.name.removesuffix(".done.json")
            frame = pd.read_parquet(folder / f"{stem}.parquet")
            vectors = np.load(folder / f"{stem}.npy")
            for kind in VectorKind:
                mask = (frame["kind"] == kind.value).to_numpy()
                if not mask.any():
                    continue
                part = frame[mask]
                sub = None
                if kind is VectorKind.VIEW:
                    sub = part["view_index"].astype(int).tolist()
                elif kind is VectorKind.CAPTION:
                    sub = part["language"].tolist()
                loaded = load_vectors(
                    conn,
                    tables,
                    kind,
                    part["asset_id"].tolist(),
                    vectors[mask],
                    f"{stem}:{kind.value}",
                    sub_keys=sub,
                )
                result.rows += loaded.rows
                result.inserted += loaded.inserted
                result.updated += loaded.updated
                result.skipped_batches += loaded.skipped
        params = index_params or IndexParams()
        # Under the pooled image layout the per-asset index serves image searches; a per-view index
        # (8x the rows) would cost build time and memory for nothing.
        kinds = tuple(k for k in VectorKind if params.index_views or k is not VectorKind.VIEW)  # type: ignore[attr-defined]
        if VectorKind.VIEW not in kinds and ann_indexes(conn, tables.table(VectorKind.VIEW)):
            log.info("%s: dropping the per-view index, unused under IMAGE_LAYOUT=pooled", encoder_name)
            drop_indexes(conn, tables.table(VectorKind.VIEW))
        if (
            result.inserted
            or result.updated
            or not all(ann_indexes(conn, tables.table(k)) for k in present_kinds(conn, tables) if k in kinds)
        ):
            try:
                result.indexes = build_indexes(conn, tables, params, kinds=kinds)  # type: ignore[arg-type]
            except IndexTooLarge as exc:
                # Too many views for a per-view index in memory: index the rest; searches then use
                # the pooled layout (per-asset ANN candidates, re-ranked exactly by view).
                log.warning("%s. Building the other indexes; image searches use the pooled layout", exc)
                result.refused = str(exc)
                others = tuple(k for k in kinds if k is not VectorKind.VIEW)
                result.indexes = build_indexes(conn, tables, params, kinds=others)  # type: ignore[arg-type]
        else:
            log.info("%s: nothing changed, indexes kept", encoder_name)
    result.seconds = time.perf_counter() - started
    log.info(
        "loaded %s: %d rows (%d inserted, %d updated, %d batches unchanged) in %.1fs",
        encoder_name,
        result.rows,
        result.inserted,
        result.updated,
        result.skipped_batches,
        result.seconds,
    )
    return result
