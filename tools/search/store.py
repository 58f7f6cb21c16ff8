"""Persistent indexes under the cache home, each with a manifest, written atomically.

Layout: ``HOME/indexes/<corpus-name>/{passages,bm25,dense}/`` each holding ``manifest.json`` plus data.
A folder is built under a temp name and renamed into place after its manifest is written, so an
interrupted build never leaves an index that loads as valid. Loading compares the manifest with what
is asked for (source fingerprint, passage parameters, backend parameters, model, format) and either
rebuilds or refuses with a message saying why.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import time
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel

from sounding import __version__
from sounding.settings import Settings
from sounding.tools.corpus import (
    WIKI_VITAL_DIST,
    CorpusSpec,
    Document,
    LoadReport,
    fingerprint,
    load_documents,
    split_passages,
    wiki_vital_path,
)
from sounding.tools.search.base import SearchBackend, SearchError, passage_text
from sounding.tools.search.bm25 import BM25Index, BM25Search
from sounding.tools.search.dense import EMBED_MODEL_NAME, DenseSearch, Embedder
from sounding.tools.search.hybrid import HybridSearch
from sounding.tools.search.reranked import EmbeddingCache, RerankedBM25Search

FORMAT = 1
OnMismatch = Literal["rebuild", "refuse"]
LOCAL_BACKENDS = ("bm25", "dense", "hybrid")
DENSE_PARAMS = {"normalize": True, "metric": "inner_product"}


#: Makes a step counter for a named task of ``total`` steps (the CLI draws a rich bar).
Progress = Callable[[str, int], Callable[[int], None]]


def no_progress(description: str, total: int) -> Callable[[int], None]:
    return lambda n: None


class IndexManifest(BaseModel):
    format: int = FORMAT
    kind: str
    corpus: str
    corpus_name: str
    source_fingerprint: str
    passages_fingerprint: str
    n_passages: int
    params: dict[str, Any]
    model: str | None = None
    sounding_version: str = __version__
    built_at: str
    build_seconds: float
    #: Lines or files of the source that were skipped when the passages were built (count, first few).
    skipped: int = 0
    skipped_examples: list[str] = []


class IndexMismatchError(SearchError):
    """A stored index does not match the request and rebuilding was not allowed."""


def source_fingerprint(spec: CorpusSpec) -> str:
    """Content identity of a corpus source: its kind and every file's name (relative to the corpus
    path) and bytes, or the data package's version and size. Nothing machine-specific (no absolute
    path, no mtime), so an index built on one machine is recognised on another."""
    digest = hashlib.sha256(spec.kind.encode())
    if spec.kind == "wiki-vital":
        path = wiki_vital_path()
        digest.update(f"{metadata.version(WIKI_VITAL_DIST)}:{path.stat().st_size}".encode())
    elif spec.path is not None:
        root = spec.path if spec.path.is_dir() else spec.path.parent
        files = sorted(spec.path.rglob("*")) if spec.path.is_dir() else [spec.path]
        for f in files:
            if f.is_file():
                digest.update(f"\x1e{f.relative_to(root).as_posix()}\x1f".encode())
                try:
                    with f.open("rb") as handle:
                        for block in iter(lambda: handle.read(1 << 20), b""):
                            digest.update(block)
                except OSError as exc:  # unreadable files are skipped by the loader, and reported there
                    digest.update(f"unreadable {exc.errno}".encode())
    return digest.hexdigest()[:20]


def _write_atomically(target: Path, write: Callable[[Path], None], manifest: IndexManifest) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    old = target.with_name(f".{target.name}.old-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        write(tmp)
        (tmp / "manifest.json").write_text(manifest.model_dump_json(indent=2))  # last: marks the folder valid
        if target.exists():
            os.replace(target, old)
        os.replace(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)


def read_manifest(folder: Path) -> IndexManifest | None:
    try:
        return IndexManifest.model_validate_json((folder / "manifest.json").read_text())
    except (OSError, ValueError):
        return None


class IndexStore:
    def __init__(self, settings: Settings, *, progress: Progress = no_progress) -> None:
        self.root = settings.indexes_dir
        self.settings = settings
        self.progress = progress
        self._embedder: Embedder | None = None

    def folder(self, spec: CorpusSpec, kind: str) -> Path:
        return self.root / spec.name / kind

    def embedder(self) -> Embedder:
        if self._embedder is None:
            self._embedder = Embedder(batch_size=self.settings.search.embed_batch_size)
        return self._embedder

    def _check(
        self,
        manifest: IndexManifest | None,
        expected: dict[str, Any],
        what: str,
        spec: CorpusSpec,
        on_mismatch: OnMismatch,
    ) -> bool:
        """True when the stored manifest matches; otherwise rebuild (False) or refuse with the reason."""
        if manifest is None:
            return False
        stored = manifest.model_dump()
        diffs = [
            f"{k}: stored {stored.get(k)!r}, wanted {v!r}" for k, v in expected.items() if stored.get(k) != v
        ]
        if not diffs:
            return True
        if on_mismatch == "refuse":
            raise IndexMismatchError(
                f"the {what} index of {spec} does not match ({'; '.join(diffs)}); "
                f"rebuild it with: sounding index build --corpus {spec}"
            )
        return False

    # -- passages ---------------------------------------------------------------------------------

    def passages(
        self,
        spec: CorpusSpec,
        *,
        on_mismatch: OnMismatch = "rebuild",
        force: bool = False,
        report: LoadReport | None = None,
    ) -> tuple[list[Document], IndexManifest]:
        folder = self.folder(spec, "passages")
        cfg = self.settings.search
        params = {"words": cfg.passage_words, "overlap": cfg.passage_overlap}
        expected = {"format": FORMAT, "source_fingerprint": source_fingerprint(spec), "params": params}
        manifest = read_manifest(folder)
        if not force and self._check(manifest, expected, "passage", spec, on_mismatch):
            assert manifest is not None
            with (folder / "passages.jsonl").open(encoding="utf-8") as handle:
                return [Document.model_validate_json(line) for line in handle], manifest
        start = time.perf_counter()
        report = report if report is not None else LoadReport()
        docs = load_documents(spec, report=report)
        if not docs:
            raise SearchError(f"corpus {spec} has no documents")
        passages = split_passages(docs, words=cfg.passage_words, overlap=cfg.passage_overlap)
        manifest = IndexManifest(
            kind="passages",
            corpus=str(spec),
            corpus_name=spec.name,
            source_fingerprint=expected["source_fingerprint"],
            passages_fingerprint=fingerprint(passages),
            n_passages=len(passages),
            params=params,
            built_at=time.strftime("%Y-%m-%dT%H:%M:%S"),
            build_seconds=time.perf_counter() - start,
            skipped=len(report.problems),
            skipped_examples=report.problems[:5],
        )

        def write(tmp: Path) -> None:
            with (tmp / "passages.jsonl").open("w", encoding="utf-8") as handle:
                for p in passages:
                    handle.write(p.model_dump_json() + "\n")

        _write_atomically(folder, write, manifest)
        return passages, manifest

    # -- backends ---------------------------------------------------------------------------------

    def bm25(
        self,
        spec: CorpusSpec,
        passages: list[Document],
        pm: IndexManifest,
        *,
        on_mismatch: OnMismatch = "rebuild",
        force: bool = False,
    ) -> BM25Search:
        folder = self.folder(spec, "bm25")
        params = {"k1": 1.5, "b": 0.75, "epsilon": 0.25}
        expected = {"format": FORMAT, "passages_fingerprint": pm.passages_fingerprint, "params": params}
        manifest = read_manifest(folder)
        if not force and self._check(manifest, expected, "bm25", spec, on_mismatch):
            return BM25Search(BM25Index.load(folder), passages)
        start = time.perf_counter()
        tick = self.progress(f"bm25 index of {spec.name}", 1)
        index = BM25Index.build([passage_text(p) for p in passages], **params)
        tick(1)
        _write_atomically(folder, index.save, self._manifest("bm25", spec, pm, params, None, start))
        return BM25Search(index, passages)

    def dense(
        self,
        spec: CorpusSpec,
        passages: list[Document],
        pm: IndexManifest,
        *,
        on_mismatch: OnMismatch = "rebuild",
        force: bool = False,
    ) -> DenseSearch:
        folder = self.folder(spec, "dense")
        params = DENSE_PARAMS
        expected = self._dense_expected(pm)
        manifest = read_manifest(folder)
        embedder = self.embedder()
        if not force and self._check(manifest, expected, "dense", spec, on_mismatch):
            return DenseSearch(np.load(folder / "embeddings.npy"), passages, embedder)
        start = time.perf_counter()
        # vectors a first question already computed (reranked BM25, before this index existed)
        cache = EmbeddingCache(self.folder(spec, "dense-partial"), pm.passages_fingerprint, embedder)
        todo = [i for i in range(len(passages)) if i not in cache.vectors]
        tick = self.progress(f"embedding {len(todo):,} passages of {spec.name}", len(todo))
        embeddings = np.zeros((len(passages), embedder.dim), dtype=np.float32)
        for row, vector in cache.vectors.items():
            embeddings[row] = vector
        if todo:
            embeddings[todo] = embedder.encode([passage_text(passages[i]) for i in todo], progress=tick)
        _write_atomically(
            folder,
            lambda tmp: np.save(tmp / "embeddings.npy", embeddings),
            self._manifest("dense", spec, pm, params, EMBED_MODEL_NAME, start),
        )
        shutil.rmtree(cache.folder, ignore_errors=True)  # the full index holds every vector now
        return DenseSearch(embeddings, passages, embedder)

    @staticmethod
    def _dense_expected(pm: IndexManifest) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "passages_fingerprint": pm.passages_fingerprint,
            "params": DENSE_PARAMS,
            "model": EMBED_MODEL_NAME,
        }

    def dense_ready(self, spec: CorpusSpec) -> bool:
        """Is the dense index of this corpus built and current (so hybrid search needs no embedding)?"""
        pm = read_manifest(self.folder(spec, "passages"))
        manifest = read_manifest(self.folder(spec, "dense"))
        if pm is None or manifest is None:
            return False
        stored = manifest.model_dump()
        return all(stored.get(k) == v for k, v in self._dense_expected(pm).items())

    @staticmethod
    def _manifest(
        kind: str,
        spec: CorpusSpec,
        pm: IndexManifest,
        params: dict[str, Any],
        model: str | None,
        start: float,
    ) -> IndexManifest:
        return IndexManifest(
            kind=kind,
            corpus=str(spec),
            corpus_name=spec.name,
            source_fingerprint=pm.source_fingerprint,
            passages_fingerprint=pm.passages_fingerprint,
            n_passages=pm.n_passages,
            params=params,
            model=model,
            built_at=time.strftime("%Y-%m-%dT%H:%M:%S"),
            build_seconds=time.perf_counter() - start,
        )

    def open(
        self,
        spec: CorpusSpec,
        backend: str,
        *,
        on_mismatch: OnMismatch = "rebuild",
        force: bool = False,
        wait_for_dense: bool = True,
    ) -> SearchBackend:
        """The search backend over a corpus, building (or refusing) what is missing or stale.

        ``wait_for_dense=False`` (what `sounding ask` does): a hybrid backend whose dense index is not
        built yet is served by BM25 with dense re-ranking of its candidates (`RerankedBM25Search`)
        instead of embedding the whole corpus first; `sounding index build` builds the rest."""
        if backend not in LOCAL_BACKENDS:
            raise SearchError(
                f"unknown local search backend {backend!r}; use one of {', '.join(LOCAL_BACKENDS)}"
            )
        passages, pm = self.passages(spec, on_mismatch=on_mismatch, force=force)
        if backend == "bm25":
            return self.bm25(spec, passages, pm, on_mismatch=on_mismatch, force=force)
        if backend == "dense":
            return self.dense(spec, passages, pm, on_mismatch=on_mismatch, force=force)
        if not wait_for_dense and not force and not self.dense_ready(spec):
            bm25 = self.bm25(spec, passages, pm, on_mismatch=on_mismatch)
            cache = EmbeddingCache(
                self.folder(spec, "dense-partial"), pm.passages_fingerprint, self.embedder()
            )
            return RerankedBM25Search(bm25, cache, passages, rrf_k=self.settings.search.rrf_k)
        return HybridSearch(
            self.bm25(spec, passages, pm, on_mismatch=on_mismatch, force=force),
            self.dense(spec, passages, pm, on_mismatch=on_mismatch, force=force),
            passages,
            rrf_k=self.settings.search.rrf_k,
        )

    def list(self) -> list[tuple[Path, IndexManifest]]:
        found = []
        for manifest_file in sorted(self.root.glob("*/*/manifest.json")):
            manifest = read_manifest(manifest_file.parent)
            if manifest is not None:
                found.append((manifest_file.parent, manifest))
        return found


def folder_size(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
