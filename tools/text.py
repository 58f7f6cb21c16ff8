"""Answer normalisation shared by the agent's vote and the metrics (SQuAD v1.1)."""

from __future__ import annotations

import re
import string

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = set(string.punctuation)


def normalize_answer(text: str) -> str:
    """SQuAD v1.1 normalisation: lower case, drop punctuation and articles, collapse whitespace."""
    text = text.lower()
    text = "".join(ch for ch in text if ch not in _PUNCT)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


# Function words that say nothing about whether a source supports a sentence.
STOPWORDS = frozenset(
    """a about above after again against all also an and any are as at be because been before being
    below between both but by can could did do does doing down during each few for from further had has
    have having he her here hers him his how i if in into is it its itself just more most my no nor not
    now of off on once only or other our out over own same she should so some such than that the their
    them then there these they this those through to too under until up very was we were what when where
    which while who whom why will with would you your one two many much well made make became become""".split()
)


def content_words(text: str) -> set[str]:
    """Lower-cased words of three or more letters (or any number) minus stopwords, plural 's' cut."""
    words = set()
    for word in re.findall(r"[^\W_]+", text.lower()):
        if word in STOPWORDS or (len(word) < 3 and not word.isdigit()):
            continue
        words.add(word[:-1] if len(word) > 4 and word.endswith("s") and not word.endswith("ss") else word)
    return words


def lexical_support(sentence: str, sources: list[str]) -> float:
    """Share of the sentence's content words found in the sources: 0 (none) to 1 (every one).

    A cheap, model-free check that a cited passage can support a sentence at all; a sentence with no
    content words is vacuous and gets 0."""
    claim = content_words(sentence)
    if not claim:
        return 0.0
    found = set().union(*(content_words(s) for s in sources)) if sources else set()
    return len(claim & found) / len(claim)
