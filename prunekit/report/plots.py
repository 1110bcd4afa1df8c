"""PNG plots made with matplotlib's object API (no pyplot global state), written atomically."""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

from prunekit.io.atomic import atomic_write_bytes


def _save(fig, path: str | Path) -> Path:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    return atomic_write_bytes(path, buf.getvalue())


def bar_plot(path: str | Path, labels: Sequence[str], values: Sequence[float], title: str, ylabel: str,
             ylim: tuple[float, float] | None = None, value_format: str = "{:.3f}") -> Path:
    """Write a labelled bar chart as PNG; return the path.

    Example:
        >>> import tempfile
        >>> bar_plot(tempfile.mkdtemp() + "/a.png", ["x"], [1.0], "t", "y").suffix
        '.png'
    """
    from matplotlib.figure import Figure

    fig = Figure(figsize=(max(4.0, 1.1 * len(labels) + 2), 3.6))
    ax = fig.subplots()
    bars = ax.bar(list(labels), list(values), color="#3b6ea8")
    for b, v in zip(bars, values):
        ax.annotate(value_format.format(v), (b.get_x() + b.get_width() / 2, b.get_height()),
                    ha="center", va="bottom", fontsize=8)
    ax.set_title(title)
    ax.set_ylabel(ylabel)
    if ylim:
        ax.set_ylim(*ylim)
    ax.tick_params(axis="x", labelrotation=30 if len(labels) > 4 else 0)
    return _save(fig, path)


def layer_sparsity_plot(path: str | Path, names: Sequence[str], sparsities: Sequence[float],
                        title: str = "Sparsity per layer") -> Path:
    """Horizontal bars of each layer's sparsity (0..1); return the path."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.0, 0.35 * len(names) + 1.5))
    ax = fig.subplots()
    ax.barh(list(names)[::-1], [100 * s for s in sparsities][::-1], color="#c0504d")
    ax.set_xlim(0, 100)
    ax.set_xlabel("sparsity (%)")
    ax.set_title(title)
    return _save(fig, path)
