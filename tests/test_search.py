"""BM25 against the rank-bm25 reference, dense and hybrid on real text, the index store's manifests."""

from __future__ import annotations

import numpy as np
import pytest
from rank_bm25 import BM25Okapi

from sounding.settings import load_settings
from sounding.tools.corpus import load_qa_corpus, parse_corpus_spec
from sounding.tools.search.base import passage_text, tokenize
from sounding.tools.search.bm25 import BM25Index, top_k
from sounding.tools.search.fusion import fuse, rrf
from sounding.tools.search.store import IndexMismatchError, IndexStore, read_manifest


@pytest.fixture(scope="module")
def hotpot_docs(data_dir):
    return load_qa_corpus("hotpotqa", data_dir / "hotpotqa/hotpot_dev_distractor_subset.json.gz")[:3000]


def test_bm25_scores_equal_rank_bm25(hotpot_docs):
    texts = [passage_text(d) for d in hotpot_docs]
    ours = BM25Index.build(texts)
    reference = BM25Okapi([tokenize(t) for t in texts])
    for query in (
        "Scott Derrickson nationality",
        "American film director born 1966",
        "the the river",
        "Ed Wood film director director",
        "zzzunknownword",
    ):
        expected = reference.get_scores(tokenize(query))
        got = ours.scores(query)
        np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-9)
        want_top = [int(i) for i in np.lexsort((np.arange(len(expected)), -expected))[:10] if expected[i] > 0]
        assert [i for i, _ in ours.top(query, 10)] == want_top


def test_top_k_breaks_ties_by_index():
    scores = np.array([1.0, 3.0, 3.0, 2.0, 3.0])
    assert top_k(scores, 2).tolist() == [1, 2]
    assert top_k(scores, 10).tolist() == [1, 2, 4, 3, 0]


def test_rrf_fuses_rankings():
    fused = rrf([[1, 2, 3], [3, 1, 4]], k=60)
    assert [row for row, _ in fused][:2] == [1, 3]
    assert fused[0][1] == pytest.approx(1 / 61 + 1 / 62)


def test_index_store_builds_loads_and_checks_manifests(tmp_path, small_corpus):
    settings = load_settings(home=tmp_path / "home")
    spec = parse_corpus_spec(f"jsonl:{small_corpus}")
    store = IndexStore(settings)
    hybrid = store.open(spec, "hybrid")
    assert hybrid.search("capital of Hungary", 2)[0].title == "Budapest"
    assert hybrid.search("highest mountain", 1)[0].title == "Mount Everest"
    dense = store.open(spec, "dense")
    assert dense.search("tallest peak on the planet", 1)[0].title == "Mount Everest"  # no shared keyword
    bm25_dir = store.folder(spec, "bm25")
    built_at = read_manifest(bm25_dir).built_at
    assert read_manifest(bm25_dir).model_dump()["passages_fingerprint"]
    store.open(spec, "bm25")  # loads, does not rebuild
    assert read_manifest(bm25_dir).built_at == built_at
    assert {m.kind for _, m in store.list()} == {"passages", "bm25", "dense"}

    # the corpus changes: refuse with a clear message, or rebuild
    small_corpus.write_text(
        small_corpus.read_text() + '{"title": "Vienna", "text": "Vienna is on the Danube."}\n'
    )
    with pytest.raises(IndexMismatchError, match=r"does not match.*sounding index build"):
        store.open(spec, "bm25", on_mismatch="refuse")
    assert store.open(spec, "bm25").search("Vienna", 1)[0].title == "Vienna"

    # different passage parameters: also a mismatch
    other = IndexStore(
        load_settings(home=tmp_path / "home", search={"passage_words": 20, "passage_overlap": 4})
    )
    with pytest.raises(IndexMismatchError, match="params"):
        other.open(spec, "bm25", on_mismatch="refuse")


def test_interrupted_build_never_loads_as_valid(tmp_path, small_corpus, monkeypatch):
    settings = load_settings(home=tmp_path / "home")
    spec = parse_corpus_spec(f"jsonl:{small_corpus}")
    store = IndexStore(settings)

    def crash(self, folder):
        (folder / "bm25_weights.npz").write_bytes(b"half")
        raise KeyboardInterrupt

    monkeypatch.setattr(BM25Index, "save", crash)
    with pytest.raises(KeyboardInterrupt):
        store.open(spec, "bm25")
    assert read_manifest(store.folder(spec, "bm25")) is None
    assert not any(p.name.startswith(".") for p in store.folder(spec, "bm25").parent.iterdir())
    monkeypatch.undo()
    assert store.open(spec, "bm25", on_mismatch="rebuild").search("Paris", 1)[0].title == "Paris"


def test_one_fusion_function_for_hybrid_search_and_the_read_step():
    assert rrf([[1, 2, 3], [3, 1]], k=60) == fuse(
        [(1, 1, 1.0), (2, 2, 1.0), (3, 3, 1.0), (3, 1, 1.0), (1, 2, 1.0)]
    )
    # the read step: this round's hits weigh twice, and k comes from search.rrf_k
    from sounding.agent.nodes import unread_passages

    hits = [
        {"doc_id": "old", "rank": 1, "round": 0, "title": "Old", "text": "x"},
        {"doc_id": "new", "rank": 5, "round": 1, "title": "New", "text": "y"},
        {"doc_id": "read", "rank": 1, "round": 1, "title": "Read", "text": "z"},
        {"doc_id": "later", "rank": 1, "round": 2, "title": "Later", "text": "w"},
    ]
    state = {"hits": hits, "read_ids": ["read"]}
    assert [h["doc_id"] for h in unread_passages(state, 1)] == ["new", "old"]  # 2/65 > 1/61
    assert [h["doc_id"] for h in unread_passages(state, 1, rrf_k=1)] == ["old", "new"]  # 1/2 > 2/6
