"""Synthetic clustered unit vectors shaped like real per-view embeddings, for benchmarks and tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from assetlib.config import setting_default

if TYPE_CHECKING:
    import psycopg


def view_blocks(
    n_assets: int,
    views: int,
    dim: int,
    seed: int = 0,
    clusters: int = 100,
    asset_spread: float = 0.6,
    view_spread: float = 0.35,
    block: int | None = None,
) -> Iterator[tuple[int, np.ndarray]]:
    """(first asset index, unit vectors (count, views, dim)) blocks of a clustered synthetic library.

    Assets fall into `clusters` groups (categories) and each asset's views lie close together, as
    real render embeddings do; that makes per-view kNN harder than uniform noise (many near ties).
    Blocks keep memory bounded, so a million assets × 8 views never has to fit in RAM at once.
    """
    rng = np.random.default_rng(seed)
    centres = cluster_centres(clusters, dim, rng)
    scale = 1.0 / np.sqrt(dim)
    step = block or max(1, 2_000_000 // max(1, views * dim))
    for start in range(0, n_assets, step):
        count = min(n_assets, start + step) - start
        base = centres[rng.integers(0, clusters, count)]
        base += asset_spread * scale * rng.standard_normal((count, dim), dtype=np.float32)
        out = base[:, None, :] + view_spread * scale * rng.standard_normal(
            (count, views, dim), dtype=np.float32
        )
        out /= np.linalg.norm(out, axis=-1, keepdims=True)
        yield start, out


def cluster_centres(clusters: int, dim: int, rng: np.random.Generator) -> np.ndarray:
    """Unit cluster centres (the 'categories' of a synthetic library)."""
    centres = rng.standard_normal((clusters, dim), dtype=np.float32)
    return centres / np.linalg.norm(centres, axis=1, keepdims=True)


def clustered_view_vectors(
    n_assets: int,
    views: int,
    dim: int,
    seed: int = 0,
    clusters: int = 100,
    asset_spread: float = 0.6,
    view_spread: float = 0.35,
) -> np.ndarray:
    """Unit vectors shaped (n_assets, views, dim): all of `view_blocks` in one array."""
    out = np.empty((n_assets, views, dim), dtype=np.float32)
    for start, block in view_blocks(n_assets, views, dim, seed, clusters, asset_spread, view_spread):
        out[start : start + len(block)] = block
    return out


def exact_per_view_topk(
    views: np.ndarray, queries: np.ndarray, k: int, batch: int = 64
) -> tuple[np.ndarray, np.ndarray]:
    """Exact per-view search: for each query the k assets with the highest max-over-views cosine.

    `views` is (n_assets, n_views, dim) of unit vectors; returns (asset indices, scores), each (q, k).
    """
    n_assets, n_views, dim = views.shape
    flat = views.reshape(-1, dim)
    top_idx = np.empty((len(queries), k), dtype=np.int64)
    top_score = np.empty((len(queries), k), dtype=np.float32)
    for start in range(0, len(queries), batch):
        q = queries[start : start + batch]
        scores = (flat @ q.T).reshape(n_assets, n_views, -1).max(axis=1).T  # (b, n_assets)
        part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        part_scores = np.take_along_axis(scores, part, axis=1)
        order = np.argsort(-part_scores, axis=1, kind="stable")
        top_idx[start : start + len(q)] = np.take_along_axis(part, order, axis=1)
        top_score[start : start + len(q)] = np.take_along_axis(part_scores, order, axis=1)
    return top_idx, top_score


def synthetic_asset_ids(n_assets: int) -> list[str]:
    """Stable ids of synthetic assets: syn0000000, syn0000001, …"""
    return [f"syn{i:07d}" for i in range(n_assets)]


def load_synthetic_views(
    conn: psycopg.Connection,
    encoder: str,
    views: np.ndarray,
    batch_assets: int = 5000,
    high_quality_every: int = 10,
    storage: str = setting_default("vector_storage"),
    progress: bool = False,
) -> list:
    """Load a catalog and per-view vectors for `views` (n_assets, n_views, dim); return the LoadResults."""
    from assetlib.library.asset import Asset
    from assetlib.logs import progress as tqdm
    from assetlib.store.load import load_catalog, load_vectors
    from assetlib.store.schema import ensure_encoder
    from assetlib.vocab import VectorKind

    n_assets, n_views, dim = views.shape
    ids = synthetic_asset_ids(n_assets)
    tables = ensure_encoder(conn, encoder, dim, storage=storage)
    results = []
    for start in tqdm(range(0, n_assets, batch_assets), desc=f"load {encoder}", disable=not progress):
        chunk = ids[start : start + batch_assets]
        catalog = [
            Asset(
                asset_id=a,
                caption_en=f"synthetic asset {a}",
                high_quality=(start + i) % high_quality_every == 0,
                view_paths=tuple(Path(f"/synthetic/{a}/{v:05d}.png") for v in range(n_views)),
            )
            for i, a in enumerate(chunk)
        ]
        load_catalog(conn, catalog, f"catalog_{start:09d}")
        block = views[start : start + len(chunk)].reshape(-1, dim)
        results.append(
            load_vectors(
                conn,
                tables,
                VectorKind.VIEW,
                [a for a in chunk for _ in range(n_views)],
                block,
                f"views_{start:09d}",
                sub_keys=[v for _ in chunk for v in range(n_views)],
            )
        )
    return results
