"""``report.md`` and PNG plots of a recipe run folder (``prunekit run`` output)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from prunekit.errors import ConfigError
from prunekit.io.atomic import atomic_write_text
from prunekit.report.plots import bar_plot, layer_sparsity_plot
from prunekit.report.table import LAYER_HEADER, format_value, layer_rows, markdown_table

#: (title, key in a stage's metrics, format) of the stage table
STAGE_TABLE = (
    ("accuracy", "accuracy", "pct"),
    ("loss", "loss", "float"),
    ("non-zero", "nonzero", "int"),
    ("sparsity", "sparsity", "pct"),
    ("size (fp32)", "size_bytes", "bytes"),
    ("compact", "compact_bytes", "bytes"),
    ("quantized", "quantized", "list"),
)


def load_run(run_dir: str | Path) -> dict[str, Any]:
    """Read every finished stage's ``state.json`` of a run folder, in stage order.

    Returns ``{"recipe": name, "dense_bytes": int | None, "stages": {id: state}}``.
    """
    root = Path(run_dir)
    stages_dir = root / "stages"
    if not stages_dir.is_dir():
        raise ConfigError(f"{root} is not a prunekit run folder (no 'stages' folder); make one with 'prunekit run'")
    states = {}
    for folder in sorted(p for p in stages_dir.iterdir() if p.is_dir() and not p.name.startswith(".")):
        state_file = folder / "state.json"
        if state_file.exists():
            states[folder.name] = json.loads(state_file.read_text())
    if not states:
        raise ConfigError(f"{root} has no finished stage yet")
    info = json.loads((root / "run.json").read_text()) if (root / "run.json").exists() else {}
    summary = json.loads((root / "metrics.json").read_text()) if (root / "metrics.json").exists() else {}
    return {"recipe": info.get("recipe_name", root.name), "dense_bytes": summary.get("dense_bytes"), "stages": states}


def _cell(value: Any, kind: str) -> str:
    if kind == "float":
        return "-" if value is None else f"{value:.4f}"
    if kind == "list":
        return ", ".join(value) if value else "-"
    return format_value(value, kind)


def stage_table(run: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the per-stage table (plus wall-clock seconds).

    Example:
        >>> run = {"stages": {"00-train": {"metrics": {"accuracy": 0.5}, "timing": {"seconds": 2.0}}}}
        >>> stage_table(run)[1][0][:2]
        ['00-train', '50.00%']
    """
    header = ["stage"] + [t for t, _, _ in STAGE_TABLE] + ["seconds"]
    rows = []
    for sid, state in run["stages"].items():
        m = state["metrics"]
        rows.append(
            [sid]
            + [_cell(m.get(k), kind) for _, k, kind in STAGE_TABLE]
            + [f"{state.get('timing', {}).get('seconds', 0.0):.1f}"]
        )
    return header, rows


def export_lines(run: dict[str, Any]) -> list[str]:
    """One Markdown bullet per export/evaluate result (compact file, ONNX check, latency)."""
    lines = []
    for sid, state in run["stages"].items():
        m, t = state["metrics"], state.get("timing", {})
        if "compact_file_bytes" in m:
            lines.append(
                f"- `{sid}`: compact file `{m['artifact']}` {format_value(m['compact_file_bytes'], 'bytes')}"
                f" ({m['compact_file_bytes']:,} B), compression ratio **{m['compression_ratio']:.1f}x** "
                f"vs dense fp32 safetensors; reloads exactly: {m['roundtrip_exact']}"
            )
        if "onnx_ok" in m:
            diff = t.get("onnx_max_abs_diff", 0.0)
            line = f"- `{sid}`: `{m['artifact']}` runs in onnxruntime, max |diff| vs PyTorch {diff:.2e}"
            if "ort_latency_ms_reference" in t:
                line += (
                    f"; ORT latency {t['ort_latency_ms_reference']:.3f} ms ({t['reference']}) -> "
                    f"{t['ort_latency_ms']:.3f} ms, speedup {t['ort_speedup']:.2f}x"
                )
            lines.append(line)
        if "macs" in m:
            lines.append(
                f"- `{sid}`: MACs {m['macs']:,} (non-zero weights only: {m['macs_sparse']:,}), "
                f"PyTorch latency {t.get('latency_ms', 0):.3f} ms"
            )
    return lines


def write_run_plots(run: dict[str, Any], out_dir: str | Path) -> list[Path]:
    """Write ``metric_per_stage.png``, ``size_per_stage.png`` and ``layer_sparsity.png``."""
    out = Path(out_dir)
    names = list(run["stages"])
    metrics = [run["stages"][n]["metrics"] for n in names]
    acc = [100 * m["accuracy"] for m in metrics]
    paths = [
        bar_plot(
            out / "metric_per_stage.png",
            names,
            acc,
            "Test accuracy after each stage",
            "accuracy (%)",
            ylim=(max(0.0, min(acc) - 5.0), 100.0),
            value_format="{:.2f}",
        ),
        bar_plot(
            out / "size_per_stage.png",
            names,
            [m["compact_bytes"] / 1024 for m in metrics],
            "Compact file size after each stage",
            "KiB (prunekit compact, zstd)",
            value_format="{:.1f}",
        ),
    ]
    layers = metrics[-1].get("layers") or []
    if layers:
        paths.append(
            layer_sparsity_plot(
                out / "layer_sparsity.png",
                [r["name"] for r in layers],
                [r["sparsity"] for r in layers],
                f"Sparsity per layer ({names[-1]})",
            )
        )
    return paths


def run_report_markdown(run: dict[str, Any], plots: list[Path]) -> str:
    """The run's report as Markdown."""
    names = list(run["stages"])
    first, last = run["stages"][names[0]]["metrics"], run["stages"][names[-1]]["metrics"]
    lines = [
        f"# prunekit run report: {run['recipe']}",
        "",
        f"- {len(names)} finished stage(s): {', '.join(names)}",
        f"- accuracy {100 * first['accuracy']:.2f}% after `{names[0]}` -> {100 * last['accuracy']:.2f}% "
        f"after `{names[-1]}`; non-zero parameters {first['nonzero']:,} -> {last['nonzero']:,}",
    ]
    if run.get("dense_bytes"):
        lines.append(
            f"- dense fp32 safetensors {run['dense_bytes']:,} B; compact file now {last['compact_bytes']:,} B "
            f"({run['dense_bytes'] / last['compact_bytes']:.1f}x smaller)"
        )
    header, rows = stage_table(run)
    lines += [
        "",
        "## Stages",
        "",
        markdown_table(header, rows),
        "",
        "`size (fp32)` is the dense safetensors file; `compact` is the prunekit compact format "
        "(sparse positions + values, int8/codebook when quantized, zstd).",
        "",
    ]
    exports = export_lines(run)
    if exports:
        lines += ["## Export and evaluation", "", *exports, ""]
    layers = last.get("layers") or []
    if layers:
        rows = layer_rows(layers)
        lines += [
            f"## Layers after `{names[-1]}`",
            "",
            markdown_table(LAYER_HEADER, rows),
            "",
        ]
    if plots:
        lines += ["## Plots", ""] + [f"![{p.stem}]({p.name})" for p in plots] + [""]
    return "\n".join(lines)


def write_run_report(run_dir: str | Path) -> tuple[Path, list[Path]]:
    """Write ``report.md`` and the plots into the run folder; return (report, plots)."""
    run = load_run(run_dir)
    plots = write_run_plots(run, run_dir)
    return atomic_write_text(Path(run_dir) / "report.md", run_report_markdown(run, plots)), plots
