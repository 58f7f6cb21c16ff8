"""Web search through a SearXNG instance's JSON API. Another search API is one more file like this one:
a class with ``name`` and ``search(query, k) -> list[Hit]``."""

from __future__ import annotations

import httpx

from sounding.tools.corpus import stable_id
from sounding.tools.fetch import FetchError, PageFetcher
from sounding.tools.search.base import Hit, SearchError


class SearxngSearch:
    name = "web"

    def __init__(
        self,
        base_url: str,
        *,
        timeout_s: float = 15.0,
        fetcher: PageFetcher | None = None,
        fetch_top: int = 0,
        max_chars: int = 3000,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._url = base_url.rstrip("/") + "/search"
        self._client = httpx.Client(timeout=timeout_s, transport=transport)
        self._fetcher = fetcher
        self._fetch_top = fetch_top
        self._max_chars = max_chars

    def search(self, query: str, k: int) -> list[Hit]:
        try:
            response = self._client.get(self._url, params={"q": query, "format": "json"})
            response.raise_for_status()
            results = response.json()["results"]
            if not isinstance(results, list):
                raise TypeError(f"'results' is a {type(results).__name__}, not a list")
        except httpx.HTTPError as exc:
            raise SearchError(f"SearXNG at {self._url} failed: {exc}") from exc
        except (ValueError, KeyError, TypeError) as exc:
            raise SearchError(f"SearXNG at {self._url} returned a body without 'results': {exc!r}") from exc
        hits = []
        for rank, result in enumerate(results[:k]):
            if not isinstance(result, dict):
                continue  # a malformed result is skipped, the others still count
            url = str(result.get("url") or "")
            if not url:
                continue
            text = str(result.get("content") or "")
            title = str(result.get("title") or url)
            if self._fetcher is not None and rank < self._fetch_top:
                try:
                    page = self._fetcher.fetch(url)
                    text, title = page.text[: self._max_chars], page.title or title
                except FetchError:
                    pass  # keep the snippet: one unreachable or malformed page must not sink the search
            try:
                score = float(result.get("score") or 1.0 / (rank + 1))
            except (TypeError, ValueError):
                score = 1.0 / (rank + 1)
            hits.append(Hit(doc_id="web-" + stable_id(url), title=title, text=text, score=score, url=url))
        return hits
