"""Hybrid retrieval: reciprocal-rank fusion (Cormack et al. 2009) of BM25 and dense rankings."""

from __future__ import annotations

from collections.abc import Sequence

from sounding.tools.corpus import Document
from sounding.tools.search.base import Hit, hit_from
from sounding.tools.search.bm25 import BM25Search
from sounding.tools.search.dense import DenseSearch
from sounding.tools.search.fusion import rrf

__all__ = ["HybridSearch", "rrf"]


class HybridSearch:
    name = "hybrid"

    def __init__(
        self,
        bm25: BM25Search,
        dense: DenseSearch,
        passages: Sequence[Document],
        *,
        rrf_k: int = 60,
        depth: int = 50,
    ) -> None:
        self.bm25 = bm25
        self.dense = dense
        self.passages = passages
        self.rrf_k = rrf_k
        self.depth = depth

    def search(self, query: str, k: int) -> list[Hit]:
        depth = max(self.depth, k)
        sparse = [row for row, _ in self.bm25.index.top(query, depth)]
        dense = [row for row, _ in self.dense.top(query, depth)]
        return [hit_from(self.passages[row], score) for row, score in rrf([sparse, dense], k=self.rrf_k)[:k]]
