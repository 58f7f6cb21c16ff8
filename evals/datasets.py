"""QA suites in their upstream formats, as `Sample`s with gold answers (and aliases), type/hop labels
and gold supporting titles where the set has them.

Suite specs: ``hotpotqa:PATH`` (distractor or fullwiki JSON), ``2wiki:PATH``, ``musique:PATH`` (JSONL),
``bamboogle:PATH``, ``frames:PATH``, ``simpleqa:PATH`` (CSV, optionally gzipped), ``flashrag:PATH``
(FlashRAG JSONL) and ``jsonl:PATH`` (generic ``{id, question, answers[]}``). Files with context
paragraphs also name their pooled open-retrieval corpus (`Suite.corpus`).
"""

from __future__ import annotations

import ast
import csv
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from sounding.tools.corpus import CorpusError, iter_qa_records, open_text

SUITES = ("hotpotqa", "2wiki", "musique", "bamboogle", "frames", "simpleqa", "flashrag", "jsonl")


class Sample(BaseModel):
    id: str
    question: str
    answers: list[str]
    type: str | None = None
    hops: int | None = None
    supporting_titles: list[str] = []


class Suite(BaseModel):
    name: str
    kind: str
    path: Path
    samples: list[Sample]
    #: The pooled open-retrieval corpus spec, for suites whose files carry context paragraphs.
    corpus: str | None = None


class DatasetError(ValueError):
    """A malformed suite file; the message names the path and the record."""


def _jsonl(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    with open_text(path) as handle:
        for lineno, line in enumerate(handle, 1):
            if line.strip():
                try:
                    value = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise DatasetError(f"{path}: record {lineno}: not valid JSON ({exc.msg})") from exc
                if not isinstance(value, dict):
                    raise DatasetError(f"{path}: record {lineno}: expected a JSON object")
                yield lineno, value


def _csv(path: Path) -> Iterator[tuple[int, dict[str, str]]]:
    with open_text(path) as handle:
        yield from enumerate(csv.DictReader(handle), 1)


def _column(row: dict[str, str], *names: str) -> str:
    for name in names:
        if name in row and row[name] is not None:
            return row[name].strip()
    raise KeyError(f"none of the columns {names}")


def _short_id(*parts: str) -> str:
    return hashlib.sha1("\x1f".join(parts).encode()).hexdigest()[:12]


def _titles(facts: list[Any]) -> list[str]:
    return list(dict.fromkeys(str(f[0]) for f in facts))


def parse_hotpot(n: int, r: dict[str, Any]) -> Sample:
    return Sample(
        id=str(r["_id"]),
        question=r["question"],
        answers=[str(r["answer"])] if "answer" in r else [],
        type=r.get("type"),
        hops=2,
        supporting_titles=_titles(r.get("supporting_facts", [])),
    )


def parse_2wiki(n: int, r: dict[str, Any]) -> Sample:
    aliases = [str(a) for a in r.get("answer_aliases", []) or []]
    return Sample(
        id=str(r["_id"]),
        question=r["question"],
        answers=[str(r["answer"]), *aliases],
        type=r.get("type"),
        supporting_titles=_titles(r.get("supporting_facts", [])),
    )


def parse_musique(n: int, r: dict[str, Any]) -> Sample:
    hops = len(r.get("question_decomposition", [])) or None
    titles = [p["title"] for p in r.get("paragraphs", []) if p.get("is_supporting")]
    return Sample(
        id=str(r["id"]),
        question=r["question"],
        answers=[str(r["answer"]), *map(str, r.get("answer_aliases", []))],
        type=f"{hops}hop" if hops else None,
        hops=hops,
        supporting_titles=list(dict.fromkeys(titles)),
    )


def parse_flashrag(n: int, r: dict[str, Any]) -> Sample:
    answers = r.get("golden_answers", r.get("answers"))
    if not isinstance(answers, list):
        raise KeyError("golden_answers")
    meta = r.get("metadata") or {}
    return Sample(
        id=str(r.get("id", n)),
        question=r["question"],
        answers=[str(a) for a in answers],
        type=meta.get("type") if isinstance(meta, dict) else None,
    )


def parse_generic(n: int, r: dict[str, Any]) -> Sample:
    answers = r["answers"]
    if isinstance(answers, str):
        answers = [answers]
    return Sample(
        id=str(r.get("id", n)),
        question=r["question"],
        answers=[str(a) for a in answers],
        type=r.get("type"),
        hops=r.get("hops"),
        supporting_titles=list(r.get("supporting_titles", [])),
    )


def parse_csv_row(kind: str, n: int, row: dict[str, str]) -> Sample:
    if kind == "bamboogle":
        question, answer = (
            _column(row, "Question", "question"),
            _column(row, "Answer", "answer", "true_answer"),
        )
        return Sample(id=f"bamboogle-{n}", question=question, answers=[answer], hops=2)
    question = _column(row, "question", "Prompt", "problem")
    answer = _column(row, "true_answer", "Answer", "answer")
    if kind == "frames":
        titles = []
        for link in ast.literal_eval(row["wiki_links"]) if row.get("wiki_links") else []:
            titles.append(str(link).rsplit("/", 1)[-1].replace("_", " "))
        return Sample(
            id=f"frames-{n}",
            question=question,
            answers=[answer],
            type=row.get("reasoning_types") or None,
            supporting_titles=titles,
        )
    topic = None
    if row.get("metadata"):
        try:
            topic = ast.literal_eval(row["metadata"]).get("topic")
        except (ValueError, SyntaxError):
            topic = None
    return Sample(id=f"simpleqa-{n}", question=question, answers=[answer], type=topic)


def load_suite(spec: str, *, limit: int | None = None) -> Suite:
    kind, sep, rest = spec.partition(":")
    if kind not in SUITES or not sep:
        raise DatasetError(f"unknown suite {spec!r}: use one of {', '.join(k + ':PATH' for k in SUITES)}")
    path = Path(rest).expanduser()
    if path.is_dir():
        raise DatasetError(f"suite {path} is a directory: give the suite's file")
    if not path.exists():
        raise DatasetError(f"suite file not found: {path}")
    if not path.is_file():
        raise DatasetError(f"suite {path} is not a regular file")
    samples: list[Sample] = []
    corpus = f"{kind}:{path}" if kind in ("hotpotqa", "2wiki", "musique") else None
    try:
        if kind in ("hotpotqa", "2wiki", "musique"):
            parser = {"hotpotqa": parse_hotpot, "2wiki": parse_2wiki, "musique": parse_musique}[kind]
            records: Iterator[tuple[int, Any]] = iter_qa_records(kind, path)
        elif kind in ("flashrag", "jsonl"):
            parser = parse_flashrag if kind == "flashrag" else parse_generic
            records = _jsonl(path)
        else:
            records = _csv(path)
            parser = lambda n, r: parse_csv_row(kind, n, r)  # noqa: E731
        for number, record in records:
            if limit is not None and len(samples) >= limit:
                break
            try:
                if not isinstance(record, dict):
                    raise TypeError("expected an object")
                sample = parser(number, record)
            except (KeyError, TypeError, ValueError, SyntaxError) as exc:
                raise DatasetError(f"{path}: record {number}: malformed {kind} record ({exc})") from exc
            if not sample.question.strip():
                raise DatasetError(f"{path}: record {number}: empty question")
            samples.append(sample)
    except CorpusError as exc:
        raise DatasetError(str(exc)) from exc
    except (OSError, EOFError, UnicodeDecodeError, csv.Error) as exc:
        raise DatasetError(f"{path}: cannot read: {exc}") from exc
    if not samples:
        raise DatasetError(f"{path}: no questions")
    return Suite(
        name=f"{kind}-{path.name.split('.')[0]}", kind=kind, path=path, samples=samples, corpus=corpus
    )
