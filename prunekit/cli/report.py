"""``prunekit report DIR``: report.md, PNG plots and a self-contained report.html of a run."""

from __future__ import annotations

import argparse

from prunekit.report.html import write_run_html
from prunekit.report.run_report import load_run, write_run_report


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "report",
        help="write report.md, plots and report.html for a 'prunekit run' folder",
        description="Summarise a recipe run: metric per stage, size per stage, per-layer sparsity, "
        "export results; writes report.md, *.png and a self-contained report.html into DIR.",
    )
    p.add_argument("dir", help="the run folder given to 'prunekit run --out'")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    report, plots = write_run_report(args.dir)
    page = write_run_html(load_run(args.dir), plots, args.dir)
    print(f"wrote {report}, {page} and {len(plots)} plot(s) in {args.dir}")
    return 0
