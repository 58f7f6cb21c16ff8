"""How closely a text bears on a question: what a report's relevance filter asks (issue 32).

`EmbeddingRelatedness` is the cosine of the question's and the text's all-MiniLM-L6-v2 embeddings,
the model dense search already ships with (normalised vectors, so the cosine is a dot product). It
catches what shared words cannot: a quoted sentence about *The Seventh Seal* names the Black Death but
is about a film; "dissolution" and "collapse" share no stem. The model loads on first use (a short
answer never pays for it) and vectors of texts seen before are cached: a report compares the same
notes with each of its sections.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Protocol

import numpy as np

if TYPE_CHECKING:
    from sounding.tools.search.dense import Embedder


class Relatedness(Protocol):
    """Similarity of each text to a query, on one scale (cosine: 1 the same meaning, ~0 unrelated)."""

    def similarity(self, query: str, texts: Sequence[str]) -> list[float]: ...


def _default_embedder() -> Embedder:
    from sounding.tools.search.dense import Embedder

    return Embedder()


class EmbeddingRelatedness:
    """Cosine similarity of MiniLM embeddings. ``load`` makes the embedder when first needed (pass
    the search index's own to share one model in memory); at most ``cache_size`` vectors are kept."""

    def __init__(self, load: Callable[[], Embedder] | None = None, *, cache_size: int = 4096) -> None:
        self._load = load or _default_embedder
        self._embedder: Embedder | None = None
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._cache_size = cache_size
        # a strategy's branches may call from threads: one encoder call at a time, one cache
        self._lock = threading.Lock()

    def similarity(self, query: str, texts: Sequence[str]) -> list[float]:
        if not texts:
            return []
        vectors = self._vectors([query, *texts])
        return [float(v @ vectors[0]) for v in vectors[1:]]

    def _vectors(self, texts: Sequence[str]) -> list[np.ndarray]:
        with self._lock:
            missing = list(dict.fromkeys(t for t in texts if t not in self._cache))
            if missing:
                if self._embedder is None:
                    self._embedder = self._load()
                for text, vector in zip(missing, self._embedder.encode(missing), strict=True):
                    self._cache[text] = vector
            out = []
            for text in texts:
                self._cache.move_to_end(text)
                out.append(self._cache[text])
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
            return out
