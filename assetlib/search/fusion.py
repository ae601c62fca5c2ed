"""Reciprocal rank fusion: several rankings of assets → one, by rank rather than raw score."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from assetlib.store.knn import StoreHit

RRF_K = 60  # the fusion constant of Cormack et al.: ranks beyond the first few count for little
FUSION_DEPTH = 3  # each ranking fetches this many times the final k, so fusion sees past the cut


def rrf_fuse(
    rankings: Mapping[str, Sequence[StoreHit]], top_k: int
) -> list[tuple[StoreHit, float, tuple[str, ...]]]:
    """Fuse rankings: score = Σ 1 / (RRF_K + rank); ties broken by asset id; the best-scoring hit kept.

    Returns (hit, fused score, names of the rankings that found it) for the top_k assets.
    """
    scores: dict[str, float] = {}
    best: dict[str, StoreHit] = {}
    sources: dict[str, list[str]] = {}
    for name, hits in rankings.items():
        for rank, hit in enumerate(hits, start=1):
            scores[hit.asset_id] = scores.get(hit.asset_id, 0.0) + 1.0 / (RRF_K + rank)
            sources.setdefault(hit.asset_id, []).append(name)
            if hit.asset_id not in best or hit.score > best[hit.asset_id].score:
                best[hit.asset_id] = hit
    ordered = sorted(scores, key=lambda a: (-scores[a], a))[:top_k]
    return [(best[a], scores[a], tuple(sources[a])) for a in ordered]
