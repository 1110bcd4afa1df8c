"""A per-layer progress display that can be switched off (tests, scripting).

On a terminal it is a rich progress bar; when output goes to a file or pipe, one
plain line per step is printed instead, so logs show the progress too.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager


@contextmanager
def layer_progress(
    label: str, total: int, *, enabled: bool = True, unit: str = "layers"
) -> Iterator[Callable[[], None]]:
    """Yield an ``advance()`` callable showing ``label  i/total unit`` and the elapsed time."""
    if not enabled:
        yield lambda: None
        return
    from rich.console import Console

    console = Console(file=sys.stderr)
    if not console.is_terminal:
        start, done = time.perf_counter(), [0]

        def advance() -> None:
            done[0] += 1
            print(f"{label}: {done[0]}/{total} {unit} ({time.perf_counter() - start:.1f}s)",
                  file=sys.stderr, flush=True)

        yield advance
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TextColumn(unit), TimeElapsedColumn(), console=console, transient=False,
    ) as bar:
        task = bar.add_task(label, total=total)
        yield lambda: bar.advance(task)
