"""`sounding eval-reports`: cited reports on open questions against a one-shot baseline, judged."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, get_args

import typer

from sounding.cli.common import EXIT_UNAVAILABLE, budget_value, console, err_console, fail, settings_from
from sounding.cli.progress import rich_progress

if TYPE_CHECKING:
    from sounding.evals.reports import ReportRecord
    from sounding.evals.rubric import Rubric


def eval_reports(
    ctx: typer.Context,
    out: Annotated[Path, typer.Option("--out", help="Results folder (records.jsonl; a rerun resumes).")],
    questions: Annotated[
        Path | None,
        typer.Option(
            "--questions", help="JSONL of {id, question, topics}; default: the 30 wiki-vital open questions."
        ),
    ] = None,
    model: Annotated[str | None, typer.Option("--model", help="The writer: the agent's model.")] = None,
    judge_model: Annotated[
        str, typer.Option("--judge-model", help="The judge: another model than the writer.")
    ] = "qwen2.5-coder-1.5b",
    budget: Annotated[
        float, typer.Option("--budget", callback=budget_value, help="Each report's budget (token-eq.).")
    ] = 30_000,
    limit: Annotated[int | None, typer.Option("--limit", min=1, help="First N questions.")] = None,
    depth: Annotated[
        int | None,
        typer.Option(
            "--depth", min=1, max=8, help="Search rounds (a fixed plan); default: the controller's."
        ),
    ] = None,
    composer: Annotated[
        str,
        typer.Option(
            "--composer",
            help="paragraph | claims | select | extract: a section in one call, one claim per note, one voted sentence per note, or the notes' most relevant sentences (the default).",
        ),
    ] = "extract",
    report_only: Annotated[
        bool,
        typer.Option(
            "--report-only",
            help="Only the reports: no one-shot baseline and no judge (score them with score-reports).",
        ),
    ] = False,
) -> None:
    """Write a checked report for every open question, a one-shot answer from the same notes, and
    judge every sentence of both with the judge model: supported share and citation precision.

    Exit codes: 0 done; 2 bad input; 3 a model or the corpus is unavailable.
    """
    from sounding.agent.report import Composer  # lazily: the CLI starts without the agent
    from sounding.evals.reports import (
        DEFAULT_QUESTIONS,
        RecordStore,
        ReportEvalError,
        evaluate_question,
        file_digest,
        load_open_questions,
        run_report_eval,
        summarise,
        summary_markdown,
    )

    if composer not in get_args(Composer):
        fail(f"--composer must be one of {', '.join(get_args(Composer))}, not {composer!r}")
    path = questions or DEFAULT_QUESTIONS
    try:
        items = load_open_questions(path)[:limit]
    except ReportEvalError as exc:
        fail(str(exc))
    settings = settings_from(
        ctx,
        llm__model=model,
        budget__budget=budget,
        budget__controller="fixed" if depth is not None else None,
        budget__depth=depth,
    )
    if judge_model == settings.llm.model and not report_only:
        err_console.print(
            "[yellow]warning:[/] the judge is the writer's own model; its verdicts are not independent"
        )
    config = {
        "questions": path.name,
        "questions_sha256": file_digest(path),
        "model": settings.llm.model,
        "judge_model": judge_model,
        "budget": budget,
        "unit": settings.budget.unit,
        "controller": settings.budget.controller,
        "depth": depth,
        "corpus": settings.search.corpus,
        "backend": settings.search.backend,
        "seed": settings.llm.seed,
        # how the report judged relevance (tools/relevance.py): stores made before embeddings have none
        "relevance": "embedding",
    }
    # folders written before the composers and the report-only mode have neither key (they were
    # paragraph, with the baseline and the judge)
    if composer != "paragraph":
        config["composer"] = composer
    if report_only:
        config["report_only"] = True
    try:
        store = RecordStore(out, config)
        store.records()  # a corrupt store is said before anything is spent
    except (ReportEvalError, OSError) as exc:
        fail(str(exc))

    from sounding.agent.runner import run_research
    from sounding.factory import build_deps, spec_from_settings
    from sounding.research import make_ledger
    from sounding.tools.llm import make_llm
    from sounding.tools.llm.base import LLMError, UnknownModelError
    from sounding.tools.relevance import EmbeddingRelatedness
    from sounding.tools.search.base import SearchError
    from sounding.tools.search.factory import make_search

    try:
        writer = make_llm(settings)
        judge = None
        if not report_only:
            judge = make_llm(
                settings.model_copy(update={"llm": settings.llm.model_copy(update={"model": judge_model})})
            )
        with rich_progress() as progress:
            search = make_search(settings, progress=progress)
    except UnknownModelError as exc:
        fail(str(exc))
    except (LLMError, SearchError) as exc:
        fail(str(exc), EXIT_UNAVAILABLE)

    run_spec = spec_from_settings(settings, format="report", composer=composer)
    related = EmbeddingRelatedness()  # one embedding model for every question's relevance filter

    def research(question: str) -> object:
        deps = build_deps(run_spec, settings, writer, search, relatedness=related)
        return run_research(question, deps, strategy=run_spec.strategy)

    def evaluate(question):  # type: ignore[no-untyped-def]
        return evaluate_question(
            question, research, writer, judge, lambda: make_ledger(settings, judge or writer)
        )

    def said(record) -> None:  # type: ignore[no-untyped-def]
        s = {arm: record.scores[arm] for arm in record.scores}
        if report_only:
            err_console.print(f"{record.id}: {s['report_written'].sentences} sentences written")
            return
        err_console.print(
            f"{record.id}: {s['report_written'].sentences} sentences, judge-supported "
            f"{s['report_written'].supported} (kept by the check: {s['report_checked'].sentences}, "
            f"{s['report_checked'].supported} supported); one-shot {s['one_shot'].supported}/{s['one_shot'].sentences}"
        )

    for _ in run_report_eval(items, store, evaluate, on_record=said):
        pass
    if report_only:
        console.print(
            f"reports in {out / 'records.jsonl'}; score them with `sounding score-reports {out} --no-judge`"
        )
        return
    records = [r for r in store.records() if r.id in {q.id for q in items}]
    summary = summarise(records)
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    text = summary_markdown(summary, config)
    (out / "summary.md").write_text(text, encoding="utf-8")
    console.print(text)


def score_reports(
    ctx: typer.Context,
    folder: Annotated[Path, typer.Argument(help="An `eval-reports` results folder (records.jsonl).")],
    judge_model: Annotated[
        str, typer.Option("--judge-model", help="The judge: another model than the writer.")
    ] = "qwen2.5-coder-1.5b",
    rubric: Annotated[
        Path | None,
        typer.Option("--rubric", help="JSONL of {id, points: [{point, source, evidence}]}; default: the one "
                     "beside the folder's questions file."),
    ] = None,
    labels: Annotated[
        Path | None,
        typer.Option("--labels", help="Hand labels to check the judge against; default: the folder's "
                     "rubric-labels.jsonl, if there is one."),
    ] = None,
    ids: Annotated[
        str | None, typer.Option("--ids", help="Only these questions (comma-separated ids, e.g. open-01,open-02).")
    ] = None,
    no_judge: Annotated[
        bool, typer.Option("--no-judge", help="Only the model-free lexical reading: no judge model is loaded.")
    ] = False,
    against: Annotated[
        Path | None,
        typer.Option("--against", help="An earlier eval-reports folder: what a reader finds in each report "
                     "(coverage, cut and repeated sentences, empty sections, spend), paired by question."),
    ] = None,
) -> None:  # fmt: skip
    """Rubric coverage of stored reports: for each question, which of its rubric's key points the report
    states, and which the one-shot answer from the same notes states, judged point by point; paired,
    with CIs, and the judge checked against hand labels. Reads records.jsonl, never re-runs a report;
    verdicts go to rubric-<judge>.jsonl beside it (a rerun resumes).

    Exit codes: 0 done; 2 bad input; 3 the judge model is unavailable.
    """
    from sounding.evals.reports import DEFAULT_QUESTIONS, RecordStore, ReportEvalError
    from sounding.evals.rubric import (
        CoverageStore,
        agreement,
        coverage_summary,
        dump_summary,
        judge_coverage,
        load_labels,
        load_rubric,
        rubric_path,
        score_records,
    )

    config_path = folder / "config.json"
    if not (folder / "records.jsonl").is_file() or not config_path.is_file():
        fail(f"{folder} is not an eval-reports results folder (no records.jsonl and config.json)")
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
        records = RecordStore(folder, config).records()
        questions = DEFAULT_QUESTIONS.with_name(str(config.get("questions") or DEFAULT_QUESTIONS.name))
        rubrics = load_rubric(rubric or rubric_path(questions))
        label_path = labels or folder / "rubric-labels.jsonl"
        hand = load_labels(label_path, rubrics) if (labels is not None or label_path.exists()) else None
    except (ReportEvalError, OSError, json.JSONDecodeError) as exc:
        fail(str(exc))
    if not records:
        fail(f"{folder} holds no records yet")
    if ids is not None:
        wanted = [i.strip() for i in ids.split(",") if i.strip()]
        unknown = sorted(set(wanted) - {r.id for r in records})
        if not wanted or unknown:
            fail(f"--ids: {', '.join(unknown) or 'no id given'} not among the folder's records")
        records = [r for r in records if r.id in wanted]
    from sounding.evals.rubric import lexical_markdown, lexical_summary

    try:
        lexical = lexical_markdown(lexical_summary(records, rubrics))
    except ReportEvalError as exc:
        fail(str(exc))
    if hand is not None:
        from sounding.evals.rubric import lexical_agreement, lexical_agreement_line

        lexical += lexical_agreement_line(lexical_agreement(records, rubrics, hand)) + "\n"
    (folder / "rubric-lexical-summary.md").write_text(lexical, encoding="utf-8")
    if against is not None:
        lexical += "\n\n" + _against(folder, records, against, rubrics)
    if no_judge:
        console.print(lexical, markup=False, highlight=False)
        return

    from sounding.research import make_ledger
    from sounding.tools.llm import make_llm
    from sounding.tools.llm.base import LLMError, UnknownModelError

    settings = settings_from(ctx, llm__model=judge_model)
    if judge_model == config.get("model"):
        err_console.print(
            "[yellow]warning:[/] the judge is the writer's own model; its verdicts are not independent"
        )
    try:
        judge = make_llm(settings)
    except UnknownModelError as exc:
        fail(str(exc))
    except LLMError as exc:
        fail(str(exc), EXIT_UNAVAILABLE)
    store = CoverageStore(folder, judge_model)

    def said(c) -> None:  # type: ignore[no-untyped-def]
        err_console.print(f"{c.id} {c.arm}: {sum(1 for s in c.stated if s)} of {len(c.stated)} points stated")

    try:
        coverages = score_records(
            records, rubrics, store, lambda r, arm, rb: judge_coverage(judge, make_ledger(settings, judge), r, arm, rb),
            on_coverage=said,
        )  # fmt: skip
    except ReportEvalError as exc:
        fail(str(exc))
    except LLMError as exc:
        fail(f"the judge failed: {exc}", EXIT_UNAVAILABLE)
    summary = coverage_summary(coverages)
    agreed = None
    if hand is not None:
        agreed = agreement(coverages, hand) | {
            "ungrounded": agreement(coverages, hand, verdict="claimed"),
            "lexical": agreement(coverages, hand, verdict="lexical"),
        }
    console.print(
        dump_summary(folder, judge_model, summary, agreed) + "\n" + lexical, markup=False, highlight=False
    )


def _against(folder: Path, records: list[ReportRecord], other: Path, rubrics: dict[str, Rubric]) -> str:
    """The reader's figures of this folder's reports against another folder's, paired; written beside
    the records as ``against-<other>.md``."""
    from pydantic import ValidationError

    from sounding.evals.reader import compare_runs, comparison_markdown
    from sounding.evals.reports import ReportRecord as Record

    try:  # read only: the earlier run is never repaired or rewritten here
        text = (other / "records.jsonl").read_text(encoding="utf-8")
        lines = [line for line in text.splitlines() if line.strip()]
        if lines and not text.endswith("\n"):
            lines = lines[:-1]  # a line cut by a crash mid-write is not a record
        earlier = [Record.model_validate_json(line) for line in lines]
    except (OSError, UnicodeDecodeError, ValidationError) as exc:
        fail(f"--against {other}: not a readable eval-reports results folder ({exc})")
    shared = {r.id for r in records} & {r.id for r in earlier}
    if not shared:
        fail(f"--against {other}: no question in common with {folder}")
    missing = sorted(shared - set(rubrics))
    if missing:
        fail(f"--against {other}: no rubric for {', '.join(missing)}")
    table = comparison_markdown(compare_runs(records, earlier, rubrics), folder.name, other.name)
    (folder / f"against-{other.name}.md").write_text(table + "\n", encoding="utf-8")
    return table


def score_relevance(
    labels: Annotated[
        Path,
        typer.Argument(
            help="JSONL of {question, section, sentence, on_topic}: hand-labelled report sentences."
        ),
    ],
    floors: Annotated[
        str, typer.Option("--floors", help="Comma-separated cosine floors to tabulate.")
    ] = "0.2,0.25,0.3,0.35,0.4,0.45",
) -> None:
    """How well a report's relevance filter (embedding cosine of each sentence with its section's
    sub-question or the report's question) separates hand-labelled on-topic from off-topic sentences:
    its AUROC, and at each floor the on-topic sentences lost and the off-topic ones dropped.

    Exit codes: 0 done; 2 bad input.
    """
    from sounding.agent.report import SENTENCE_FLOOR
    from sounding.evals.relevance import RelevanceLabelError, calibrate, calibration_markdown, read_labels
    from sounding.tools.relevance import EmbeddingRelatedness

    try:
        chosen = [float(f) for f in floors.split(",") if f.strip()]
    except ValueError:
        fail(f"--floors must be comma-separated numbers, not {floors!r}")
    if not chosen:
        fail("--floors names no floor")
    try:
        rows = read_labels(labels)
    except RelevanceLabelError as exc:
        fail(str(exc))
    typer.echo(calibration_markdown(calibrate(rows, EmbeddingRelatedness(), chosen), SENTENCE_FLOOR))


def relevance_sheet(
    folders: Annotated[list[Path], typer.Argument(help="eval-reports results folders (records.jsonl).")],
    out: Annotated[Path, typer.Option("--out", help="The sheet to label (JSONL); its key goes beside it.")],
    seed: Annotated[int, typer.Option("--seed", help="Seed of the shuffle.")] = 0,
) -> None:
    """A blind labelling sheet: every sentence the reports of these runs print, with its section's
    sub-question, shuffled across runs so a labeller cannot tell which run wrote it. Label each
    item's ``on_topic`` (true/false), then read the shares with `sounding off-topic SHEET`.
    The key (which run and question each item came from) is written to SHEET.key.jsonl.

    Exit codes: 0 done; 2 bad input.
    """
    from sounding.evals.relevance import blind_sheet
    from sounding.evals.reports import RecordStore, ReportEvalError

    if out.exists():
        fail(f"{out} exists: a sheet may already hold labels, choose another --out")
    runs = {}
    for folder in folders:
        config_path = folder / "config.json"
        if not (folder / "records.jsonl").is_file() or not config_path.is_file():
            fail(f"{folder} is not an eval-reports results folder (no records.jsonl and config.json)")
        if folder.name in runs:
            fail(f"two folders are named {folder.name}: the key tells runs apart by folder name")
        try:
            config = json.loads(config_path.read_text(encoding="utf-8"))
            records = RecordStore(folder, config).records()
        except (ReportEvalError, ValueError, OSError) as exc:
            fail(str(exc))
        runs[folder.name] = [(r.id, r.question, r.report_markdown) for r in records]
    items, keys = blind_sheet(runs, seed, prefix=f"{out.stem}-")
    key_path = out.with_name(out.name + ".key.jsonl")
    out.write_text("".join(x.model_dump_json() + "\n" for x in items), encoding="utf-8")
    key_path.write_text("".join(k.model_dump_json() + "\n" for k in keys), encoding="utf-8")
    typer.echo(f"{len(items)} sentences of {len(runs)} runs to label in {out}; the key is {key_path}")


def off_topic(
    sheets: Annotated[
        list[Path], typer.Argument(help="Labelled `relevance-sheet`s (each with its .key.jsonl beside it).")
    ],
) -> None:
    """Per run: the share of printed sentences labelled off topic, with Wilson 95% CIs, and the
    reports with at least one, from labelled blind sheets and their keys (several sheets are read
    together).

    Exit codes: 0 done; 2 bad input.
    """
    from sounding.evals.relevance import RelevanceLabelError, SheetItem, SheetKey, off_topic_shares
    from sounding.evals.reports import ReportEvalError
    from sounding.evals.rubric import read_jsonl

    items: list[SheetItem] = []
    keys: list[SheetKey] = []
    try:
        for sheet in sheets:
            items += read_jsonl(sheet, SheetItem, "sheet item")
            keys += read_jsonl(sheet.with_name(sheet.name + ".key.jsonl"), SheetKey, "sheet key")
        if len({x.item for x in items}) < len(items):
            fail("two sheets name the same items: make each with its own --out name")
        shares = off_topic_shares(items, keys)
    except (ReportEvalError, RelevanceLabelError, OSError) as exc:
        fail(str(exc))
    lines = [
        "| run | sentences | off topic | share [95% CI] | reports with one |",
        "|---|---|---|---|---|",
    ]
    for x in shares:
        share = x.off_topic / x.sentences if x.sentences else 0.0
        lines.append(
            f"| {x.run} | {x.sentences} | {x.off_topic} | {share:.3f} [{x.ci[0]:.2f}, {x.ci[1]:.2f}] "
            f"| {x.reports_with_any} of {x.reports} |"
        )
    typer.echo("\n".join(lines))


def register(app: typer.Typer) -> None:
    app.command("eval-reports")(eval_reports)
    app.command("score-reports")(score_reports)
    app.command("score-relevance")(score_relevance)
    app.command("relevance-sheet")(relevance_sheet)
    app.command("off-topic")(off_topic)
