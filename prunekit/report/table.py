"""Before/after tables for the terminal (rich) and for Markdown."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

#: (column title, key in a stage dict, formatter)
STAGE_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("accuracy", "accuracy", "pct"),
    ("params", "params", "int"),
    ("non-zero", "nonzero", "int"),
    ("size", "size_bytes", "bytes"),
    ("compressed", "size_compressed_bytes", "bytes"),
    ("MACs", "macs", "int"),
    ("sparse MACs", "macs_sparse", "int"),
    ("latency ms", "latency_ms", "ms"),
)


def format_value(value: Any, kind: str) -> str:
    """Format one cell: ``pct`` (0.98 -> 98.00%), ``int`` (thousands separators),
    ``bytes`` (KiB/MiB), ``ms`` (3 decimals).

    Example:
        >>> format_value(0.5, "pct"), format_value(2048, "bytes"), format_value(1234567, "int")
        ('50.00%', '2.0 KiB', '1,234,567')
    """
    if value is None:
        return "-"
    if kind == "pct":
        return f"{100 * value:.2f}%"
    if kind == "int":
        return f"{int(value):,}"
    if kind == "bytes":
        for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
            if value >= size:
                return f"{value / size:.1f} {unit}"
        return f"{int(value)} B"
    if kind == "ms":
        return f"{value:.3f}"
    return str(value)


def stage_rows(
    stages: dict[str, dict[str, Any]], columns: Sequence[tuple[str, str, str]] = STAGE_COLUMNS
) -> list[list[str]]:
    """Rows of formatted cells, one per stage, first cell the stage name.

    Example:
        >>> stage_rows({"baseline": {"accuracy": 1.0}}, [("acc", "accuracy", "pct")])
        [['baseline', '100.00%']]
    """
    return [[name] + [format_value(s.get(key), kind) for _, key, kind in columns] for name, s in stages.items()]


#: header of the per-layer sparsity table (rows from ``layer_rows``)
LAYER_HEADER = ["layer", "type", "shape", "weights", "non-zero", "sparsity"]


def layer_rows(layers: Sequence[dict[str, Any]]) -> list[list[str]]:
    """Formatted cells of per-layer sparsity rows (``LayerSparsity.to_dict()`` dicts).

    Example:
        >>> layer_rows([{"name": "fc", "kind": "Linear", "shape": [2, 3], "numel": 6, "nonzero": 3,
        ...              "sparsity": 0.5}])
        [['fc', 'Linear', '2x3', '6', '3', '50.0%']]
    """
    return [
        [r["name"], r["kind"], "x".join(map(str, r["shape"])), f"{r['numel']:,}", f"{r['nonzero']:,}",
         f"{100 * r['sparsity']:.1f}%"]
        for r in layers
    ]


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A GitHub-flavoured Markdown table.

    Example:
        >>> print(markdown_table(["a", "b"], [["1", "2"]]))
        | a | b |
        |---|---|
        | 1 | 2 |
    """
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def print_table(title: str, header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """Print a table to the terminal with rich."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for i, h in enumerate(header):
        table.add_column(h, justify="left" if i == 0 else "right")
    for r in rows:
        table.add_row(*r)
    console = Console()
    if not console.is_terminal:  # files and pipes: wide enough that no cell is cut
        console = Console(width=160)
    console.print(table)
