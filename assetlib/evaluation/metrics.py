"""Retrieval metrics for ranked lists with several relevant items per query.

Definitions (binary relevance; `ranked` is the system's list, best first; `relevant` a set):
- hit@k: 1 if any relevant item is in the top k, else 0. This is what most image-text papers
  call "Recall@k"; reported as `r@k`.
- recall@k: the fraction of all relevant items that appear in the top k (differs from hit@k
  whenever a query has more than one relevant item); reported as `recall@k`.
- precision@k: the share of the top k that is relevant (what a user sees on the first page).
- MRR: 1 / rank of the first relevant item (0 when none is retrieved).
- AP (averaged into mAP): mean over the relevant items of precision at each relevant item's rank;
  relevant items never retrieved count as precision 0 (divide by |relevant|).
- nDCG@k: DCG@k with gain 1 per relevant item and discount 1/log2(rank + 1), divided by the DCG
  of the ideal ranking (all relevant items first).
Queries without any relevant item are rejected: every metric is undefined for them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence


def _check(relevant: set) -> None:
    if not relevant:
        raise ValueError("a query needs at least one relevant item")


def hit_at_k(ranked: Sequence, relevant: set, k: int) -> float:
    """1.0 when a relevant item is among the first k, else 0.0."""
    _check(relevant)
    return 1.0 if any(item in relevant for item in ranked[:k]) else 0.0


def recall_at_k(ranked: Sequence, relevant: set, k: int) -> float:
    """Share of the relevant items found among the first k."""
    _check(relevant)
    return len(set(ranked[:k]) & relevant) / len(relevant)


def precision_at_k(ranked: Sequence, relevant: set, k: int) -> float:
    """Share of the top k that is relevant (k in the denominator even when fewer were returned)."""
    _check(relevant)
    return sum(1 for item in ranked[:k] if item in relevant) / k


def reciprocal_rank(ranked: Sequence, relevant: set) -> float:
    """1 / rank of the first relevant item; 0 when none is in the list."""
    _check(relevant)
    for rank, item in enumerate(ranked, start=1):
        if item in relevant:
            return 1.0 / rank
    return 0.0


def average_precision(ranked: Sequence, relevant: set) -> float:
    """Mean precision at the ranks of the relevant items (missing ones count 0)."""
    _check(relevant)
    found, total = 0, 0.0
    for rank, item in enumerate(ranked, start=1):
        if item in relevant:
            found += 1
            total += found / rank
    return total / len(relevant)


def ndcg_at_k(ranked: Sequence, relevant: set, k: int) -> float:
    """Normalised discounted cumulative gain at k with binary gains."""
    _check(relevant)
    dcg = sum(1.0 / math.log2(rank + 1) for rank, item in enumerate(ranked[:k], start=1) if item in relevant)
    ideal = sum(1.0 / math.log2(rank + 1) for rank in range(1, min(k, len(relevant)) + 1))
    return dcg / ideal


def summarize(rankings: Sequence[Sequence], relevants: Sequence[set], ks: Sequence[int] = (1, 5, 10)) -> dict:
    """Mean of every metric over queries: r@k (hit), recall@k, precision@10, mrr, map, ndcg@10, and the
    query count."""
    if len(rankings) != len(relevants):
        raise ValueError("one relevant set per ranking")
    n = len(rankings)
    if n == 0:
        return {"queries": 0}
    out: dict[str, float] = {"queries": n}
    for k in ks:
        out[f"r@{k}"] = sum(hit_at_k(r, rel, k) for r, rel in zip(rankings, relevants, strict=True)) / n
        out[f"recall@{k}"] = (
            sum(recall_at_k(r, rel, k) for r, rel in zip(rankings, relevants, strict=True)) / n
        )
    out["precision@10"] = (
        sum(precision_at_k(r, rel, 10) for r, rel in zip(rankings, relevants, strict=True)) / n
    )
    out["mrr"] = sum(reciprocal_rank(r, rel) for r, rel in zip(rankings, relevants, strict=True)) / n
    out["map"] = sum(average_precision(r, rel) for r, rel in zip(rankings, relevants, strict=True)) / n
    out["ndcg@10"] = sum(ndcg_at_k(r, rel, 10) for r, rel in zip(rankings, relevants, strict=True)) / n
    return out


def hit_curve(rankings: Sequence[Sequence], relevants: Sequence[set], max_k: int) -> list[float]:
    """hit@k for k = 1..max_k (for recall@k curves)."""
    n = len(rankings)
    return [
        sum(hit_at_k(r, rel, k) for r, rel in zip(rankings, relevants, strict=True)) / n
        for k in range(1, max_k + 1)
    ]
