"""The `sounding` command line (typer + rich). Each command group lives in its own module.

Exit codes: 0 success; 1 a run finished degraded (answer produced after a backend failure);
2 bad input (usage, unknown corpus/model, invalid config); 3 a backend or model is unavailable.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

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
) -> None:
    """sounding: research agent, joint budgets, and scaling evals."""
    ctx.obj = {"config": config}


def _register() -> None:
    # Command modules import heavy libraries lazily inside their commands, so `--help` stays fast.
    from sounding.cli import ask, bench, budget, doctor, index, models

    for module in (models, doctor, index, budget, ask, bench):
        module.register(app)


_register()


def main() -> None:
    app()
