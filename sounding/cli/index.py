"""`sounding index build|list` and `sounding search`."""

from __future__ import annotations

import time
from typing import Annotated

import typer
from rich.markup import escape

from sounding.cli.common import (
    EXIT_UNAVAILABLE,
    JsonOpt,
    console,
    err_console,
    fail,
    print_listing,
    settings_from,
)
from sounding.cli.progress import rich_progress
from sounding.tools.corpus import CorpusError, LoadReport, parse_corpus_spec
from sounding.tools.search.base import SearchError
from sounding.tools.search.store import IndexStore, folder_size

index_app = typer.Typer(help="Build and list search indexes.", no_args_is_help=True)

CorpusOpt = Annotated[
    str,
    typer.Option(
        "--corpus", help="wiki-vital | hotpotqa:PATH | 2wiki:PATH | musique:PATH | jsonl:PATH | dir:PATH"
    ),
]
BackendOpt = Annotated[str, typer.Option("--backend", help="bm25 | dense | hybrid (| web for search)")]


@index_app.command("build")
def build(
    ctx: typer.Context,
    corpus: CorpusOpt = "wiki-vital",
    backend: BackendOpt = "hybrid",
    as_json: Annotated[bool, JsonOpt] = False,
    strict: Annotated[bool, typer.Option("--strict", help="Fail on the first bad file or line.")] = False,
) -> None:
    """Build (or rebuild) the index of a corpus; bad lines/files are reported and skipped unless --strict."""
    settings = settings_from(ctx)
    if backend not in ("bm25", "dense", "hybrid"):
        fail(f"unknown index backend {backend!r}: use bm25, dense or hybrid")
    try:
        spec = parse_corpus_spec(corpus)
        report = LoadReport()
        if strict:
            from sounding.tools.corpus import load_documents

            load_documents(spec, strict=True)
        start = time.perf_counter()
        with rich_progress() as progress:
            store = IndexStore(settings, progress=progress)
            passages, manifest = store.passages(spec, force=True, report=report)
            kinds = ["bm25", "dense"] if backend == "hybrid" else [backend]
            for kind in kinds:
                getattr(store, kind)(spec, passages, manifest, force=True)
    except (CorpusError, SearchError) as exc:
        fail(str(exc))
    for problem in report.problems:
        err_console.print(f"[yellow]skipped:[/] {escape(problem)}")
    console.print(
        f"built {backend} index of {spec} ({manifest.n_passages:,} passages) in {time.perf_counter() - start:.1f} s "
        f"under {store.root / spec.name}"
    )


@index_app.command("list")
def list_indexes(ctx: typer.Context, as_json: Annotated[bool, JsonOpt] = False) -> None:
    """List the indexes under the cache home with their manifests."""
    settings = settings_from(ctx)
    rows = [
        {
            "corpus": m.corpus,
            "kind": m.kind,
            "passages": m.n_passages,
            "fingerprint": m.passages_fingerprint[:10],
            "model": m.model or "",
            "size": f"{folder_size(folder) / 2**20:.1f} MiB",
            "built": m.built_at,
            "build s": f"{m.build_seconds:.1f}",
            "folder": str(folder),
        }
        for folder, m in IndexStore(settings).list()
    ]
    print_listing(f"indexes in {settings.indexes_dir}", rows, as_json=as_json)


def search(
    ctx: typer.Context,
    query: Annotated[str, typer.Argument(help="Keyword query.")],
    k: Annotated[int, typer.Option("--k", min=1, max=200, help="Number of hits.")] = 10,
    corpus: CorpusOpt = "wiki-vital",
    backend: BackendOpt = "hybrid",
    as_json: Annotated[bool, JsonOpt] = False,
    searxng_url: Annotated[
        str | None, typer.Option("--searxng-url", help="SearXNG base URL (web backend).")
    ] = None,
) -> None:
    """Search a corpus (building its index on first use) and show the hits."""
    from sounding.agent.runner import QuestionError, check_question

    try:  # the same rule as `ask`: UTF-8 text, not empty, not oversized
        query = check_question(query)
    except QuestionError as exc:
        fail(str(exc).replace("question", "query"))
    settings = settings_from(
        ctx, search__corpus=corpus, search__backend=backend, search__searxng_url=searxng_url
    )
    from sounding.tools.search.factory import make_search

    try:
        with rich_progress() as progress:
            engine = make_search(settings, progress=progress)
        start = time.perf_counter()
        hits = engine.search(query, k)
        elapsed = time.perf_counter() - start
    except CorpusError as exc:
        fail(str(exc))
    except SearchError as exc:
        fail(str(exc), EXIT_UNAVAILABLE)
    rows = [
        {"#": rank, "score": round(hit.score, 4), "title": hit.title, "doc id": hit.doc_id, "text": hit.text}
        for rank, hit in enumerate(hits, 1)
    ]
    print_listing(
        f"{backend} search over {corpus}: {query!r} ({elapsed * 1000:.0f} ms)", rows, as_json=as_json
    )


def register(app: typer.Typer) -> None:
    app.add_typer(index_app, name="index")
    app.command("search")(search)
