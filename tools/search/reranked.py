"""Hybrid search before the dense index exists: BM25's candidates re-ranked by dense similarity.

Embedding a whole corpus takes minutes on a laptop CPU (wiki-vital: ~10 minutes on 2 cores), and a
first question should not wait for it. This backend embeds only what BM25 retrieves for each query
(50 candidates, ~2-3 s), fuses the two rankings of those candidates by reciprocal rank, as the full
hybrid does, and keeps every vector it computes in an `EmbeddingCache`, which the full dense build
reuses. Its recall is measured against the full hybrid in ``benchmarks/bench_retrieval.py rerank``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from sounding.tools.corpus import Document
from sounding.tools.search.base import Hit, hit_from, passage_text
from sounding.tools.search.bm25 import BM25Search
from sounding.tools.search.dense import EMBED_MODEL_NAME, Embedder
from sounding.tools.search.fusion import rrf


class EmbeddingCache:
    """Passage vectors computed so far, by row, for one passages fingerprint and one model; saved
    after each batch (atomically), so a later run and the full dense build start from them."""

    def __init__(self, folder: Path, passages_fingerprint: str, embedder: Embedder) -> None:
        self.folder = folder
        self.key = {"passages_fingerprint": passages_fingerprint, "model": EMBED_MODEL_NAME}
        self.embedder = embedder
        self.vectors: dict[int, np.ndarray] = {}
        self._load()

    def _load(self) -> None:
        try:
            key = json.loads((self.folder / "key.json").read_text(encoding="utf-8"))
            rows = np.load(self.folder / "rows.npy")
            vectors = np.load(self.folder / "vectors.npy")
        except (OSError, ValueError):
            return  # none yet, or unreadable: start empty (it is only a cache)
        if key == self.key and len(rows) == len(vectors):
            self.vectors = {int(r): v for r, v in zip(rows, vectors, strict=True)}

    def get(self, rows: Sequence[int], passages: Sequence[Document]) -> np.ndarray:
        missing = [r for r in dict.fromkeys(rows) if r not in self.vectors]
        if missing:
            fresh = self.embedder.encode([passage_text(passages[r]) for r in missing])
            self.vectors.update(zip(missing, fresh, strict=True))
            self.save()
        return np.stack([self.vectors[r] for r in rows]) if rows else np.zeros((0, self.embedder.dim))

    def save(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        rows = np.array(sorted(self.vectors), dtype=np.int64)
        for name, data in (
            ("rows.npy", rows),
            ("vectors.npy", np.stack([self.vectors[int(r)] for r in rows])),
        ):
            tmp = self.folder / f".{name}.tmp.npy"
            np.save(tmp, data)
            os.replace(tmp, self.folder / name)
        (self.folder / "key.json").write_text(json.dumps(self.key), encoding="utf-8")


class RerankedBM25Search:
    """BM25 top ``depth`` candidates, fused by reciprocal rank with their dense order."""

    name = "hybrid-reranked"

    def __init__(
        self,
        bm25: BM25Search,
        cache: EmbeddingCache,
        passages: Sequence[Document],
        *,
        rrf_k: int = 60,
        depth: int = 50,
    ) -> None:
        self.bm25 = bm25
        self.cache = cache
        self.passages = passages
        self.rrf_k = rrf_k
        self.depth = depth

    def search(self, query: str, k: int) -> list[Hit]:
        candidates = [row for row, _ in self.bm25.index.top(query, max(self.depth, k))]
        if not candidates:
            return []
        vectors = self.cache.get(candidates, self.passages)
        q = self.cache.embedder.encode([query])[0]
        scores = vectors @ q
        dense = [candidates[i] for i in np.lexsort((np.arange(len(candidates)), -scores))]
        fused = rrf([candidates, dense], k=self.rrf_k)[:k]
        return [hit_from(self.passages[row], score) for row, score in fused]
