"""Retrieval benchmarks: index build time and size, query latency and throughput, recall of gold titles.

    .venv/bin/python benchmarks/bench_retrieval.py speed --corpus wiki-vital
    .venv/bin/python benchmarks/bench_retrieval.py speed --scale-100k [--dense]
    .venv/bin/python benchmarks/bench_retrieval.py recall --suite hotpotqa --suite 2wiki
    .venv/bin/python benchmarks/bench_retrieval.py rerank --suite hotpotqa
    .venv/bin/python benchmarks/bench_retrieval.py finished --suite hotpotqa --warm 150

`rerank` compares, on the same questions, BM25, BM25 with dense re-ranking of its 50 candidates
(what `sounding ask` searches with before the dense index is built; its embedding cache starts
empty) and the full hybrid index.

`finished` measures the hybrid index that the new path ends with, against the one built before it, in
one run, on every question of the suite: a fresh home first answers ``--warm`` questions the way a first
`sounding ask` does (BM25 with dense re-ranking, vectors cached), then builds the full index (reusing
those vectors, as `sounding index build` does); the "before" index is the one already in the cache home.

The >= 100k-passage corpus is real text, scaled honestly: the wiki-vital summaries plus the pooled
context paragraphs of the HotpotQA, 2WikiMultihopQA and MuSiQue files in ../shared/data, split into
short overlapping passages (24 words, 8 overlap) so that the pool holds over 100,000 passages.
Queries are the benchmark questions (HotpotQA dev questions), so they are realistic keyword mixes.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from sounding.evals.datasets import load_suite
from sounding.settings import load_settings
from sounding.tools.corpus import load_qa_corpus, load_wiki_vital, parse_corpus_spec, split_passages
from sounding.tools.search.base import passage_text, tokenize
from sounding.tools.search.bm25 import BM25Index
from sounding.tools.search.dense import DenseSearch, Embedder
from sounding.tools.search.fusion import rrf
from sounding.tools.search.store import IndexStore, folder_size, read_manifest

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
SUITES = {
    "hotpotqa": "hotpotqa/hotpot_dev_distractor_subset.json.gz",
    "2wiki": "2wikimultihopqa/2wiki_dev_subset.json.gz",
    "musique": "musique/musique_ans_v1.0_dev_subset.jsonl.gz",
}


def latency(fn, queries: list[str]) -> dict[str, float]:
    times = []
    start = time.perf_counter()
    for q in queries:
        t0 = time.perf_counter()
        fn(q)
        times.append(time.perf_counter() - t0)
    total = time.perf_counter() - start
    return {
        "p50_ms": round(1000 * statistics.median(times), 3),
        "p95_ms": round(1000 * float(np.percentile(times, 95)), 3),
        "qps": round(len(queries) / total, 1),
    }


def questions(n: int) -> list[str]:
    return [s.question for s in load_suite(f"hotpotqa:{DATA / SUITES['hotpotqa']}", limit=n).samples]


def scaled_passages() -> list:
    docs = load_wiki_vital()
    for kind, path in SUITES.items():
        docs += load_qa_corpus(kind, DATA / path)
    return split_passages(docs, words=24, overlap=8)


def speed(args: argparse.Namespace) -> dict:
    if args.scale_100k:
        passages = scaled_passages()
        label = f"scaled pool ({len(passages):,} passages)"
    else:
        settings = load_settings(search={"corpus": args.corpus})
        passages, _ = IndexStore(settings).passages(parse_corpus_spec(args.corpus))
        label = f"{args.corpus} ({len(passages):,} passages)"
    texts = [passage_text(p) for p in passages]
    qs = questions(args.queries)
    result: dict = {"corpus": label, "n_passages": len(passages), "n_queries": len(qs)}

    t0 = time.perf_counter()
    ours = BM25Index.build(texts)
    result["bm25_build_s"] = round(time.perf_counter() - t0, 2)
    with tempfile.TemporaryDirectory() as tmp:
        ours.save(Path(tmp))
        result["bm25_size_mb"] = round(folder_size(Path(tmp)) / 2**20, 1)
    result["bm25_ours"] = latency(lambda q: ours.top(q, 10), qs)

    from rank_bm25 import BM25Okapi

    t0 = time.perf_counter()
    reference = BM25Okapi([tokenize(t) for t in texts])
    result["rank_bm25_build_s"] = round(time.perf_counter() - t0, 2)
    ref_qs = qs[: args.reference_queries]
    result["rank_bm25"] = latency(
        lambda q: reference.get_top_n(tokenize(q), list(range(len(texts))), n=10), ref_qs
    )
    same = 0
    for q in ref_qs:
        expected = reference.get_scores(tokenize(q))
        want = [int(i) for i in np.lexsort((np.arange(len(expected)), -expected))[:10] if expected[i] > 0]
        same += int([i for i, _ in ours.top(q, 10)] == want)
    result["identical_top10"] = f"{same}/{len(ref_qs)}"
    result["bm25_speedup_qps"] = round(result["bm25_ours"]["qps"] / result["rank_bm25"]["qps"], 1)

    if args.dense and args.scale_100k:
        embedder = Embedder()
        t0 = time.perf_counter()
        emb = embedder.encode(texts)
        result["dense_build_s"] = round(time.perf_counter() - t0, 1)
        result["dense_size_mb"] = round(emb.nbytes / 2**20, 1)
        dense = DenseSearch(emb, passages, embedder)
        result["dense"] = latency(lambda q: dense.top(q, 10), qs)

        def hybrid(q: str) -> list:
            return rrf([[r for r, _ in ours.top(q, 50)], [r for r, _ in dense.top(q, 50)]])[:10]

        result["hybrid"] = latency(hybrid, qs)
    elif args.dense:
        # the persisted indexes of the store (built once, e.g. by `sounding index build`)
        settings = load_settings(search={"corpus": args.corpus})
        store = IndexStore(settings)
        spec = parse_corpus_spec(args.corpus)
        hybrid_backend: Any = store.open(spec, "hybrid")
        for kind in ("passages", "bm25", "dense"):
            folder = store.folder(spec, kind)
            manifest = read_manifest(folder)
            result[f"store_{kind}"] = {
                "build_s": round(manifest.build_seconds, 1) if manifest else None,
                "size_mb": round(folder_size(folder) / 2**20, 1),
            }
        result["dense"] = latency(lambda q: hybrid_backend.dense.search(q, 10), qs)
        result["hybrid"] = latency(lambda q: hybrid_backend.search(q, 10), qs)
    return result


def recall(args: argparse.Namespace) -> dict:
    out = {}
    for kind in args.suite:
        spec = f"{kind}:{DATA / SUITES[kind]}"
        suite = load_suite(spec, limit=args.limit)
        settings = load_settings(search={"corpus": spec})
        store = IndexStore(settings)
        t0 = time.perf_counter()
        backends: dict[str, Any] = {
            n: store.open(parse_corpus_spec(spec), n) for n in ("bm25", "dense", "hybrid")
        }
        build = round(time.perf_counter() - t0, 1)
        rows = {}
        for name, backend in backends.items():
            hits_at: dict[int, list[float]] = {2: [], 5: [], 10: []}
            for s in suite.samples:
                titles = [h.title for h in backend.search(s.question, 10)]
                gold = {t.lower() for t in s.supporting_titles}
                for k in hits_at:
                    top = {t.lower() for t in titles[:k]}
                    hits_at[k].append(len(gold & top) / len(gold) if gold else 0.0)
            rows[name] = {f"recall@{k}": round(float(np.mean(v)), 3) for k, v in hits_at.items()}
        out[kind] = {
            "questions": len(suite.samples),
            "passages": backends["bm25"].passages.__len__(),
            "index_open_or_build_s": build,
            **rows,
        }
    return out


def rerank(args: argparse.Namespace) -> dict:
    from sounding.tools.search.reranked import EmbeddingCache, RerankedBM25Search

    out = {}
    for kind in args.suite:
        spec = f"{kind}:{DATA / SUITES[kind]}"
        suite = load_suite(spec, limit=args.limit)
        settings = load_settings(search={"corpus": spec})
        store = IndexStore(settings)
        corpus = parse_corpus_spec(spec)
        hybrid: Any = store.open(corpus, "hybrid")
        passages, pm = store.passages(corpus)
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            cache = EmbeddingCache(Path(tmp), pm.passages_fingerprint, store.embedder())
            reranked = RerankedBM25Search(hybrid.bm25, cache, passages, rrf_k=settings.search.rrf_k)
            backends: dict[str, Any] = {"bm25": hybrid.bm25, "bm25+dense rerank": reranked, "hybrid": hybrid}
            rows: dict[str, Any] = {}
            for name, backend in backends.items():
                hits_at: dict[int, list[float]] = {2: [], 5: [], 10: []}
                t0 = time.perf_counter()
                first = None
                for s in suite.samples:
                    titles = [h.title for h in backend.search(s.question, 10)]
                    first = first if first is not None else time.perf_counter() - t0
                    gold = {t.lower() for t in s.supporting_titles}
                    for k in hits_at:
                        top = {t.lower() for t in titles[:k]}
                        hits_at[k].append(len(gold & top) / len(gold) if gold else 0.0)
                rows[name] = {f"recall@{k}": round(float(np.mean(v)), 3) for k, v in hits_at.items()}
                rows[name]["first_query_s"] = round(first or 0.0, 2)
                rows[name]["mean_query_s"] = round((time.perf_counter() - t0) / len(suite.samples), 3)
            rows["bm25+dense rerank"]["passages_embedded"] = len(cache.vectors)
        out[kind] = {"questions": len(suite.samples), "passages": len(passages), **rows}
    return out


def _recall_at(backend: Any, samples: list) -> dict[str, float]:
    hits_at: dict[int, list[float]] = {2: [], 5: [], 10: []}
    for s in samples:
        titles = [h.title for h in backend.search(s.question, 10)]
        gold = {t.lower() for t in s.supporting_titles}
        for k in hits_at:
            top = {t.lower() for t in titles[:k]}
            hits_at[k].append(len(gold & top) / len(gold) if gold else 0.0)
    return {f"recall@{k}": round(float(np.mean(v)), 4) for k, v in hits_at.items()}


def finished(args: argparse.Namespace) -> dict:
    from sounding.tools.search.reranked import RerankedBM25Search

    out = {}
    for kind in args.suite:
        spec = f"{kind}:{DATA / SUITES[kind]}"
        suite = load_suite(spec, limit=args.limit)
        corpus = parse_corpus_spec(spec)
        before_store = IndexStore(load_settings(search={"corpus": spec}))
        if not before_store.dense_ready(corpus):
            raise SystemExit(f"no finished dense index of {spec} in the cache home to compare against")
        before_manifest = read_manifest(before_store.folder(corpus, "dense"))
        before = before_store.open(corpus, "hybrid")
        with tempfile.TemporaryDirectory() as tmp:
            store = IndexStore(load_settings(home=Path(tmp), search={"corpus": spec}))
            interim = store.open(corpus, "hybrid", wait_for_dense=False)
            assert isinstance(interim, RerankedBM25Search), type(interim)
            for s in suite.samples[: args.warm]:
                interim.search(s.question, 10)
            reused = len(interim.cache.vectors)
            t0 = time.perf_counter()
            after = store.open(corpus, "hybrid")
            build = round(time.perf_counter() - t0, 1)
            rows = {
                "before": {
                    **_recall_at(before, suite.samples),
                    "built_at": before_manifest.built_at if before_manifest else None,
                },
                "after": {**_recall_at(after, suite.samples), "vectors_reused": reused, "build_s": build},
            }
        rows["difference (after - before)"] = {
            k: round(rows["after"][k] - rows["before"][k], 4) for k in ("recall@2", "recall@5", "recall@10")
        }
        out[kind] = {"questions": len(suite.samples), "warm_questions": args.warm, **rows}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sp = sub.add_parser("speed")
    sp.add_argument("--corpus", default="wiki-vital")
    sp.add_argument("--scale-100k", action="store_true")
    sp.add_argument("--dense", action="store_true")
    sp.add_argument("--queries", type=int, default=300)
    sp.add_argument("--reference-queries", type=int, default=50)
    rp = sub.add_parser("recall")
    rp.add_argument("--suite", action="append", choices=list(SUITES), required=True)
    rp.add_argument("--limit", type=int, default=None)
    rr = sub.add_parser("rerank")
    rr.add_argument("--suite", action="append", choices=list(SUITES), required=True)
    rr.add_argument("--limit", type=int, default=None)
    fp = sub.add_parser("finished")
    fp.add_argument("--suite", action="append", choices=list(SUITES), required=True)
    fp.add_argument("--limit", type=int, default=None)
    fp.add_argument("--warm", type=int, default=150)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    result = {"speed": speed, "recall": recall, "rerank": rerank, "finished": finished}[args.command](args)
    record = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {__import__('os').cpu_count()} cores",
        "command": args.command,
        "result": result,
    }
    print(json.dumps(record, indent=2))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
