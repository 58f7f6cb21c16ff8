"""The `SearchBackend` contract and the `Hit` it returns."""

from __future__ import annotations

import re
from typing import Protocol, runtime_checkable

from pydantic import BaseModel

from sounding.tools.corpus import Document


class Hit(BaseModel):
    doc_id: str
    title: str
    text: str
    score: float
    url: str | None = None


@runtime_checkable
class SearchBackend(Protocol):
    @property
    def name(self) -> str: ...

    def search(self, query: str, k: int) -> list[Hit]: ...


class SearchError(RuntimeError):
    """A search backend failed (after its own retries) or cannot be used."""


_TOKEN = re.compile(r"\w+", re.UNICODE)
# A small English stopword list: BM25 would down-weight these anyway, removing them keeps the index small.
STOPWORDS = frozenset(
    """a about above after again against all am an and any are as at be because been before being below between
    both but by can could did do does doing down during each few for from further had has have having he her here
    hers herself him himself his how i if in into is it its itself just me more most my myself no nor not now of
    off on once only or other our ours ourselves out over own same she should so some such than that the their
    theirs them themselves then there these they this those through to too under until up very was we were what
    when where which while who whom why will with would you your yours yourself yourselves""".split()
)


def tokenize(text: str) -> list[str]:
    """Lowercased word tokens without stopwords; shared by our BM25 and the rank-bm25 reference."""
    return [t for t in _TOKEN.findall(text.lower()) if t not in STOPWORDS]


def passage_text(p: Document) -> str:
    """What gets indexed: the title carries much of an encyclopedia passage's meaning."""
    return f"{p.title}. {p.text}" if p.title else p.text


def hit_from(p: Document, score: float) -> Hit:
    return Hit(doc_id=p.doc_id, title=p.title, text=p.text, score=score, url=p.url)
