"""What a reader finds in a stored report (evals/reader.py), and two report runs paired on it with
`score-reports NEW --against OLD` (issue 32, item 5)."""

from __future__ import annotations

import json
import subprocess
import sys

from sounding.evals.reader import compare_runs, empty_sections, printed_sentences, reader_figures
from tests.test_rubric import RUBRIC, record

OLD = """# The Danube and Budapest

### What is the Danube?

The Danube flows through Budapest. [1][2] The Danube flows through Budapest and Vienna. [1] *(unsupported)* It connected Ce. [2]

*Nothing beyond the above was written for (in each of 3 drafts): Why did trade grow?; How: a test?*
*Not covered by the sources found: What was the Roman frontier?*"""

NEW = """# The Danube and Budapest

### What is the Danube?

The Danube flows through Budapest. [1] Budapest lay on ancient trade routes. [2]"""


def test_printed_sentences_are_the_paragraphs_without_citations_or_marks():
    assert printed_sentences(OLD) == [
        "The Danube flows through Budapest.",
        "The Danube flows through Budapest and Vienna.",
        "It connected Ce.",
    ]
    assert printed_sentences("No answer could be found within the budget.") == []


def test_empty_sections_are_counted_from_the_reports_own_lines():
    assert empty_sections(OLD) == 3  # a sub-question with a colon in it is still one
    assert empty_sections(NEW) == 0


def test_reader_figures_count_cut_and_repeated_sentences_and_coverage():
    old = reader_figures(record(OLD, "", "open-01").model_copy(update={"tokens": {"report": 900}}), RUBRIC)
    assert (old.sentences, old.cut, old.repeated, old.empty_sections, old.spend) == (3, 1, 1, 3, 900)
    assert (
        old.coverage == 1 / 3 and not old.no_answer
    )  # the empty-section line's "Roman frontier" states nothing
    empty = reader_figures(record("No answer could be found within the budget.", ""), RUBRIC)
    assert empty.no_answer and empty.sentences == 0 and empty.coverage == 0
    # what the notes held: a report can state no more than that, by this reading
    from sounding.agent.state import Note

    noted = record(OLD, "").model_copy(
        update={
            "notes": [Note(doc_id="d", title="Danube", fact="Budapest lay on ancient trade routes.", round=1)]
        }
    )
    assert reader_figures(noted, RUBRIC).notes_coverage == 1 / 3 and empty.notes_coverage == 0


def test_two_runs_are_paired_on_the_questions_both_answered():
    rubrics = {"open-01": RUBRIC, "open-02": RUBRIC.model_copy(update={"id": "open-02"})}
    new = [record(NEW, "", "open-01"), record(NEW, "", "open-02")]
    old = [record(OLD, "", "open-01"), record(OLD, "", "open-03")]
    result = compare_runs(new, old, rubrics)
    assert result["coverage"]["n"] == 1  # open-01 only
    assert result["coverage"]["diff"] == 2 / 3 - 1 / 3
    assert result["repeated"]["diff"] == -1 and result["empty_sections"]["diff"] == -3


def test_the_command_pairs_a_folder_against_an_earlier_one(tmp_path):
    folders = {}
    for name, text in (("new", NEW), ("old", OLD)):
        folder = tmp_path / name
        folder.mkdir()
        (folder / "config.json").write_text(json.dumps({"questions": "wiki_vital_open.jsonl"}))
        (folder / "records.jsonl").write_text(record(text, "").model_dump_json() + "\n")
        folders[name] = folder
    rubric = tmp_path / "rubric.jsonl"
    rubric.write_text(RUBRIC.model_dump_json() + "\n")
    base = [
        sys.executable,
        "-m",
        "sounding",
        "score-reports",
        str(folders["new"]),
        "--no-judge",
        "--rubric",
        str(rubric),
    ]
    done = subprocess.run(
        [*base, "--against", str(folders["old"])], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert "| lexical rubric coverage of the printed sentences | 0.33 | 0.67 | +0.33 |" in done.stdout
    assert (folders["new"] / "against-old.md").read_text().strip() in done.stdout
    bad = subprocess.run(
        [*base, "--against", str(tmp_path / "nowhere")], capture_output=True, text=True, timeout=120
    )
    assert bad.returncode == 2 and "--against" in bad.stderr
    assert "not a readable eval-reports results folder" in bad.stderr
    cut = (folders["old"] / "records.jsonl").read_text() + '{"id": "open-02", "quest'
    (folders["old"] / "records.jsonl").write_text(cut)
    again = subprocess.run(
        [*base, "--against", str(folders["old"])], capture_output=True, text=True, timeout=120
    )
    assert again.returncode == 0, again.stderr
    assert (folders["old"] / "records.jsonl").read_text() == cut  # the earlier run is read, never rewritten
    other = tmp_path / "other"
    other.mkdir()
    (other / "records.jsonl").write_text(record(OLD, "", "open-09").model_dump_json() + "\n")
    apart = subprocess.run([*base, "--against", str(other)], capture_output=True, text=True, timeout=120)
    assert apart.returncode == 2 and "no question in common" in apart.stderr
