"""Output folders for CLI runs: the given ``--out`` or a fresh timestamped one under ./runs/."""

from __future__ import annotations

import time
from pathlib import Path


def output_dir(out: str | None, command: str) -> Path:
    """Return (and create) the output folder.

    Example:
        >>> import tempfile
        >>> output_dir(tempfile.mkdtemp() + "/x", "demo").is_dir()
        True
    """
    if out:
        path = Path(out)
    else:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        path = Path("runs") / f"{command}-{stamp}"
        n = 1
        while path.exists():
            n += 1
            path = Path("runs") / f"{command}-{stamp}-{n}"
    path.mkdir(parents=True, exist_ok=True)
    return path
