"""``prunekit run RECIPE --out DIR``: run a YAML recipe, checkpointing every stage; run it
again on the same DIR after a crash to resume from the last finished stage."""

from __future__ import annotations

import argparse
from typing import Any

from prunekit.cli.args import positive_int
from prunekit.recipes.runner import run_recipe
from prunekit.recipes.schema import load_recipe
from prunekit.report.table import format_value, print_table

#: (title, key in a stage's metrics, format) of the end-of-run table
RUN_COLUMNS = (
    ("accuracy", "accuracy", "pct"),
    ("non-zero", "nonzero", "int"),
    ("sparsity", "sparsity", "pct"),
    ("size", "size_bytes", "bytes"),
    ("compact", "compact_bytes", "bytes"),
)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "run",
        help="run a YAML recipe of stages (train, distill, prune, finetune, quantize, export, evaluate)",
        description="Run a recipe; each finished stage is checkpointed in DIR/stages, and running "
        "again on the same DIR resumes after the last finished stage.",
    )
    p.add_argument("recipe", help="the recipe YAML file (see recipes/ for examples)")
    p.add_argument("--out", required=True, help="run folder (created; resumed when it holds finished stages)")
    p.add_argument("--restart", action="store_true", help="discard the folder's finished stages and start over")
    p.add_argument(
        "--threads",
        type=positive_int,
        default=None,
        help="torch CPU threads for the whole run (default: torch's choice)",
    )
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.set_defaults(func=run)


def stage_table_rows(summary: dict[str, Any]) -> list[list[str]]:
    """One row of formatted cells per stage of a run summary."""
    rows = []
    for sid, state in summary["stages"].items():
        m = state["metrics"]
        rows.append([sid] + [format_value(m.get(key), kind) for _, key, kind in RUN_COLUMNS])
    return rows


def run(args: argparse.Namespace) -> int:
    recipe = load_recipe(args.recipe)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    summary = run_recipe(recipe, args.out, progress=not args.no_progress, restart=args.restart, log=print)
    print_table(f"prunekit run: {recipe.name}", ["stage"] + [c[0] for c in RUN_COLUMNS], stage_table_rows(summary))
    print(
        f"wrote {args.out}/metrics.json and a checkpoint per stage in {args.out}/stages; "
        f"make a report with: prunekit report {args.out}"
    )
    return 0
