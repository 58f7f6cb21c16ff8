"""Suite loaders on the real shared files and on malformed ones."""

import gzip
import json

import pytest

from sounding.evals.datasets import DatasetError, load_suite


@pytest.mark.parametrize(
    ("spec", "n", "check"),
    [
        (
            "hotpotqa:hotpotqa/hotpot_dev_distractor_subset.json.gz",
            934,
            lambda s: s.type in ("bridge", "comparison") and len(s.supporting_titles) == 2,
        ),
        (
            "2wiki:2wikimultihopqa/2wiki_dev_subset.json.gz",
            417,
            lambda s: s.type in ("compositional", "comparison", "bridge_comparison", "inference"),
        ),
        (
            "musique:musique/musique_ans_v1.0_dev_subset.jsonl.gz",
            50,
            lambda s: s.hops in (2, 3, 4) and s.supporting_titles,
        ),
        ("bamboogle:bamboogle/bamboogle_test.csv.gz", 125, lambda s: s.answers[0]),
        ("frames:frames/frames_test_set.csv.gz", 824, lambda s: s.supporting_titles),
        ("simpleqa:simpleqa/simple_qa_test_set.csv.gz", 4326, lambda s: s.type),
    ],
)
def test_real_suites(data_dir, spec, n, check):
    kind, path = spec.split(":")
    suite = load_suite(f"{kind}:{data_dir / path}")
    assert len(suite.samples) == n
    assert all(s.question and s.answers for s in suite.samples)
    assert check(suite.samples[0])
    assert len({s.id for s in suite.samples}) == n
    assert (suite.corpus is not None) == (kind in ("hotpotqa", "2wiki", "musique"))


def test_limit_and_aliases(data_dir):
    suite = load_suite(f"musique:{data_dir / 'musique/musique_ans_v1.0_dev_subset.jsonl.gz'}", limit=5)
    assert len(suite.samples) == 5


def test_flashrag_and_generic_jsonl(tmp_path):
    fr = tmp_path / "fr.jsonl"
    fr.write_text(
        json.dumps({"id": "a", "question": "Q?", "golden_answers": ["x", "y"], "metadata": {"type": "t"}})
        + "\n"
    )
    s = load_suite(f"flashrag:{fr}").samples[0]
    assert (s.id, s.answers, s.type) == ("a", ["x", "y"], "t")
    gen = tmp_path / "g.jsonl"
    gen.write_text(json.dumps({"id": 1, "question": "Q?", "answers": "only"}) + "\n")
    assert load_suite(f"jsonl:{gen}").samples[0].answers == ["only"]


def test_malformed_files_name_path_and_record(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(
        json.dumps({"id": 1, "question": "Q", "answers": ["a"]}) + "\n" + json.dumps({"id": 2}) + "\n"
    )
    with pytest.raises(DatasetError, match=r"bad.jsonl: record 2"):
        load_suite(f"jsonl:{bad}")
    hp = tmp_path / "hp.json.gz"
    with gzip.open(hp, "wt") as f:
        json.dump([{"_id": "x", "question": "q", "answer": "a"}, {"question": "no id"}], f)
    with pytest.raises(DatasetError, match=r"record 2"):
        load_suite(f"hotpotqa:{hp}")
    notjson = tmp_path / "n.json"
    notjson.write_text("[{")
    with pytest.raises(DatasetError, match="not valid JSON"):
        load_suite(f"hotpotqa:{notjson}")
    csvfile = tmp_path / "b.csv"
    csvfile.write_text("Wrong,Columns\n1,2\n")
    with pytest.raises(DatasetError, match=r"b.csv: record 1"):
        load_suite(f"bamboogle:{csvfile}")
    with pytest.raises(DatasetError, match="unknown suite"):
        load_suite("trivia:x")
    with pytest.raises(DatasetError, match="not found"):
        load_suite(f"jsonl:{tmp_path}/none.jsonl")
