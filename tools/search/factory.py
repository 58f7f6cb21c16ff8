"""Build the search backend the settings ask for, optionally behind a cassette."""

from __future__ import annotations

from pathlib import Path

from sounding.settings import Settings
from sounding.tools.corpus import parse_corpus_spec
from sounding.tools.fetch import HttpPageFetcher
from sounding.tools.search.base import SearchBackend, SearchError
from sounding.tools.search.cassette import Cassette, CassetteMode, CassetteSearch
from sounding.tools.search.store import IndexStore, OnMismatch, Progress, no_progress
from sounding.tools.search.web import SearxngSearch


def make_search(
    settings: Settings,
    *,
    progress: Progress = no_progress,
    on_mismatch: OnMismatch = "rebuild",
    cassette: Path | None = None,
    cassette_mode: CassetteMode = "replay",
    store: IndexStore | None = None,
    wait_for_dense: bool = True,
) -> SearchBackend:
    cfg = settings.search
    backend: SearchBackend | None
    if cassette is not None and cassette_mode == "replay-only":
        backend = None  # replay-only never touches the real backend, so do not even build it
    elif cfg.backend == "web":
        if not cfg.searxng_url:
            raise SearchError(
                "the web backend needs a SearXNG URL: --searxng-url or SOUNDING_SEARCH__SEARXNG_URL"
            )
        backend = SearxngSearch(
            cfg.searxng_url,
            timeout_s=settings.fetch.timeout_s,
            fetcher=HttpPageFetcher(settings.fetch),
            fetch_top=2,
        )
    else:
        spec = parse_corpus_spec(cfg.corpus)
        backend = (store or IndexStore(settings, progress=progress)).open(
            spec, cfg.backend, on_mismatch=on_mismatch, wait_for_dense=wait_for_dense
        )
    if cassette is None:
        assert backend is not None
        return backend
    return CassetteSearch(backend, Cassette(cassette, cassette_mode), name=cfg.backend)
