"""Rubric coverage of stored reports (issue 32): a judge says which key points an answer states, the
verdicts are stored beside the records and resumed, the report is paired with the one-shot answer,
and the judge is checked against hand labels on the same texts."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from sounding.budgets.cost import make_cost_model
from sounding.budgets.ledger import Budget, Ledger
from sounding.evals.reports import ReportEvalError, ReportRecord
from sounding.evals.rubric import (
    CoverageStore,
    Label,
    Rubric,
    agreement,
    coverage_summary,
    judge_coverage,
    load_labels,
    load_rubric,
    score_records,
    text_sha,
)
from sounding.settings import BudgetSettings
from tests.scripted import ScriptedLLM

POINTS = [
    "The Danube flows through Budapest.",
    "Budapest lay on ancient trade routes.",
    "The river was a Roman frontier.",
]
RUBRIC = Rubric.model_validate({"id": "open-01", "points": [{"point": p, "source": "Danube", "evidence": "x"} for p in POINTS]})  # fmt: skip


def record(report: str, one_shot: str, id: str = "open-01") -> ReportRecord:
    return ReportRecord(id=id, question="How did the Danube shape Budapest?", format="report", notes=[],
                        topic_read=None, report_markdown=report, one_shot_text=one_shot, claims={}, scores={},
                        tokens={}, seconds={})  # fmt: skip


def keyword_judge() -> ScriptedLLM:
    """States a point when the answer holds its keyword (Budapest, trade, Roman)."""
    keys = dict(zip(POINTS, ["Budapest", "trade", "Roman"], strict=True))

    def verdicts(n, messages):
        user = messages[-1]["content"]
        answer = user.split("Answer:\n", 1)[1].split("\n\nKey points:", 1)[0]
        points = [line.split(": ", 1)[1] for line in user.splitlines() if line.startswith("Point ")]
        out = []
        for p in points:  # quote the answer's sentence holding the keyword, as a grounded judge does
            said = [x for x in answer.split(". ") if keys[p] in x]
            out.append({"quote": said[0] if said else "", "stated": bool(said)})
        return {"points": out}

    return ScriptedLLM({"rubric": verdicts})


def ledger() -> Ledger:
    return Ledger(
        Budget(limit=None, unit="tokens"), make_cost_model("tokens", BudgetSettings(), n_params=None)
    )


def test_the_judge_says_point_by_point_what_an_answer_states():
    judge = keyword_judge()
    r = record("The city grew where Budapest met ancient trade routes.", "")
    report = judge_coverage(judge, ledger(), r, "report", RUBRIC)
    assert report.stated == [True, True, False] and report.share == pytest.approx(2 / 3) and report.tokens > 0
    empty = judge_coverage(judge, ledger(), r, "one_shot", RUBRIC)
    assert empty.stated == [False, False, False] and len(judge.calls) == 1  # an empty answer costs no call


def test_a_verdict_the_judge_left_out_is_unjudged_and_counts_as_not_stated():
    judge = ScriptedLLM(
        {"rubric": {"points": [{"quote": "the Danube flows through Budapest", "stated": True}]}}
    )
    c = judge_coverage(judge, ledger(), record("The Danube flows through Budapest.", ""), "report", RUBRIC)
    assert c.stated == [True, None, None] and c.share == pytest.approx(1 / 3)


def test_a_yes_counts_only_with_words_of_the_answer_that_state_the_point():
    answer = "The Danube flows through Budapest, and the city grew on its trade."
    verdicts = [
        {"quote": "", "stated": True},  # a yes-biased judge: yes without a quote
        {
            "quote": "Budapest lay on ancient trade routes",
            "stated": True,
        },  # the point's words, not the answer's
        {"quote": "Danube flows through", "stated": False},  # a quote, but the judge said no
    ]
    judge = ScriptedLLM({"rubric": {"points": verdicts}})
    c = judge_coverage(judge, ledger(), record(answer, ""), "report", RUBRIC)
    assert c.claimed == [True, True, False] and c.stated == [False, False, False]
    grounded = ScriptedLLM(
        {"rubric": {"points": [{"quote": "the DANUBE flows  through budapest", "stated": True}] * 3}}
    )
    assert judge_coverage(grounded, ledger(), record(answer, ""), "report", RUBRIC).stated == [True] * 3
    summary = coverage_summary([c])
    assert summary["claimed_yes"] == 2 and summary["ungrounded_yes"] == 2


def test_verdicts_are_stored_resumed_and_redone_only_for_a_changed_text(tmp_path):
    judge = keyword_judge()
    rubrics = {"open-01": RUBRIC, "open-02": RUBRIC.model_copy(update={"id": "open-02"})}
    records = [
        record("Budapest grew on trade routes.", "It is the city of Budapest."),
        record("Roman rule reached Budapest early.", "", id="open-02"),
    ]

    def judged(r, arm, rb):
        return judge_coverage(judge, ledger(), r, arm, rb)

    store = CoverageStore(tmp_path, "scripted")
    first = score_records(records, rubrics, store, judged)
    assert len(first) == 4 and len(judge.calls) == 3  # open-02's empty one-shot answer is not sent
    with store.path.open("a") as f:
        f.write('{"id": "open-03", "ar')  # a crash mid-write
    again = score_records(records, rubrics, CoverageStore(tmp_path, "scripted"), judged)
    assert again == first and len(judge.calls) == 3
    changed = [
        record("Budapest grew on trade routes at the Roman frontier.", "It is the city of Budapest."),
        records[1],
    ]
    third = score_records(changed, rubrics, CoverageStore(tmp_path, "scripted"), judged)
    assert third[0].stated == [True, True, True] and len(judge.calls) == 4
    with pytest.raises(ReportEvalError, match="no rubric for the question"):
        score_records([record("x", "y", id="open-09")], rubrics, store, judged)

    summary = coverage_summary(first)
    assert summary["arms"]["report"]["mean"] == pytest.approx((2 / 3 + 2 / 3) / 2)
    assert summary["arms"]["one_shot"]["mean"] == pytest.approx((1 / 3 + 0) / 2)
    assert summary["paired"]["mean"] == pytest.approx(0.5) and summary["paired"]["n"] == 2


def test_the_lexical_reading_needs_one_sentence_holding_most_of_a_point():
    from sounding.evals.rubric import lexically_stated

    assert lexically_stated(
        "The Danube flows through Budapest.", "Budapest is a city. The Danube flows through it."
    )
    # the words are there, but spread over sentences that do not say it together
    assert not lexically_stated(
        "Budapest lay on ancient trade routes.", "Budapest is old. Routes matter. Trade grew."
    )


def test_the_judge_is_checked_against_hand_labels_on_the_same_text_only():
    judge = keyword_judge()
    r = record("Budapest and trade routes.", "")
    c = judge_coverage(judge, ledger(), r, "report", RUBRIC)  # [True, True, False]
    sha = text_sha(r.report_markdown)
    labels = [
        Label(id="open-01", arm="report", point=0, text_sha=sha, stated=True),
        Label(id="open-01", arm="report", point=1, text_sha=sha, stated=False),  # the judge said yes
        Label(id="open-01", arm="report", point=2, text_sha=sha, stated=False),
        Label(id="open-01", arm="report", point=2, text_sha="another text", stated=True),
    ]
    agreed = agreement([c], labels)
    assert agreed["labels"] == 4 and agreed["compared"] == 3
    assert c.lexical == [False, True, False] and agreement([c], labels, verdict="lexical")["compared"] == 3
    assert agreed["agreement"] == pytest.approx(2 / 3)
    assert agreed["judge_yes"] == pytest.approx(2 / 3) and agreed["label_yes"] == pytest.approx(1 / 3)
    # kappa: observed 2/3, chance 2/3*1/3 + 1/3*2/3 = 4/9 -> (2/3 - 4/9) / (5/9) = 0.4
    assert agreed["kappa"] == pytest.approx(0.4)


def test_rubric_and_label_files_are_checked(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_text(RUBRIC.model_dump_json() + "\n" + RUBRIC.model_dump_json() + "\n")
    with pytest.raises(ReportEvalError, match="two rubrics"):
        load_rubric(path)
    path.write_text('{"id": "open-01", "points": []}\n')
    with pytest.raises(ReportEvalError, match="line 1: not a rubric"):
        load_rubric(path)
    labels = tmp_path / "l.jsonl"
    labels.write_text('{"id": "open-01", "arm": "report", "point": 7, "text_sha": "x", "stated": true}\n')
    with pytest.raises(ReportEvalError, match="point 7 has no such rubric point"):
        load_labels(labels, {"open-01": RUBRIC})


def test_the_command_refuses_a_folder_that_is_not_a_report_eval(tmp_path):
    done = subprocess.run([sys.executable, "-m", "sounding", "score-reports", str(tmp_path)],
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 2 and "not an eval-reports results folder" in done.stderr
    (tmp_path / "records.jsonl").write_text("")
    (tmp_path / "config.json").write_text(json.dumps({"questions": "wiki_vital_open.jsonl"}))
    empty = subprocess.run([sys.executable, "-m", "sounding", "score-reports", str(tmp_path)],
                           capture_output=True, text=True, timeout=120)  # fmt: skip
    assert empty.returncode == 2 and "no records yet" in empty.stderr
    store = tmp_path / "records.jsonl"
    store.write_text(record("Budapest.", "").model_dump_json() + "\n")
    unknown = subprocess.run([sys.executable, "-m", "sounding", "score-reports", str(tmp_path), "--ids", "open-07"],
                             capture_output=True, text=True, timeout=120)  # fmt: skip
    assert unknown.returncode == 2 and "open-07 not among the folder's records" in unknown.stderr


def test_the_lexical_reading_runs_without_a_model_over_every_record(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"questions": "wiki_vital_open.jsonl"}))
    answer = "The Danube flows through Budapest. Budapest lay on ancient trade routes."
    (tmp_path / "records.jsonl").write_text(record(answer, "Budapest is a city.").model_dump_json() + "\n")
    rubric = tmp_path / "rubric.jsonl"
    rubric.write_text(RUBRIC.model_dump_json() + "\n")
    done = subprocess.run([sys.executable, "-m", "sounding", "score-reports", str(tmp_path), "--no-judge",
                           "--rubric", str(rubric)], capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert (
        "| sounding report | 1 | 0.67" in done.stdout
        and "| one-shot answer from the same notes | 1 | 0.00" in done.stdout
    )
    assert (tmp_path / "rubric-lexical-summary.md").read_text() in done.stdout
    assert not list(tmp_path.glob("rubric-*.jsonl"))  # no judge, no verdicts stored


def test_a_report_only_run_has_no_one_shot_arm_rather_than_one_that_states_nothing():
    from sounding.evals.rubric import lexical_summary

    answer = "The Danube flows through Budapest. Budapest lay on ancient trade routes."
    summary = lexical_summary([record(answer, "")], {"open-01": RUBRIC})
    assert summary["arms"]["report"]["mean"] == pytest.approx(2 / 3)
    assert summary["arms"]["one_shot"]["n"] == 0 and summary["paired"]["mean"] is None
    mixed = lexical_summary([record(answer, ""), record(answer, "Budapest is a city.", id="open-02")],
                            {"open-01": RUBRIC, "open-02": RUBRIC})  # fmt: skip
    assert mixed["arms"]["one_shot"]["n"] == 1 and mixed["paired"]["n"] == 1


def test_the_lexical_reading_is_checked_against_hand_labels_without_a_judge(tmp_path):
    from sounding.evals.rubric import lexical_agreement, lexically_stated

    answer = "The Danube flows through Budapest. Budapest lay on ancient trade routes."
    r = record(answer, "")
    lexical = [lexically_stated(p, answer) for p in POINTS]
    sha = text_sha(answer)
    agree = [
        Label(id="open-01", arm="report", point=i, text_sha=sha, stated=s) for i, s in enumerate(lexical)
    ]
    out = lexical_agreement([r], {"open-01": RUBRIC}, agree)
    assert out["compared"] == len(POINTS) and out["agreement"] == 1.0
    flipped = [x.model_copy(update={"stated": not x.stated}) for x in agree]
    assert lexical_agreement([r], {"open-01": RUBRIC}, flipped)["agreement"] == 0.0
    other = [x.model_copy(update={"text_sha": "0" * 16}) for x in agree]  # labels of another text
    assert lexical_agreement([r], {"open-01": RUBRIC}, other)["compared"] == 0
