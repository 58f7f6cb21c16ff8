"""Rich progress bars behind the `Progress` protocol of the index store."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn, TimeRemainingColumn

from sounding.cli.common import err_console


def progress_bars(*extra: str) -> Progress:
    """The CLI's progress bars on stderr: description, bar, done/total, elapsed, remaining, then
    ``extra`` columns (e.g. ``"{task.fields[acc]}"``)."""
    return Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        *extra,
        console=err_console,
        transient=False,
    )


@contextmanager
def rich_progress() -> Iterator[Callable[[str, int], Callable[[int], None]]]:
    with progress_bars() as bar:

        def factory(description: str, total: int) -> Callable[[int], None]:
            task = bar.add_task(description, total=total)
            return lambda n: bar.advance(task, n)

        yield factory
