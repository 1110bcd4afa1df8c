"""The demo's ``report.md`` and PNG plots, written from its metrics dict."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prunekit.io.atomic import atomic_write_text
from prunekit.report.plots import bar_plot, layer_sparsity_plot
from prunekit.report.table import LAYER_HEADER, STAGE_COLUMNS, format_value, layer_rows, markdown_table, stage_rows


def write_stage_plots(metrics: dict[str, Any], out_dir: str | Path) -> list[Path]:
    """Write ``accuracy_per_stage.png``, ``size_per_stage.png`` and ``layer_sparsity.png``."""
    out = Path(out_dir)
    stages = metrics["stages"]
    names = list(stages)
    acc = [100 * stages[n]["accuracy"] for n in names]
    paths = [
        bar_plot(out / "accuracy_per_stage.png", names, acc, "Test accuracy per stage", "accuracy (%)",
                 ylim=(max(0.0, min(acc) - 5.0), 100.0), value_format="{:.2f}"),
        bar_plot(out / "size_per_stage.png", names, [stages[n]["size_compressed_bytes"] / 1024 for n in names],
                 "Compressed size per stage", "KiB (zlib of safetensors)", value_format="{:.1f}"),
    ]
    layers = metrics.get("layers") or []
    if layers:
        paths.append(layer_sparsity_plot(out / "layer_sparsity.png", [r["name"] for r in layers],
                                         [r["sparsity"] for r in layers]))
    return paths


def demo_report_markdown(metrics: dict[str, Any], plots: list[Path]) -> str:
    """Render the demo's metrics as Markdown (summary, stage table, layer table, plots).

    Example:
        >>> m = {"dataset": "digits", "model": "convnet", "sparsity_requested": 0.5,
        ...      "sparsity_measured": 0.5, "seconds": 1.0, "stages": {"baseline": {"accuracy": 0.9}},
        ...      "layers": []}
        >>> "digits" in demo_report_markdown(m, [])
        True
    """
    stages = metrics["stages"]
    header = ["stage"] + [c[0] for c in STAGE_COLUMNS]
    lines = [
        "# prunekit demo report",
        "",
        f"- dataset: **{metrics['dataset']}**, model: **{metrics['model']}**, seed {metrics.get('seed', 0)}",
        f"- sparsity requested {metrics['sparsity_requested']:.3f}, measured "
        f"{metrics['sparsity_measured']:.4f} (over the pruned conv/linear weights)",
        f"- total time {metrics['seconds']:.1f} s",
    ]
    if "baseline" in stages and "finetuned" in stages:
        b, f = stages["baseline"], stages["finetuned"]
        lines.append(
            f"- accuracy {100 * b['accuracy']:.2f}% -> {100 * f['accuracy']:.2f}% "
            f"({100 * (f['accuracy'] - b['accuracy']):+.2f} points); compressed size "
            f"{format_value(b.get('size_compressed_bytes'), 'bytes')} -> "
            f"{format_value(f.get('size_compressed_bytes'), 'bytes')}"
        )
    lines += ["", "## Stages", "", markdown_table(header, stage_rows(stages)), ""]
    lines += [
        "`size` is the dense safetensors file; `compressed` is that file through zlib. Masks keep "
        "shapes, so dense MACs and latency do not change with unstructured sparsity; `sparse MACs` "
        "counts only non-zero weights (what sparse kernels could skip).",
        "",
    ]
    layers = metrics.get("layers") or []
    if layers:
        lines += ["## Layers (final model)", "", markdown_table(LAYER_HEADER, layer_rows(layers)), ""]
    if plots:
        lines += ["## Plots", ""] + [f"![{p.stem}]({p.name})" for p in plots] + [""]
    return "\n".join(lines)


def write_demo_report(metrics: dict[str, Any], out_dir: str | Path) -> Path:
    """Write plots and ``report.md`` into ``out_dir``; return the report's path."""
    plots = write_stage_plots(metrics, out_dir)
    return atomic_write_text(Path(out_dir) / "report.md", demo_report_markdown(metrics, plots))
