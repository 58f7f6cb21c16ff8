"""Record/replay for any search backend or page fetcher, so a sweep is deterministic and a rerun free.

Modes: ``record`` (always call through, store the answer), ``replay`` (stored answer if present, else
call through and store), ``replay-only`` (stored answer or a `CassetteMiss`; never calls through).
A cassette is one JSON Lines file; appends are locked, so parallel searches can share one.
"""

from __future__ import annotations

import hashlib
import json
import threading
from pathlib import Path
from typing import Any, Literal

from sounding.tools.fetch import Page, PageFetcher
from sounding.tools.search.base import Hit, SearchBackend, SearchError

CassetteMode = Literal["record", "replay", "replay-only"]


class CassetteMiss(SearchError):
    """Replay-only mode met a request that was never recorded."""


class Cassette:
    def __init__(self, path: Path, mode: CassetteMode) -> None:
        self.path = path
        self.mode = mode
        self._lock = threading.Lock()
        self._entries: dict[str, Any] = {}
        if path.exists():
            with path.open(encoding="utf-8") as handle:
                for lineno, line in enumerate(handle, 1):
                    if not line.strip():
                        continue
                    try:
                        entry = json.loads(line)
                        self._entries[entry["key"]] = entry["value"]
                    except (ValueError, KeyError) as exc:
                        # a torn last line from a killed run is dropped; the request is simply re-made
                        if mode == "replay-only":
                            raise SearchError(f"{path}:{lineno}: corrupt cassette entry") from exc
        elif mode == "replay-only":
            raise CassetteMiss(f"cassette {path} does not exist (replay-only mode)")

    @staticmethod
    def key(*parts: object) -> str:
        return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:24]

    def get(self, key: str) -> Any | None:
        if self.mode == "record":
            return None
        return self._entries.get(key)

    def put(self, key: str, value: Any, label: dict[str, Any]) -> None:
        with self._lock:
            self._entries[key] = value
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as handle:
                handle.write(json.dumps({"key": key, **label, "value": value}) + "\n")

    def __len__(self) -> int:
        return len(self._entries)


class CassetteSearch:
    def __init__(self, inner: SearchBackend | None, cassette: Cassette, *, name: str | None = None) -> None:
        if inner is None and cassette.mode != "replay-only":
            raise ValueError("a cassette needs a backend to call through unless it is replay-only")
        self._inner = inner
        self._cassette = cassette
        self._name = name or (inner.name if inner is not None else "replay")

    @property
    def name(self) -> str:
        return self._name

    def search(self, query: str, k: int) -> list[Hit]:
        key = Cassette.key("search", self._name, query, k)
        stored = self._cassette.get(key)
        if stored is not None:
            return [Hit.model_validate(h) for h in stored]
        if self._cassette.mode == "replay-only" or self._inner is None:
            raise CassetteMiss(
                f"no recording of {self._name} search {query!r} (k={k}) in {self._cassette.path}"
            )
        hits = self._inner.search(query, k)
        self._cassette.put(
            key, [h.model_dump() for h in hits], {"backend": self._name, "query": query, "k": k}
        )
        return hits


class CassetteFetcher:
    def __init__(self, inner: PageFetcher | None, cassette: Cassette) -> None:
        self._inner = inner
        self._cassette = cassette

    def fetch(self, url: str) -> Page:
        key = Cassette.key("fetch", url)
        stored = self._cassette.get(key)
        if stored is not None:
            return Page.model_validate(stored)
        if self._cassette.mode == "replay-only" or self._inner is None:
            raise CassetteMiss(f"no recording of page {url} in {self._cassette.path}")
        page = self._inner.fetch(url)
        self._cassette.put(key, page.model_dump(), {"url": url})
        return page
