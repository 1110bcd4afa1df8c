"""A self-contained HTML report: Markdown-like content with the PNG plots embedded as
base64 data URIs and no external files, scripts or stylesheets."""

from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import Any

from prunekit.io.atomic import atomic_write_text
from prunekit.report.run_report import export_lines, stage_table
from prunekit.report.table import LAYER_HEADER, layer_rows

STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:1em 0;font-size:14px}th,td{border:1px solid #ccc;padding:4px 8px;text-align:right}
th:first-child,td:first-child{text-align:left}th{background:#f2f2f2}img{max-width:100%;margin:1em 0;display:block}
code{background:#f4f4f4;padding:1px 4px}
"""


def html_table(header: list[str], rows: list[list[str]]) -> str:
    """An HTML table with every cell escaped.

    Example:
        >>> html_table(["a"], [["<b>"]])
        '<table><tr><th>a</th></tr><tr><td>&lt;b&gt;</td></tr></table>'
    """
    head = "<tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in header) + "</tr>"
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table>{head}{body}</table>"


def embedded_png(path: Path) -> str:
    """An ``<img>`` whose source is the PNG itself (base64 data URI)."""
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img alt="{html.escape(path.stem)}" src="data:image/png;base64,{data}">'


def _inline_code(text: str) -> str:
    parts = html.escape(text.removeprefix("- ")).split("`")
    return "".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(parts)).replace("**", "")


def run_report_html(run: dict[str, Any], plots: list[Path]) -> str:
    """The run's report as one HTML page (tables, export results, plots embedded)."""
    names = list(run["stages"])
    last = run["stages"][names[-1]]["metrics"]
    header, rows = stage_table(run)
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'>",
        f"<title>prunekit run report: {html.escape(run['recipe'])}</title><style>{STYLE}</style></head><body>",
        f"<h1>prunekit run report: {html.escape(run['recipe'])}</h1>",
        "<h2>Stages</h2>",
        html_table(header, rows),
    ]
    exports = export_lines(run)
    if exports:
        parts += ["<h2>Export and evaluation</h2><ul>"] + [f"<li>{_inline_code(e)}</li>" for e in exports] + ["</ul>"]
    layers = last.get("layers") or []
    if layers:
        lrows = layer_rows(layers)
        parts += [
            f"<h2>Layers after {html.escape(names[-1])}</h2>",
            html_table(LAYER_HEADER, lrows),
        ]
    if plots:
        parts += ["<h2>Plots</h2>"] + [embedded_png(p) for p in plots]
    parts.append("</body></html>")
    return "\n".join(parts)


def write_run_html(run: dict[str, Any], plots: list[Path], out_dir: str | Path) -> Path:
    """Write ``report.html`` into ``out_dir``; return its path."""
    return atomic_write_text(Path(out_dir) / "report.html", run_report_html(run, plots))
