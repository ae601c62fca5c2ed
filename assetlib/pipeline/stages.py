"""Bodies of the embedding and database stages, so the notebooks stay thin and tests can reach them.

Every stage notebook records what it did in `<run_dir>/stage_metrics.json` (`write_stage_metrics`);
the pipeline runner copies that into the run's manifest.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from assetlib.config import Settings
from assetlib.library.asset import Asset
from assetlib.records import write_csv

log = logging.getLogger(__name__)

STAGE_METRICS = "stage_metrics.json"


def write_stage_metrics(run_dir: str | Path, stage: str, status: str, **data: Any) -> Path:
    """Record a stage's outcome (done, skipped with a reason, incomplete) and its numbers."""
    path = Path(run_dir) / STAGE_METRICS
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {"stage": stage, "status": status, **data}
    path.write_text(json.dumps(record, indent=1, ensure_ascii=False, default=str), encoding="utf-8")
    log.info("%s: %s %s", stage, status, data.get("reason", ""))
    return path


def read_stage_metrics(run_dir: str | Path) -> dict | None:
    """A stage's recorded outcome, or None when it wrote none."""
    path = Path(run_dir) / STAGE_METRICS
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def default_shard_root(settings: Settings) -> Path:
    """Where embedding shards live between runs: $ASSETLIB_HOME (so a new run reuses them)."""
    return settings.home


def embed_algorithms(
    assets: Sequence[Asset],
    algorithms: Sequence[str],
    settings: Settings,
    shard_root: Path,
    run_dir: Path,
    languages: Sequence[str] = ("en", "zh"),
) -> list[dict]:
    """Embed the library with each algorithm into shards; an unusable one is skipped with its reason."""
    from assetlib.embedding.local import embed_assets
    from assetlib.encoders.registry import availability, get_encoder, parse_spec

    usable = {a.algorithm: a for a in availability(settings)}
    results = []
    for spec in algorithms:
        algorithm, model = parse_spec(spec, settings)
        state = usable[algorithm]
        if not state.usable:
            results.append(
                {"algorithm": algorithm, "status": "skipped", "reason": f"skipped: {state.reason}"}
            )
            log.warning("%s skipped: %s", algorithm, state.reason)
            continue
        encoder = get_encoder(spec, settings)
        summary = embed_assets(
            assets, encoder, shard_root, shard_size=settings.embedding_shard_size, languages=languages
        )
        if summary.failures:
            write_csv([f.__dict__ for f in summary.failures], run_dir / f"failures_{algorithm}.csv")
        results.append(
            {
                "algorithm": algorithm,
                "status": "done",
                "encoder": summary.encoder,
                "model": model,
                "shards": summary.shards,
                "shards_unchanged": summary.shards_skipped,
                "vectors_computed": summary.rows_computed,
                "vectors_reused": summary.rows_reused,
                "vectors_per_second": round(summary.items_per_second, 1),
                "failures": len(summary.failures),
                "seconds": round(summary.seconds, 1),
                "shard_dir": str(summary.out_dir),
            }
        )
    return results


def stored_shard_encoders(shard_root: Path) -> list[str]:
    """Names of the encoders with shards under a shard root (from each folder's encoder.json)."""
    names = []
    for card in sorted((shard_root / "embeddings").glob("*/encoder.json")):
        try:
            names.append(json.loads(card.read_text())["name"])
        except (OSError, ValueError, KeyError) as exc:
            log.warning("ignoring %s: %s", card, exc)
    return names


def populate_database(
    assets: Sequence[Asset], settings: Settings, shard_root: Path, encoders: Sequence[str] | None = None
) -> list[dict]:
    """Load the catalog and every encoder's shards into PostgreSQL, then build the indexes."""
    from assetlib.embedding.local import load_shards
    from assetlib.store.db import Database
    from assetlib.store.schema import index_params_from

    names = list(encoders) if encoders else stored_shard_encoders(shard_root)
    params = index_params_from(settings)
    results = []
    with Database.open(settings) as db:
        for name in names:
            started = time.perf_counter()
            loaded = load_shards(
                db, shard_root, name, assets, storage=settings.vector_storage, index_params=params
            )
            results.append(
                {
                    "encoder": name,
                    "rows": loaded.rows,
                    "inserted": loaded.inserted,
                    "updated": loaded.updated,
                    "indexes_built": len(loaded.indexes),
                    "seconds": round(time.perf_counter() - started, 1),
                }
            )
    return results
