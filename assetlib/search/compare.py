"""Side by side: the same query searched two ways, how much the results agree, what each found alone."""

from __future__ import annotations

from dataclasses import dataclass

from assetlib.search.service import SearchResult


@dataclass
class Comparison:
    """Two results for one query and their agreement at k."""

    a: SearchResult
    b: SearchResult
    k: int
    both: list[str]
    only_a: list[str]
    only_b: list[str]

    @property
    def overlap_at_k(self) -> float:
        """Share of the top k found by both (|A ∩ B| / k)."""
        return len(self.both) / self.k if self.k else 0.0


def compare(a: SearchResult, b: SearchResult, k: int) -> Comparison:
    """Agreement of two results over their top k, in each one's rank order."""
    ids_a = [h.asset_id for h in a.hits[:k]]
    ids_b = [h.asset_id for h in b.hits[:k]]
    in_b = set(ids_b)
    in_a = set(ids_a)
    return Comparison(
        a,
        b,
        k,
        [x for x in ids_a if x in in_b],
        [x for x in ids_a if x not in in_b],
        [x for x in ids_b if x not in in_a],
    )
