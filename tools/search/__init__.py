"""Search backends behind one `SearchBackend` protocol: BM25, dense, hybrid (RRF), web (SearXNG), cassettes."""

from sounding.tools.search.base import Hit, SearchBackend, SearchError

__all__ = ["Hit", "SearchBackend", "SearchError"]
