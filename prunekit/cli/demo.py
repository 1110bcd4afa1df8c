"""``prunekit demo``: the whole train -> prune -> fine-tune -> compare workflow in one command."""

from __future__ import annotations

import argparse
from pathlib import Path

from prunekit.cli.args import fraction, non_negative_int, positive_int
from prunekit.cli.run_dir import output_dir
from prunekit.data.images import DATASETS
from prunekit.io.atomic import atomic_write_json
from prunekit.models.small import MODELS
from prunekit.report.markdown import write_demo_report
from prunekit.report.table import STAGE_COLUMNS, print_table, stage_rows
from prunekit.workflows.demo import DemoConfig, run_demo


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo",
        help="train a baseline, prune it, fine-tune, make permanent, compare (embedded digits data)",
        description="Run the classic pruning workflow end to end and write metrics.json, report.md and plots.",
    )
    p.add_argument("--out", help="output folder (default: a new folder under ./runs/)")
    p.add_argument("--dataset", default="digits", choices=sorted(DATASETS), help="dataset (default: digits)")
    p.add_argument("--sparsity", type=fraction, default=0.5, help="global sparsity in [0, 1) (default 0.5)")
    p.add_argument("--epochs", type=positive_int, default=None, help="baseline epochs (default: per dataset)")
    p.add_argument("--finetune-epochs", type=non_negative_int, default=None,
                   help="fine-tuning epochs (default: half the baseline epochs, at least 2)")
    p.add_argument("--model", default="convnet", choices=MODELS, help="model (default: convnet)")
    p.add_argument("--seed", type=non_negative_int, default=0, help="random seed (default 0)")
    p.add_argument("--threads", type=positive_int, default=1,
                   help="torch threads for training and latency (default 1: the models are tiny)")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    config = DemoConfig(
        dataset=args.dataset,
        sparsity=args.sparsity,
        epochs=args.epochs,
        finetune_epochs=args.finetune_epochs,
        model=args.model,
        seed=args.seed,
        threads=args.threads,
    )
    out = output_dir(args.out, "demo")
    metrics = run_demo(config, out_dir=out, progress=not args.no_progress)
    atomic_write_json(out / "metrics.json", metrics)
    report = write_demo_report(metrics, out)
    header = ["stage"] + [c[0] for c in STAGE_COLUMNS]
    print_table(
        f"prunekit demo: {config.dataset}, {config.model}, sparsity {config.sparsity:g} "
        f"(measured {metrics['sparsity_measured']:.4f}), {metrics['seconds']:.1f} s",
        header,
        stage_rows(metrics["stages"]),
    )
    print(f"wrote {out / 'metrics.json'}, {report}, plots and model.safetensors in {Path(out)}")
    return 0
