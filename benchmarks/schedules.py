"""Benchmark: when to prune — accuracy vs sparsity on Fashion-MNIST.

Methods (all unstructured, global magnitude unless stated), at 90% and 95% sparsity:
  oneshot    dense model (P epochs) -> prune once -> fine-tune F epochs
  iterative  dense model -> 3 geometric rounds at 0, 1/4 and 1/2 of F fine-tuning epochs
  gradual    one training run of P + F epochs from scratch; cubic schedule from 1/6 to
             3/5 of the steps (Zhu & Gupta), then recovery
  rigl       sparse from scratch (ERK), RigL prune-and-regrow, P + F epochs
  snip       SNIP at initialisation, then P + F epochs
  lth_rewind lottery ticket: IMP rounds 60/80/90/95%, rewinding to iteration k, P epochs each
  lth_reinit the same masks with a random re-initialisation, P epochs

So oneshot, iterative, gradual, rigl and snip all get the same total epochs (P + F,
counting the shared dense pre-training of oneshot/iterative); each lottery-ticket round
trains P epochs; the dense reference is the model after P epochs.

Models: LeNet-300-100 (28x28 inputs) on a fixed 30k subset of the training set; a small
conv net (SmallConvNet, widths 8/16, hidden 64) on 14x14 average-pooled images, 20k
subset. Accuracy is on the full 10k test set. 3 seeds each; jobs run in parallel worker
processes with one thread each. Writes ``schedules.json`` and ``schedules.png`` to
``--out`` and prints the summary as the last line (JSON).

Usage:
    PYTHONPATH=. python benchmarks/schedules.py [--seeds 3] [--workers 2] [--quick]
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import multiprocessing as mp
import statistics
import sys
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader, TensorDataset

SPARSITIES = (0.9, 0.95)
METHODS = ("oneshot", "iterative", "gradual", "rigl", "snip", "lth_rewind", "lth_reinit")


def settings(quick: bool) -> dict:
    """Epoch budget per model (P = dense/pre-training epochs, F = fine-tuning epochs)."""
    if quick:
        return {
            "lenet": {"train_size": 6000, "P": 1, "F": 1},
            "conv": {"train_size": 3000, "P": 1, "F": 1},
        }
    return {
        "lenet": {"train_size": 30000, "P": 4, "F": 4},
        "conv": {"train_size": 20000, "P": 4, "F": 4},
    }


def build(kind: str, seed: int) -> torch.nn.Module:
    from prunekit.models import LeNet300100, SmallConvNet

    torch.manual_seed(seed)
    if kind == "lenet":
        return LeNet300100(784, 10)
    return SmallConvNet(1, 10, 14, widths=(8, 16), hidden=64)


def prepare(kind: str, images: torch.Tensor) -> torch.Tensor:
    """LeNet sees 28x28 images; the conv net sees them average-pooled to 14x14 (4x cheaper)."""
    return images if kind == "lenet" else torch.nn.functional.avg_pool2d(images, 2)


def run_job(kind: str, seed: int, quick: bool) -> dict:
    """Train every method for one (model, seed); return accuracies and timings."""
    torch.set_num_threads(1)
    from prunekit.data import load_dataset
    from prunekit.dynamic import DynamicConfig, DynamicSparsity
    from prunekit.importance.snip import snip_prune_
    from prunekit.lottery import LotteryConfig, Ticket, apply_ticket_, find_ticket, reinit_
    from prunekit.masks import SparsifyConfig, masked_tensors, sparsify_
    from prunekit.schedules import Gradual, Iterative, SchedulePruner
    from prunekit.train import TrainConfig, evaluate, fit

    cfg = settings(quick)[kind]
    ds = load_dataset("fashion-mnist")
    gen = torch.Generator().manual_seed(1234)
    idx = torch.randperm(len(ds.train), generator=gen)[: cfg["train_size"]]
    train = TensorDataset(prepare(kind, ds.train.tensors[0][idx]), ds.train.tensors[1][idx])
    test = TensorDataset(prepare(kind, ds.test.tensors[0]), ds.test.tensors[1])
    bs = 256
    steps_per_epoch = math.ceil(len(train) / bs)
    P, F = cfg["P"], cfg["F"]
    pre = TrainConfig(epochs=P, lr=2e-3, batch_size=bs, seed=seed)
    tune = TrainConfig(epochs=F, lr=1e-3, batch_size=bs, seed=seed)
    scratch = TrainConfig(epochs=P + F, lr=2e-3, batch_size=bs, seed=seed)
    acc = lambda m: evaluate(m, test)["accuracy"]  # noqa: E731
    out: dict = {"kind": kind, "seed": seed, "methods": {m: {} for m in METHODS}, "seconds": {}}

    cpu0 = time.process_time()
    t0 = time.time()
    dense = build(kind, seed)
    fit(dense, train, pre, progress=False)
    out["dense"] = acc(dense)
    out["seconds"]["dense"] = time.time() - t0

    for s in SPARSITIES:
        key = str(s)
        t0 = time.time()
        m = copy.deepcopy(dense)
        sparsify_(m, SparsifyConfig(amount=s))
        fit(m, train, tune, progress=False)
        out["methods"]["oneshot"][key] = acc(m)

        m = copy.deepcopy(dense)
        total = F * steps_per_epoch
        pruner = SchedulePruner(m, Iterative(final_sparsity=s, rounds=3, steps_per_round=max(1, total // 4)))
        pruner.prune_now()
        fit(m, train, tune, on_step=pruner.step, progress=False)
        out["methods"]["iterative"][key] = acc(m)

        out["seconds"][f"finetune_methods_{key}"] = time.time() - t0

        t0 = time.time()
        m = build(kind, seed)
        total = (P + F) * steps_per_epoch
        start, end = total // 6, (3 * total) // 5
        pruner = SchedulePruner(m, Gradual(start_step=start, end_step=end,
                                           frequency=max(1, (end - start) // 30), final_sparsity=s))
        fit(m, train, scratch, on_step=pruner.step, progress=False)
        out["methods"]["gradual"][key] = acc(m)

        m = build(kind, seed)
        dyn = DynamicSparsity(m, DynamicConfig(sparsity=s, method="rigl", update_every=max(1, steps_per_epoch // 2),
                                               alpha=0.3, end_step=max(2, (3 * total) // 4), seed=seed))
        fit(m, train, scratch, on_step=dyn.step, progress=False)
        dyn.remove()
        out["methods"]["rigl"][key] = acc(m)

        m = build(kind, seed)
        loader = DataLoader(train, batch_size=bs, shuffle=True, generator=torch.Generator().manual_seed(seed))
        batches = [b for _, b in zip(range(8), loader)]
        snip_prune_(m, batches, s)
        fit(m, train, scratch, progress=False)
        out["methods"]["snip"][key] = acc(m)
        out["seconds"][f"scratch_methods_{key}"] = time.time() - t0

    t0 = time.time()
    masks_at: dict[float, dict] = {}

    def on_round(index: int, sparsity: float, model: torch.nn.Module) -> dict:
        if round(sparsity, 4) in SPARSITIES:
            masks_at[round(sparsity, 4)] = {q: mk.clone() for q, _, _, mk in masked_tensors(model)}
            out["methods"]["lth_rewind"][str(round(sparsity, 4))] = acc(model)
        return {}

    lottery = LotteryConfig(final_sparsity=0.95, sparsities=(0.6, 0.8, 0.9, 0.95),
                            rewind_step=max(1, steps_per_epoch // 2))
    ticket = find_ticket(build(kind, seed), train, pre, lottery, on_round=on_round)
    out["seconds"]["lth_rewind"] = time.time() - t0
    t0 = time.time()
    for s in SPARSITIES:
        m = build(kind, seed)
        apply_ticket_(m, Ticket(rewind_state=ticket.rewind_state, masks=masks_at[s]))
        reinit_(m, seed + 1000)
        fit(m, train, pre, progress=False)
        out["methods"]["lth_reinit"][str(s)] = acc(m)
    out["seconds"]["lth_reinit"] = time.time() - t0
    out["cpu_seconds"] = time.process_time() - cpu0
    wall = sum(out["seconds"].values())
    print(f"[schedules] {kind} seed {seed}: dense {out['dense']:.4f}, {wall:.0f}s wall, {out['cpu_seconds']:.0f}s cpu",
          file=sys.stderr, flush=True)
    return out


def summarise(jobs: list[dict], kind: str) -> dict:
    rows = [j for j in jobs if j["kind"] == kind]

    def ms(values: list[float]) -> dict:
        return {"mean": round(statistics.mean(values), 4),
                "std": round(statistics.stdev(values), 4) if len(values) > 1 else 0.0}

    methods = {}
    for method in METHODS:
        keys = sorted({k for r in rows for k in r["methods"][method]})
        methods[method] = {k: ms([r["methods"][method][k] for r in rows]) for k in keys}
    return {"dense": ms([r["dense"] for r in rows]), "methods": methods}


def plot(summary: dict, path: Path) -> None:
    import io

    from matplotlib.figure import Figure

    from prunekit.io import atomic_write_bytes

    fig = Figure(figsize=(11, 4.2))
    axes = fig.subplots(1, 2)
    for ax, (title, block) in zip(axes, (("LeNet-300-100", summary), ("small conv net", summary["conv"]))):
        ax.axhline(block["dense"]["mean"] * 100, color="k", ls="--", label="dense")
        for method, per in block["methods"].items():
            xs = sorted(per, key=float)
            ax.errorbar([float(x) * 100 for x in xs], [per[x]["mean"] * 100 for x in xs],
                        yerr=[per[x]["std"] * 100 for x in xs], marker="o", capsize=3, label=method)
        ax.set_title(f"{title} on Fashion-MNIST")
        ax.set_xlabel("sparsity (% of weights pruned)")
        ax.set_ylabel("test accuracy (%)")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=120)
    atomic_write_bytes(path, buf.getvalue())


def table(summary: dict) -> str:
    lines = []
    for title, block in (("lenet", summary), ("conv", summary["conv"])):
        d = block["dense"]
        lines.append(f"{title}: dense {d['mean'] * 100:.2f} ± {d['std'] * 100:.2f}")
        for method, per in block["methods"].items():
            cells = "  ".join(f"{k}: {v['mean'] * 100:.2f} ± {v['std'] * 100:.2f}" for k, v in per.items())
            lines.append(f"  {method:<11} {cells}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--models", default="lenet,conv")
    parser.add_argument("--quick", action="store_true", help="tiny budget, for a smoke test")
    parser.add_argument("--out", default="benchmarks/results/schedules")
    args = parser.parse_args(argv)
    kinds = [k for k in args.models.split(",") if k]
    tasks = [(k, s, args.quick) for k in kinds for s in range(args.seeds)]
    start = time.time()
    if args.workers > 1:
        with mp.get_context("spawn").Pool(args.workers) as pool:
            jobs = pool.starmap(run_job, tasks, chunksize=1)
    else:
        jobs = [run_job(*t) for t in tasks]
    wall = time.time() - start
    summary = summarise(jobs, "lenet") if "lenet" in kinds else {"dense": {}, "methods": {}}
    summary["conv"] = summarise(jobs, "conv") if "conv" in kinds else {"dense": {}, "methods": {}}
    out = Path(args.out)
    from prunekit.io import atomic_write_json

    atomic_write_json(out / "schedules.json", {"summary": summary, "jobs": jobs, "wall_seconds": wall,
                                               "settings": settings(args.quick)})
    if "lenet" in kinds and "conv" in kinds:
        plot(summary, out / "schedules.png")
    print(table(summary), file=sys.stderr)
    print(f"[schedules] wall time {wall:.0f}s with {args.workers} workers", file=sys.stderr)
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
