"""BM25 (Okapi, rank-bm25's formula and defaults) served by a sparse matrix product.

Every (passage, term) weight is precomputed into a CSR matrix, so a query is one sparse
matrix-vector product plus a partial sort, instead of rank-bm25's Python loop over all passages.
Scores are identical to ``rank_bm25.BM25Okapi`` with the same tokenizer (tested).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from sounding.tools.corpus import Document
from sounding.tools.search.base import Hit, hit_from, tokenize


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k best scores, best first; ties broken by lower index (deterministic)."""
    k = min(k, scores.shape[0])
    if k <= 0:
        return np.empty(0, dtype=np.int64)
    candidates = np.argpartition(-scores, k - 1)[:k] if k < scores.shape[0] else np.arange(scores.shape[0])
    # widen to every index tied with the k-th score so tie-breaking by index is exact
    kth = scores[candidates].min()
    candidates = np.flatnonzero(scores >= kth)
    order = np.lexsort((candidates, -scores[candidates]))
    return candidates[order][:k]


class BM25Index:
    def __init__(self, weights: sp.csr_matrix, vocab: dict[str, int], params: dict[str, float]) -> None:
        self.weights = weights
        self.vocab = vocab
        self.params = params

    @classmethod
    def build(
        cls, texts: Sequence[str], *, k1: float = 1.5, b: float = 0.75, epsilon: float = 0.25
    ) -> BM25Index:
        vocab: dict[str, int] = {}
        rows: list[int] = []
        cols: list[int] = []
        tfs: list[int] = []
        doc_len = np.zeros(len(texts), dtype=np.float64)
        for row, text in enumerate(texts):
            tokens = tokenize(text)
            doc_len[row] = len(tokens)
            for term, tf in Counter(tokens).items():
                rows.append(row)
                cols.append(vocab.setdefault(term, len(vocab)))
                tfs.append(tf)
        n = len(texts)
        tf_m = sp.csr_matrix((np.asarray(tfs, dtype=np.float64), (rows, cols)), shape=(n, len(vocab)))
        df = np.bincount(np.asarray(cols, dtype=np.int64), minlength=len(vocab)).astype(np.float64)
        # rank-bm25's idf: log((N - df + 0.5) / (df + 0.5)); negative values floored to epsilon * mean idf.
        idf = np.log(n - df + 0.5) - np.log(df + 0.5)
        if len(idf):
            idf[idf < 0] = epsilon * idf.mean()
        avgdl = doc_len.mean() if n else 0.0
        norm = k1 * (1 - b + b * doc_len / avgdl) if avgdl else np.full(n, k1)
        coo = tf_m.tocoo()
        tf = coo.data
        data = idf[coo.col] * tf * (k1 + 1) / (tf + norm[coo.row])
        weights = sp.csr_matrix((data, (coo.row, coo.col)), shape=tf_m.shape)
        return cls(weights, vocab, {"k1": k1, "b": b, "epsilon": epsilon})

    def scores(self, query: str) -> np.ndarray:
        q = np.zeros(self.weights.shape[1], dtype=np.float64)
        for term in tokenize(query):  # repeated query terms count again, as in rank-bm25
            col = self.vocab.get(term)
            if col is not None:
                q[col] += 1.0
        return np.asarray(self.weights @ q).ravel()

    def top(self, query: str, k: int) -> list[tuple[int, float]]:
        scores = self.scores(query)
        return [(int(i), float(scores[i])) for i in top_k(scores, k) if scores[i] > 0]

    def save(self, folder: Path) -> None:
        sp.save_npz(folder / "bm25_weights.npz", self.weights)
        (folder / "bm25_vocab.json").write_text(json.dumps({"vocab": self.vocab, "params": self.params}))

    @classmethod
    def load(cls, folder: Path) -> BM25Index:
        meta = json.loads((folder / "bm25_vocab.json").read_text())
        return cls(sp.load_npz(folder / "bm25_weights.npz").tocsr(), meta["vocab"], meta["params"])


class BM25Search:
    """A `SearchBackend` over a BM25 index and its passages."""

    name = "bm25"

    def __init__(self, index: BM25Index, passages: Sequence[Document]) -> None:
        self.index = index
        self.passages = passages

    def search(self, query: str, k: int) -> list[Hit]:
        return [hit_from(self.passages[i], score) for i, score in self.index.top(query, k)]
