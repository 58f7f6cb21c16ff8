"""Helpers shared by the CLI modules: settings from flags, one-line errors, exit codes."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape

from sounding.settings import ConfigError, Settings, deep_overrides, load_settings

EXIT_OK = 0
EXIT_DEGRADED = 1
EXIT_BAD_INPUT = 2
EXIT_UNAVAILABLE = 3
EXIT_INTERRUPTED = 130

console = Console()
err_console = Console(stderr=True)


def fail(message: str, code: int = EXIT_BAD_INPUT) -> NoReturn:
    """One clear line on stderr and a non-zero exit: never a traceback for a user's mistake."""
    err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def budget_value(value: float | None) -> float | None:
    """A ``--budget`` option's check: finite, above 0, at most ``MAX_BUDGET`` (nan and inf are refused)."""
    from sounding.settings import MAX_BUDGET

    if value is not None and not (0 < value <= MAX_BUDGET):
        raise typer.BadParameter(f"must be a finite number above 0 and at most {MAX_BUDGET:g}, got {value}")
    return value


def check_writable(path: Path, flag: str) -> None:
    """Fail before anything is spent when an output file cannot be written (a bad path must never
    throw away a finished, paid run): its folder must exist or be creatable, and it must not be a folder."""
    if path.is_dir():
        fail(f"{flag} {path} is a directory, not a file")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        fail(f"{flag} {path}: cannot create its folder ({exc.strerror or exc})")
    if not os.access(path.parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        fail(f"{flag} {path} is not writable")


def existing_store(run_dir: Path) -> Path:
    """The result store of a `sounding bench` run directory; a clear error when there is none."""
    path = run_dir / "results.sqlite"
    if not path.is_file():
        fail(f"no results.sqlite in {run_dir}: run sounding bench --out {run_dir} first")
    return path


def settings_from(ctx: typer.Context, **flags: Any) -> Settings:
    """Settings with the CLI flags (``section__field=value``, None = not given) as the top layer."""
    config = (ctx.obj or {}).get("config") if ctx is not None else None
    try:
        return load_settings(config, **deep_overrides(**flags))
    except ConfigError as exc:
        fail(str(exc))


JsonOpt = typer.Option("--json", help="Print the listing as JSON (one object per row).")
#: The decompose strategy's dials, the same for `ask` and `bench`.
VoteKOpt = typer.Option("--vote-k", min=1, max=16, help="decompose: the lead that decides a vote.")
VoteMaxOpt = typer.Option("--vote-max-samples", min=1, max=64, help="decompose: most ballots per vote.")


StrategyHelp = (
    "How the budget becomes an answer: iterative (rounds of search and reading; the think/samples "
    "grid), decompose (voted sub-questions; dial mode=auto|sequential|parallel), tree (beam search "
    "over trajectories; dials width, beam, value=logprob|agreement|support) or best_of_n (dials n, "
    "value). Dials as name:dial=value:dial=value."
)


def check_strategies(text: str, *, one: bool = False) -> list[Any]:
    """The --strategy variants (``name:dial=value``, comma-separated), or a one-line error naming
    what is wrong, said before anything is loaded."""
    from sounding.agent.strategies import UnknownStrategyError, parse_variants

    try:
        variants = parse_variants(text)
    except UnknownStrategyError as exc:
        fail(f"--strategy: {exc}")
    if one and len(variants) != 1:
        fail(f"--strategy takes one strategy here, got {text!r}")
    return variants


def print_listing(title: str, rows: list[dict[str, Any]], *, as_json: bool = False) -> None:
    """A listing that is never truncated: JSON when asked; tab-separated plain text with a header
    when stdout is not a terminal (a pipe, a file: every name can be copied); else a table whose cells
    wrap instead of being cut with an ellipsis."""
    import json
    import sys

    from rich.table import Table

    if as_json:
        sys.stdout.write(json.dumps(rows, indent=2, default=str) + "\n")
        return
    columns = list(rows[0]) if rows else []
    if not sys.stdout.isatty():
        sys.stdout.write(f"# {title}\n")
        if columns:
            sys.stdout.write("\t".join(columns) + "\n")
        for row in rows:
            sys.stdout.write("\t".join(" ".join(str(row[c]).split()) for c in columns) + "\n")
        return
    table = Table(title=title)
    for col in columns:
        table.add_column(col, overflow="fold")
    for row in rows:
        table.add_row(*(escape(str(row[c])) for c in columns))
    console.print(table)
