"""Corpus loaders on real files: the shared QA data, wiki-vital, JSONL, folders; bad input reported."""

from __future__ import annotations

import gzip
import json

import pytest

from sounding.tools.corpus import (
    CorpusError,
    Document,
    LoadReport,
    load_dir,
    load_jsonl,
    load_qa_corpus,
    load_wiki_vital,
    parse_corpus_spec,
    split_passages,
)


def test_wiki_vital_has_every_summary_with_stable_ids():
    docs = load_wiki_vital()
    assert len(docs) == 10_033
    budapest = next(d for d in docs if d.title == "Budapest")
    assert "capital" in budapest.text and budapest.url.endswith("/Budapest")
    assert load_wiki_vital()[0].doc_id == docs[0].doc_id
    assert len({d.doc_id for d in docs}) == len(docs)


@pytest.mark.parametrize(
    ("kind", "path", "titles"),
    [
        ("hotpotqa", "hotpotqa/hotpot_dev_distractor_subset.json.gz", 9_180),
        ("2wiki", "2wikimultihopqa/2wiki_dev_subset.json.gz", 2_847),
    ],
)
def test_pooled_qa_corpus_is_deduplicated(data_dir, kind, path, titles):
    docs = load_qa_corpus(kind, data_dir / path)
    assert len({d.title for d in docs}) == titles
    assert len({(d.title, d.text) for d in docs}) == len(docs)
    again = load_qa_corpus(kind, data_dir / path)
    assert [d.doc_id for d in again] == [d.doc_id for d in docs]


def test_musique_paragraphs(data_dir):
    docs = load_qa_corpus("musique", data_dir / "musique/musique_ans_v1.0_dev_subset.jsonl.gz")
    assert 500 < len(docs) <= 1000 and all(d.text for d in docs)


def test_malformed_qa_file_names_record(tmp_path):
    path = tmp_path / "bad.json.gz"
    with gzip.open(path, "wt") as f:
        json.dump([{"context": [["A", ["x."]]]}, {"context": [["B"]]}], f)
    with pytest.raises(CorpusError, match=r"record 2"):
        load_qa_corpus("hotpotqa", path)
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"paragraphs": []}\n{nope\n')
    with pytest.raises(CorpusError, match=r"broken.jsonl:2"):
        load_qa_corpus("musique", broken)


def test_jsonl_bad_lines_are_reported_not_fatal(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_text(
        '{"title": "A", "text": "alpha"}\nnot json\n{"title": "B"}\n\n{"title": "C", "text": "gamma", "id": "c1"}\n'
    )
    report = LoadReport()
    docs = load_jsonl(path, report=report)
    assert [d.title for d in docs] == ["A", "C"] and docs[1].doc_id == "c1"
    assert [p.split(": ")[0] for p in report.problems] == [f"{path}:2", f"{path}:3"]
    with pytest.raises(CorpusError, match=f"{path}:2"):
        load_jsonl(path, strict=True)


def test_folder_of_txt_md_html_with_a_bad_file(tmp_path):
    (tmp_path / "a.txt").write_text("Plain text about rivers.")
    (tmp_path / "b.md").write_text("# Rivers\n\nThe Danube is long.")
    (tmp_path / "c.html").write_text(
        "<html><head><title>Lakes</title><script>var x=1;</script></head><body><nav>Home | About</nav>"
        "<article><h1>Lakes</h1><p>Lake Balaton is the largest lake in Central Europe, a popular place "
        "for tourists and a frequent subject of study by limnologists and geographers.</p></article></body></html>"
    )
    (tmp_path / "d.txt").write_bytes(b"\xff\xfe\x00bad")
    (tmp_path / "ignored.csv").write_text("a,b")
    report = LoadReport()
    docs = {d.title: d for d in load_dir(tmp_path, report=report)}
    assert set(docs) == {"a", "Rivers", "Lakes"}
    assert "Balaton" in docs["Lakes"].text and "var x" not in docs["Lakes"].text
    assert len(report.problems) == 1 and "d.txt" in report.problems[0]
    with pytest.raises(CorpusError, match=r"d\.txt"):
        load_dir(tmp_path, strict=True)


def test_passages_keep_parent_title_and_url():
    doc = Document(doc_id="x", title="T", text=" ".join(f"w{i}" for i in range(50)), url="u", source="s")
    passages = split_passages([doc], words=20, overlap=5)
    assert [p.doc_id for p in passages] == ["x#p0", "x#p1", "x#p2"]
    assert all(p.title == "T" and p.url == "u" for p in passages)
    assert passages[1].text.split()[0] == "w15"  # overlap of 5 words
    assert passages[-1].text.split()[-1] == "w49"
    short = Document(doc_id="y", title="T", text="short", source="s")
    assert split_passages([short], words=20, overlap=5) == [short]
    with pytest.raises(ValueError, match="overlap"):
        split_passages([doc], words=5, overlap=5)


def test_corpus_specs(tmp_path):
    assert parse_corpus_spec("wiki-vital").name == "wiki-vital"
    with pytest.raises(CorpusError, match="unknown corpus"):
        parse_corpus_spec("wikipedia")
    with pytest.raises(CorpusError, match="not found"):
        parse_corpus_spec(f"jsonl:{tmp_path}/missing.jsonl")
