"""``prunekit sensitivity``: per-layer sensitivity curves, a PNG plot, and per-layer
sparsities meeting a global target.

Example:
    prunekit sensitivity --model lenet300100 --dataset digits --epochs 3 \\
        --sparsities 0.5,0.7,0.9,0.95 --target 0.8 --out sens/
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from prunekit.errors import ConfigError


def _fractions(text: str) -> list[float]:
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected comma-separated fractions like 0.5,0.9, got {text!r}") from exc


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "sensitivity",
        help="per-layer sensitivity curves, plot, and per-layer sparsities for a global target",
        description="Prune each layer alone to rising sparsities, measure test accuracy, plot the "
        "curves, and allocate per-layer sparsities that meet --target.",
    )
    p.add_argument("--model", default="lenet300100", choices=["lenet300100", "convnet"])
    p.add_argument("--dataset", default="digits", choices=["digits", "mnist5k", "fashion-mnist"])
    p.add_argument("--weights", default=None,
                   help="safetensors file of the trained model (from prunekit.masks.save_masked or "
                   "save_tensors of a state_dict); without it the model is trained for --epochs")
    p.add_argument("--epochs", type=int, default=3, help="training epochs when --weights is not given")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--sparsities", type=_fractions, default=[0.3, 0.5, 0.7, 0.8, 0.9, 0.95])
    p.add_argument("--target", type=float, default=None, help="global sparsity to allocate, e.g. 0.8")
    p.add_argument("--max-eval", type=int, default=2000, help="test examples used per measurement")
    p.add_argument("--out", default="sensitivity", help="output folder (JSON + PNG)")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch
    from torch.utils.data import TensorDataset

    from prunekit.config.base import check_fraction, check_positive_int
    from prunekit.data import load_dataset
    from prunekit.io import atomic_write_json
    from prunekit.masks import load_masked
    from prunekit.models import build_model
    from prunekit.sensitivity import allocate_sparsities, plot_sensitivity, sensitivity_curves
    from prunekit.train import TrainConfig, evaluate, fit, seed_everything

    check_positive_int("--epochs", args.epochs, allow_zero=True)
    check_positive_int("--max-eval", args.max_eval)
    if args.target is not None:
        check_fraction("--target", args.target)
    if not args.sparsities or any(b <= a for a, b in zip(args.sparsities, args.sparsities[1:])):
        raise ConfigError(f"--sparsities must be increasing fractions, got {args.sparsities}")
    for s in args.sparsities:
        check_fraction("--sparsities", s)
    weights = Path(args.weights) if args.weights else None
    if weights is not None and not weights.is_file():
        raise ConfigError(f"--weights: no such file {weights}")

    seed_everything(args.seed)
    ds = load_dataset(args.dataset)
    model = build_model(args.model, ds.input_shape, ds.num_classes)
    if weights is not None:
        load_masked(model, weights)
    else:
        fit(model, ds.train, TrainConfig(epochs=args.epochs, seed=args.seed), progress=not args.no_progress)
    x, y = ds.test.tensors
    n = min(args.max_eval, len(y))
    subset = TensorDataset(x[:n], y[:n])
    model.eval()
    with torch.no_grad():
        curves = sensitivity_curves(
            model, lambda m: evaluate(m, subset)["accuracy"], args.sparsities, progress=not args.no_progress
        )
    allocation = allocate_sparsities(curves, args.target) if args.target is not None else None
    out = Path(args.out)
    curves.meta = {"model": args.model, "dataset": args.dataset, "metric": "accuracy", "eval_examples": n}
    atomic_write_json(out / "sensitivity.json", {"curves": curves.to_dict(), "target": args.target,
                                                  "allocation": allocation})
    plot_sensitivity(curves, out / "sensitivity.png", "test accuracy", allocation)
    _print_table(curves, allocation)
    print(f"wrote {out / 'sensitivity.json'} and {out / 'sensitivity.png'}", file=sys.stderr)
    return 0


def _print_table(curves, allocation) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"accuracy with one layer pruned (unpruned {curves.baseline:.4f})")
    table.add_column("layer")
    table.add_column("weights", justify="right")
    for s in curves.sparsities:
        table.add_column(f"{s:.0%}", justify="right")
    if allocation is not None:
        table.add_column("allocated", justify="right")
    for name, values in curves.metrics.items():
        row = [name, str(curves.sizes[name])] + [f"{v:.4f}" for v in values]
        if allocation is not None:
            row.append(f"{allocation[name]:.3f}")
        table.add_row(*row)
    Console().print(table)
