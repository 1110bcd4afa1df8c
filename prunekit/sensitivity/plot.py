"""PNG plot of sensitivity curves (matplotlib object API, no pyplot state; written atomically)."""

from __future__ import annotations

import io
import os
from pathlib import Path

from prunekit.io import atomic_write_bytes
from prunekit.sensitivity.curves import SensitivityCurves


def plot_sensitivity(
    curves: SensitivityCurves,
    path: str | os.PathLike[str],
    metric_name: str = "metric",
    allocation: dict[str, float] | None = None,
) -> Path:
    """Draw one line per layer (metric vs sparsity) and the baseline; mark allocated
    sparsities if given. Returns the written path.

    Example:
        >>> import tempfile
        >>> c = SensitivityCurves(1.0, [0.5, 0.9], {"a": [1.0, 0.9]}, {"a": 10})
        >>> plot_sensitivity(c, tempfile.mkdtemp() + "/s.png").suffix
        '.png'
    """
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4.5))
    ax = fig.subplots()
    xs = [0.0] + [s * 100 for s in curves.sparsities]
    for name, values in curves.metrics.items():
        (line,) = ax.plot(xs, [curves.baseline] + values, marker="o", ms=3, label=name or "(model)")
        if allocation and name in allocation:
            ax.axvline(allocation[name] * 100, color=line.get_color(), ls=":", lw=1)
    ax.axhline(curves.baseline, color="k", ls="--", lw=1, label="unpruned")
    ax.set_xlabel("sparsity of the layer (% of its weights pruned)")
    ax.set_ylabel(metric_name)
    ax.set_title("per-layer sensitivity (one layer pruned at a time)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    return atomic_write_bytes(path, buf.getvalue())
