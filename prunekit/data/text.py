"""Plain text for calibration and perplexity: Jane Austen's six novels, or any text file.

The novels come from the Debian package ``r-cran-janeaustenr`` (public-domain text,
stored as R lazy-load data) and are read with the pure-Python ``rdata`` package; R is
not needed. ``read_text("austen:emma")`` or ``read_text("notes.txt")``.

Example:
    >>> "persuasion" in AUSTEN_NOVELS
    True
"""

from __future__ import annotations

import gzip
import os
import re
import warnings
import zlib
from pathlib import Path

from prunekit.errors import DatasetError, MissingDependencyError, require

#: the novels of ``janeaustenr``, by the names ``austen:<name>`` accepts
AUSTEN_NOVELS: tuple[str, ...] = (
    "emma",
    "mansfieldpark",
    "northangerabbey",
    "persuasion",
    "prideprejudice",
    "sensesensibility",
)
AUSTEN_DATA = Path("/usr/lib/R/site-library/janeaustenr/data/Rdata")
_INSTALL = "apt-get install r-cran-janeaustenr && pip install rdata"


def _r_unserialize(raw: bytes):
    rdata = require("rdata", extra="hf")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # rdata warns "Unknown file type: assumed RDS"
        return rdata.conversion.convert(rdata.parser.parse_data(raw))


def _austen_index(base: Path) -> dict[str, tuple[int, int]]:
    rdx = Path(str(base) + ".rdx")
    if not rdx.exists():
        raise MissingDependencyError(f"the Austen novels ({rdx})", _INSTALL)
    blob = rdx.read_bytes()
    raw = gzip.decompress(blob) if blob[:2] == b"\x1f\x8b" else zlib.decompress(blob[4:])
    variables = _r_unserialize(raw)["variables"]
    return {str(k): (int(v[0]), int(v[1])) for k, v in variables.items()}


def load_austen(name: str, base: str | os.PathLike[str] = AUSTEN_DATA) -> str:
    """Return one Austen novel as text (one line of the book per line).

    Args:
        name: one of :data:`AUSTEN_NOVELS` (case, spaces, dashes and "and" ignored:
            ``"Pride and Prejudice"`` works).
        base: the R lazy-load data path without extension.

    Example:
        >>> text = load_austen("persuasion")   # doctest: +SKIP
        >>> text.splitlines()[0]               # doctest: +SKIP
        'Persuasion'
    """
    key = re.sub(r"[^a-z]", "", name.lower())
    if key not in AUSTEN_NOVELS:
        key = key.replace("and", "")
    if key not in AUSTEN_NOVELS:
        raise DatasetError(f"unknown Austen novel {name!r}; choose one of {list(AUSTEN_NOVELS)}")
    index = _austen_index(Path(base))
    offset, length = index[key]
    with open(str(base) + ".rdb", "rb") as fh:
        fh.seek(offset)
        chunk = fh.read(length)
    lines = _r_unserialize(zlib.decompress(chunk[4:]))
    return "\n".join(str(line) for line in lines)


def read_text(source: str | os.PathLike[str]) -> str:
    """Read calibration / evaluation text from ``austen:<novel>`` or a UTF-8 text file.

    Several sources may be joined with ``+``: ``"austen:emma+austen:persuasion"``.

    Example:
        >>> import tempfile, pathlib
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "t.txt"; _ = p.write_text("hello")
        >>> read_text(p)
        'hello'
    """
    spec = os.fspath(source)
    if "+" in spec and not Path(spec).exists():
        return "\n\n".join(read_text(part) for part in spec.split("+"))
    if spec.startswith("austen:"):
        return load_austen(spec.split(":", 1)[1])
    path = Path(spec)
    if not path.is_file():
        raise DatasetError(
            f"text source {spec!r} is not a file; give a UTF-8 text file or "
            f"austen:<novel> with a novel from {list(AUSTEN_NOVELS)}"
        )
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise DatasetError(f"text file {spec!r} is not UTF-8 text ({exc.reason})") from exc
