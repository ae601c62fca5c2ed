"""Shards → store: the catalog once, every finished shard of each encoder, then the indexes its layout needs.

Each batch (a catalog slice, one kind of vectors of one shard) is loaded in its own transaction
and recorded with it, so a re-run is a no-op and a crash loses at most the batch in flight. A
database that goes away mid-load (a crash, a restart) is waited for and the batch in flight is
loaded again: nothing is lost or duplicated.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import psycopg

from assetlib.embedding.shards import EncoderCard, encoder_dir, finished_shards, read_shard
from assetlib.library.asset import Asset
from assetlib.logs import progress as progress_bar
from assetlib.store.db import Database
from assetlib.store.indexes import (
    IndexBuild,
    IndexParams,
    IndexTooLarge,
    ann_indexes,
    build_indexes,
    drop_indexes,
)
from assetlib.store.layout import index_kinds
from assetlib.store.load import chunked, load_catalog, load_vectors
from assetlib.store.schema import EncoderTables, ensure_encoder, present_kinds
from assetlib.vocab import VectorKind, VectorStorage

log = logging.getLogger(__name__)

CATALOG_BATCH = 5000


@dataclass
class CatalogLoad:
    """What loading the catalog did."""

    assets: int = 0
    inserted: int = 0
    updated: int = 0
    skipped_batches: int = 0
    seconds: float = 0.0


@dataclass
class StoreLoad:
    """What loading an encoder's shards into the store did."""

    encoder: str
    rows: int = 0
    inserted: int = 0
    updated: int = 0
    skipped_batches: int = 0
    seconds: float = 0.0
    indexes: list[IndexBuild] = field(default_factory=list)
    refused: str | None = None  # an index the memory guard refused, with its reason

    def summary(self) -> dict:
        """The load as a stage-metrics record (what the manifest and the CLI show)."""
        return {
            "encoder": self.encoder,
            "rows": self.rows,
            "inserted": self.inserted,
            "updated": self.updated,
            "batches_unchanged": self.skipped_batches,
            "indexes_built": len(self.indexes),
            "index_refused": self.refused,
            "seconds": round(self.seconds, 1),
        }


def load_library_catalog(db: Database, assets: Sequence[Asset]) -> CatalogLoad:
    """Upsert every asset's catalog row in batches (unchanged batches are skipped)."""
    started = time.perf_counter()
    result = CatalogLoad(assets=len(assets))
    ordered = sorted(assets, key=lambda a: a.asset_id)
    for number, batch in chunked(ordered, CATALOG_BATCH):
        key = f"catalog_{number:05d}"
        loaded = db.run(partial(load_catalog, assets=list(batch), batch_key=key), f"catalog {key}")
        result.inserted += loaded.inserted
        result.updated += loaded.updated
        result.skipped_batches += loaded.skipped
    result.seconds = time.perf_counter() - started
    log.info(
        "catalog: %d assets (%d inserted, %d updated) in %.1fs",
        result.assets,
        result.inserted,
        result.updated,
        result.seconds,
    )
    return result


def load_encoder_shards(
    db: Database,
    shard_root: str | Path,
    encoder_name: str,
    storage: VectorStorage | str,
    index_params: IndexParams,
    progress: bool = True,
) -> StoreLoad:
    """Load every finished shard of one encoder (its assets must be in the catalog), then its indexes."""
    started = time.perf_counter()
    folder = encoder_dir(Path(shard_root), encoder_name)
    card = EncoderCard.read(folder)
    result = StoreLoad(encoder_name)
    info = {"fused_views": card.fused_views, "per_view": card.per_view, "languages": list(card.languages)}
    tables = db.run(
        lambda conn: ensure_encoder(conn, encoder_name, card.dim, storage=storage, info=info),
        f"{encoder_name} tables",
    )
    for done in progress_bar(finished_shards(folder), desc=f"load {encoder_name}", disable=not progress):
        for part in read_shard(done):
            load = partial(
                load_vectors,
                tables=tables,
                kind=part.kind,
                asset_ids=part.asset_ids,
                vectors=part.vectors,
                batch_key=part.batch_key,
                sub_keys=part.sub_keys,
            )
            loaded = db.run(load, f"{encoder_name} {part.kind} {part.batch_key}")
            result.rows += loaded.rows
            result.inserted += loaded.inserted
            result.updated += loaded.updated
            result.skipped_batches += loaded.skipped
    # An index build is one statement per table: a restart mid-build rolls it back, and it is redone.
    db.run(lambda conn: _index(conn, tables, index_params, result), f"{encoder_name} indexes")
    result.seconds = time.perf_counter() - started
    log.info(
        "loaded %s: %d rows (%d inserted, %d updated, %d batches unchanged) in %.1fs%s",
        encoder_name,
        result.rows,
        result.inserted,
        result.updated,
        result.skipped_batches,
        result.seconds,
        f"; index refused: {result.refused}" if result.refused else "",
    )
    return result


def _index(conn: psycopg.Connection, tables: EncoderTables, params: IndexParams, result: StoreLoad) -> None:
    """Build the indexes the configured layout needs when vectors changed or one is missing."""
    kinds = index_kinds(params.layout)
    # An index the layout does not use (a per-view index under IMAGE_LAYOUT=pooled) costs build
    # time and memory for nothing.
    for kind in VectorKind:
        if kind not in kinds and ann_indexes(conn, tables.table(kind)):
            log.info(
                "%s: dropping the %s index, unused under IMAGE_LAYOUT=%s", tables.name, kind, params.layout
            )
            drop_indexes(conn, tables.table(kind))
    present = [k for k in present_kinds(conn, tables) if k in kinds]
    if not (
        result.inserted or result.updated or not all(ann_indexes(conn, tables.table(k)) for k in present)
    ):
        log.info("%s: nothing changed, indexes kept", tables.name)
        return
    try:
        result.indexes = build_indexes(conn, tables, params, kinds=kinds)
    except IndexTooLarge as exc:
        if VectorKind.VIEW not in kinds:
            raise
        # Too many views for a per-view index in memory: index the rest; searches then use the
        # pooled layout (per-asset ANN candidates, re-ranked exactly by view).
        log.warning("%s. Building the other indexes; image searches use the pooled layout", exc)
        result.refused = str(exc)
        result.indexes = build_indexes(
            conn, tables, params, kinds=tuple(k for k in kinds if k is not VectorKind.VIEW)
        )


@dataclass
class PopulateResult:
    """What loading a library and its encoders' shards did."""

    catalog: CatalogLoad
    loads: list[StoreLoad]

    @property
    def refused(self) -> list[str]:
        """Every index build the memory guard refused, with its reason."""
        return [f"{load.encoder}: {load.refused}" for load in self.loads if load.refused]


def populate(
    db: Database,
    assets: Sequence[Asset],
    shard_root: str | Path,
    encoders: Sequence[str],
    progress: bool = True,
) -> PopulateResult:
    """The catalog once, then each encoder's shards and indexes, with the database's settings."""
    params = IndexParams.from_settings(db.settings)
    catalog = load_library_catalog(db, assets)
    loads = [
        load_encoder_shards(db, shard_root, name, db.settings.vector_storage, params, progress)
        for name in encoders
    ]
    return PopulateResult(catalog, loads)


def load_shards(
    db: Database,
    shard_root: str | Path,
    encoder_name: str,
    assets: Sequence[Asset],
    index_params: IndexParams | None = None,
    progress: bool = True,
) -> StoreLoad:
    """The catalog and one encoder's shards (`populate` for one encoder), with the database's settings."""
    params = index_params or IndexParams.from_settings(db.settings)
    load_library_catalog(db, assets)
    return load_encoder_shards(db, shard_root, encoder_name, db.settings.vector_storage, params, progress)
