"""A rich progress bar as a context manager yielding ``advance(n)``; a no-op when disabled."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager


@contextmanager
def progress_bar(total: int, description: str, enabled: bool = True) -> Iterator[Callable[[int], None]]:
    """Show a progress bar over ``total`` units; yields ``advance(n)``.

    The bar is shown only when ``enabled`` and stderr is a terminal.

    Example:
        >>> with progress_bar(3, "work", enabled=False) as advance:
        ...     advance(3)
    """
    if not enabled or not sys.stderr.isatty():
        yield lambda n=1: None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        transient=True,
    ) as bar:
        task = bar.add_task(description, total=total)
        yield lambda n=1: bar.advance(task, n)
