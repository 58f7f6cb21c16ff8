"""The `sounding` command line (typer + rich). Each command group lives in its own module.

Exit codes, for every command: 0 success; 1 a run finished degraded (an answer produced after a
backend failure, or no answer because the model's output never parsed); 2 bad input (usage, unknown
corpus/model, invalid config, unreadable or corrupt files); 3 a backend or model is unavailable;
4 an internal error (a bug: one line, and ``--debug`` for the traceback); 130 interrupted; 128+N the
process died from signal N in native code (139 a segfault: one line points to ``sounding doctor``).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, NoReturn

import typer

from sounding import __version__

app = typer.Typer(
    name="sounding",
    help="Agentic deep research that scales at test time: one joint budget for search and reasoning.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"sounding {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    ctx: typer.Context,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
    config: Annotated[
        Path | None,
        typer.Option("--config", help="TOML config file (else SOUNDING_CONFIG, else XDG config)."),
    ] = None,
    debug: Annotated[
        bool, typer.Option("--debug", help="Show the full traceback of an unexpected error.")
    ] = False,
) -> None:
    """sounding: research agent, joint budgets, and scaling evals."""
    ctx.obj = {"config": config}


def _register() -> None:
    # Command modules import heavy libraries lazily inside their commands, so `--help` stays fast.
    from sounding.cli import ask, bench, budget, compare, doctor, index, models, reports, study, tune

    for module in (models, doctor, index, budget, ask, bench, study, compare, tune, reports):
        module.register(app)


_register()


EXIT_INTERNAL = 4


def _exit_for(exc: BaseException) -> tuple[int, str]:
    """The documented exit code and one line for a failure that escaped a command."""
    from sounding.agent.runner import CheckpointError, QuestionError
    from sounding.budgets.controllers import PolicyError
    from sounding.evals.datasets import DatasetError
    from sounding.evals.store import StoreError
    from sounding.settings import ConfigError
    from sounding.tools.corpus import CorpusError
    from sounding.tools.llm.base import LLMError, UnknownModelError
    from sounding.tools.search.base import SearchError

    bad_input = (
        ConfigError, QuestionError, PolicyError, CheckpointError, DatasetError, StoreError,
        UnknownModelError, CorpusError,
    )  # fmt: skip
    if isinstance(exc, bad_input):
        return 2, str(exc)
    if isinstance(exc, (LLMError, SearchError)):
        return 3, str(exc).splitlines()[0]
    if isinstance(exc, OSError):
        where = f" {exc.filename}" if exc.filename else ""
        return 2, f"cannot use{where}: {exc.strerror or exc}"
    return EXIT_INTERNAL, (
        f"internal error: {type(exc).__name__}: {exc} (a bug in sounding; rerun with --debug for the traceback)"
    )


def _interrupted() -> NoReturn:
    """Ctrl-C: exit 130 now. Worker threads still inside a question (a sweep's in-flight calls) are not
    waited for: every store write is one transaction, so what was finished is kept (as after a kill)."""
    import os
    import threading

    print("interrupted", file=sys.stderr)
    if any(t.is_alive() and not t.daemon for t in threading.enumerate() if t is not threading.main_thread()):
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(130)
    raise SystemExit(130)


def main() -> NoReturn:
    """Run the CLI; every failure ends in one line on stderr and its documented exit code."""
    try:
        code = app(prog_name="sounding", standalone_mode=False)
    except SystemExit:
        raise
    except typer.TyperException as exc:  # a usage error: one line naming the problem, never a box
        from rich.markup import escape

        from sounding.cli.common import err_console

        ctx = getattr(exc, "ctx", None)
        hint = f" (see: {ctx.command_path} --help)" if ctx is not None else ""
        message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
        err_console.print(
            f"[bold red]error:[/] {escape(message)}{escape(hint)}", highlight=False, soft_wrap=True
        )
        raise SystemExit(exc.exit_code) from None
    except (KeyboardInterrupt, typer.Abort):
        _interrupted()
    except Exception as exc:
        if "--debug" in sys.argv[1:]:
            raise
        code, message = _exit_for(exc)
        from rich.markup import escape

        from sounding.cli.common import err_console

        err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
        raise SystemExit(code) from None
    if code == 130:  # typer turns Ctrl-C into exit code 130
        _interrupted()
    raise SystemExit(code if isinstance(code, int) else 0)
