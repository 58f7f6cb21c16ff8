"""Text helpers shared by the agent and the metrics: answer normalisation (SQuAD v1.1), content
words and the lexical support check, and whole sentences (splitting, and telling a cut one)."""

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


_SUFFIXES = ("ations", "ation", "ings", "ing", "edly", "ed", "es", "ly", "ic", "al", "y", "e")


def stem(word: str) -> str:
    """A crude stem for matching words across their forms: one common suffix off (keeping at least
    four letters), then the first six letters. "economy"/"economic" -> "econom", "dissolved"/
    "dissolution" -> "dissol", "trade"/"traded" -> "trad"; some unrelated words meet ("community",
    "communist"), which a relevance ranking can bear and a support check could not."""
    for suffix in _SUFFIXES:
        if word.endswith(suffix) and len(word) - len(suffix) >= 4:
            word = word[: -len(suffix)]
            break
    return word[:6]


def stems(text: str) -> set[str]:
    """The stems of the text's content words."""
    return {stem(word) for word in content_words(text)}


def lexical_support(sentence: str, sources: list[str]) -> float:
    """Share of the sentence's content words found in the sources: 0 (none) to 1 (every one).

    A cheap, model-free check that a cited passage can support a sentence at all; a sentence with no
    content words is vacuous and gets 0."""
    claim = content_words(sentence)
    if not claim:
        return 0.0
    found = set().union(*(content_words(s) for s in sources)) if sources else set()
    return len(claim & found) / len(claim)


# --- the names a question gives ------------------------------------------------------------------


def name_words(text: str) -> set[str]:
    """The lower-cased capitalised words of a text after its first word: a lexical reading of the
    names it gives (people, titles, places). "Who directed Jaws in 1975?" -> {"jaws"}."""
    return {w.lower() for w in re.findall(r"\b[A-Z][\w'-]*", " ".join(text.split()[1:]))}


_LEADING_ARTICLE = re.compile(r"^(?:the|a|an)\s+", re.IGNORECASE)


def question_options(question: str) -> list[str]:
    """The two named options a question offers after a comma or colon ("Which band, Letters to Cleo
    or Screaming Trees, had more members?" -> ["Letters to Cleo", "Screaming Trees"]), or none. Both
    must read as names (a capital or a digit first): "a city or a town" offers no named options."""
    for part in re.split(r"[,:;?]", question)[1:]:
        first, sep, second = part.strip().partition(" or ")
        if not sep or " or " in second:
            continue
        options = [_LEADING_ARTICLE.sub("", side.strip()) for side in (first, second)]
        if all(o[:1].isupper() or o[:1].isdigit() for o in options):
            return options
    return []


# --- whole sentences -----------------------------------------------------------------------------

#: Abbreviations whose full stop does not end a sentence (lower case, without the stop).
ABBREVIATIONS = frozenset(
    """mr mrs ms dr prof st mt ft jr sr gen gov col lt sgt capt rev hon sen rep pres vs etc al approx
    ca c b d fl r no nos vol vols fig figs ed eds inc ltd co corp dept est jan feb mar apr jun jul aug sep
    sept oct nov dec""".split()
)
#: Last words that leave a sentence unfinished: an article, a preposition, a conjunction or a
#: possessive cannot end an English sentence ("the historiography of the.", "beginning a."). Particles
#: that can end one ("went on.", "broke out.", "than ever before.") are left out on purpose.
CUT_ENDINGS = frozenset(
    """a an the of to and or but nor its their our my your whose very than into onto with from by at
    for such because although whereas including between among via""".split()
)
_TERMINAL = re.compile(r"[.!?][\"'’”)\]]*$")
_OPENS_SENTENCE = re.compile(r"^[\"'‘“(\[]?[A-Z0-9]")
_INITIALS = re.compile(r"^(?:[A-Za-z]\.)+$")  # "J.", "U.S.", "e.g."


def _ends_sentence(token: str, following: str) -> bool:
    """Whether ``token`` (a whitespace-separated word) closes a sentence before ``following``."""
    if not _TERMINAL.search(token) or not _OPENS_SENTENCE.match(following):
        return False
    bare = token.rstrip("\"'’”)]")
    if bare.endswith(("!", "?")):
        return True
    word = bare[:-1]
    if word.lower().lstrip("(\"'") in ABBREVIATIONS:
        return False
    return not _INITIALS.match(bare.lstrip("(\"'"))


def sentences(text: str) -> list[str]:
    """The sentences of ``text``, split after a full stop, '!' or '?' that is followed by a capital,
    a digit or an opening quote, and is not an abbreviation's stop ("c. 1299", "U.S. Navy", "J. S.
    Bach"). The last item is whatever follows the last boundary, finished or not."""
    tokens = text.split()
    out: list[str] = []
    start = 0
    for i, token in enumerate(tokens):
        if i + 1 < len(tokens) and _ends_sentence(token, tokens[i + 1]):
            out.append(" ".join(tokens[start : i + 1]))
            start = i + 1
    if start < len(tokens):
        out.append(" ".join(tokens[start:]))
    return out


def has_terminal(sentence: str) -> bool:
    """Whether the sentence ends with '.', '!' or '?' (closing quotes and brackets allowed after it)."""
    return bool(_TERMINAL.search(sentence.strip()))


#: Short capitalised words that end a whole sentence after a lower-case word ("... named Li.").
_WHOLE_SHORT = frozenset(
    {"Li", "Wu", "Yi", "Xu", "Xi", "Qi", "Ma", "Hu", "Bo", "Oz", "Po", "Ur", "Io", "Ra", "Al", "Ed"}
    | {"Jr", "Sr", "Co", "St", "Dr", "Mr", "Ms", "No"}  # abbreviations that end names
)


def looks_cut(sentence: str) -> bool:
    """Whether a sentence reads as cut off: its last word is an article, a preposition, a conjunction
    or a possessive ("the father of."), or a single lower-case letter or a lone initial after a
    lower-case word ("failed to r.", "principally P."), the first letters of a name after a
    lower-case word ("connecting Ce."), a trailing "..." or a stop after a comma
    ("used for manufacturing,."). A Roman numeral after a name ("World War I.",
    "Henry V.") is whole; a lone capital after a lower-case word reads as a cut name, at the price of
    the rare whole one ("vitamin C.")."""
    if sentence.rstrip("\"'’”)] ").endswith("?"):
        return False  # a question may end on a preposition ("What did it lead to?")
    if re.search(r"(?:\.\.\.|…|[,;:-]\s*\.)[\"'’”)\]]*\s*$", sentence):
        return True  # trailing off ("..."), or a stop after a comma: "used for manufacturing,."
    tokens = sentence.split()
    if tokens and _INITIALS.match(tokens[-1].rstrip("\"'’”)]")) and len(tokens[-1].strip(".")) > 1:
        return False  # "... moved to the U.S."
    words = re.findall(r"[^\W_]+", sentence)
    if not words:
        return True
    last = words[-1]
    if last.lower() in CUT_ENDINGS:
        return True
    if len(last) == 1 and last.isalpha():
        after_name = len(words) > 1 and words[-2][:1].isupper() and last in "IVX"
        return not after_name
    # a name's first letters after a lower-case word: "connecting Ce."
    return (
        bool(re.search(r"(?<![A-Za-z])[a-z]+[ -][A-Z][a-z]?\.[\"'’”)\]]*\s*$", sentence))
        and last not in _WHOLE_SHORT
    )
