"""A per-layer rich progress bar that can be switched off (tests, scripting)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager


@contextmanager
def layer_progress(label: str, total: int, *, enabled: bool = True, unit: str = "layers") -> Iterator[Callable[[], None]]:
    """Yield an ``advance()`` callable; shows ``label  i/total`` with elapsed time when enabled."""
    if not enabled:
        yield lambda: None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TextColumn(unit), TimeElapsedColumn(), transient=False,
    ) as bar:
        task = bar.add_task(label, total=total)
        yield lambda: bar.advance(task)
