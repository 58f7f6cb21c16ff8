"""Reciprocal-rank fusion (Cormack et al. 2009): the one fusion function of the project. Hybrid search
fuses BM25 and dense rankings with it; the agent's read step fuses the hits of a run's queries with it
(this round's hits weighted twice). ``k`` is ``search.rrf_k`` everywhere."""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Sequence
from typing import TypeVar

Item = TypeVar("Item", bound=Hashable)

DEFAULT_K = 60


def fuse(entries: Iterable[tuple[Item, int, float]], *, k: int = DEFAULT_K) -> list[tuple[Item, float]]:
    """``(item, rank, weight)`` entries (rank from 1, as each list ranked it) -> items by fused score
    ``sum of weight / (k + rank)``, best first; ties broken by the item itself, so the order is stable."""
    fused: dict[Item, float] = {}
    for item, rank, weight in entries:
        fused[item] = fused.get(item, 0.0) + 1.0 / (k + rank) * weight
    return sorted(fused.items(), key=lambda pair: (-pair[1], pair[0]))


def rrf(rankings: Sequence[Sequence[Item]], *, k: int = DEFAULT_K) -> list[tuple[Item, float]]:
    """Fuse whole ranked lists (an item's rank is its position in each list)."""
    return fuse(((item, rank, 1.0) for ranking in rankings for rank, item in enumerate(ranking, 1)), k=k)
