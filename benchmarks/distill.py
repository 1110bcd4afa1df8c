"""Distillation vs plain fine-tuning to recover a 50%-channel-pruned SmallConvNet (Fashion-MNIST).

    PYTHONPATH=. python benchmarks/distill.py [--seeds 0,1,2] [--threads 1]

Per seed: train the dense SmallConvNet (widths 32, 64) as the teacher; build the student
by keeping, in each conv layer, the half of the filters with the largest L1 norm (weights,
BatchNorm and the next layer's inputs copied over: a real half-width dense net); then
recover the student twice from the same start with the same budget (epochs, optimizer,
learning rate, batch order): plain cross-entropy fine-tuning, and knowledge distillation
from the teacher (KL at temperature T mixed with cross-entropy). ``--with-features`` adds
a third arm that also matches the last conv block's features through a 1x1 projection.

The last line printed is JSON with the per-seed and mean test accuracies of each arm.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import time
from pathlib import Path

import torch
from torch.utils.data import TensorDataset

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from prunekit.data import load_dataset  # noqa: E402
from prunekit.distill import DistillConfig, distill  # noqa: E402
from prunekit.metrics import count_params, evaluate  # noqa: E402
from prunekit.models import SmallConvNet  # noqa: E402
from prunekit.train import TrainConfig, fit, seed_everything  # noqa: E402


def _top_filters(weight: torch.Tensor, n_keep: int) -> torch.Tensor:
    """Indices (sorted) of the ``n_keep`` output filters with the largest L1 norm."""
    return weight.detach().abs().flatten(1).sum(1).argsort(descending=True)[:n_keep].sort().values


def half_channels(model: SmallConvNet, image_size: int = 28) -> SmallConvNet:
    """A SmallConvNet with half the channels of ``model`` in every conv block (L1 filter
    selection), weights copied; the classifier's hidden width is kept."""
    convs = [m for m in model.features if isinstance(m, torch.nn.Conv2d)]
    bns = [m for m in model.features if isinstance(m, torch.nn.BatchNorm2d)]
    widths = tuple(c.out_channels // 2 for c in convs)
    fc1, fc2 = model.classifier[1], model.classifier[3]
    student = SmallConvNet(convs[0].in_channels, fc2.out_features, image_size, widths, fc1.out_features)
    s_convs = [m for m in student.features if isinstance(m, torch.nn.Conv2d)]
    s_bns = [m for m in student.features if isinstance(m, torch.nn.BatchNorm2d)]
    prev = torch.arange(convs[0].in_channels)
    with torch.no_grad():
        for conv, bn, s_conv, s_bn, width in zip(convs, bns, s_convs, s_bns, widths, strict=True):
            keep = _top_filters(conv.weight, width)
            s_conv.weight.copy_(conv.weight[keep][:, prev])
            for name in ("weight", "bias", "running_mean", "running_var"):
                getattr(s_bn, name).copy_(getattr(bn, name)[keep])
            prev = keep
        spatial = fc1.in_features // convs[-1].out_channels
        w = fc1.weight.view(fc1.out_features, convs[-1].out_channels, spatial)
        student.classifier[1].weight.copy_(w[:, prev].reshape(fc1.out_features, -1))
        student.classifier[1].bias.copy_(fc1.bias)
        student.classifier[3].load_state_dict(fc2.state_dict())
    return student


def _subset(data: TensorDataset, n: int, seed: int) -> TensorDataset:
    if n <= 0 or n >= len(data):
        return data
    order = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed))[:n]
    return TensorDataset(*(t[order] for t in data.tensors))


def run_seed(seed: int, data, args) -> dict:
    train = _subset(data.train, args.train_subset, seed)
    seed_everything(seed)
    teacher = SmallConvNet(1, data.num_classes, 28)
    fit(
        teacher,
        train,
        TrainConfig(epochs=args.teacher_epochs, lr=2e-3, batch_size=128, seed=seed),
        description="teacher",
    )
    student = half_channels(teacher)
    print(f"seed {seed}: teacher trained", flush=True)
    out = {
        "seed": seed,
        "teacher": evaluate(teacher, data.test)["accuracy"],
        "pruned_before_recovery": evaluate(student, data.test)["accuracy"],
        "params_teacher": count_params(teacher),
        "params_student": count_params(student),
    }
    recovery = TrainConfig(epochs=args.recovery_epochs, lr=args.lr, batch_size=128, seed=seed + 100)
    arms = {"finetune": None, "distill": DistillConfig(temperature=args.temperature, alpha=args.alpha)}
    if args.with_features:
        arms["distill_features"] = DistillConfig(
            temperature=args.temperature, alpha=args.alpha, features=[["features.6", "features.6"]], feature_weight=1.0
        )
    for arm, cfg in arms.items():
        model = copy.deepcopy(student)
        seed_everything(seed + 100)
        start = time.perf_counter()
        if cfg is None:
            fit(model, train, recovery, description=arm)
        else:
            distill(model, teacher, train, recovery, cfg)
        out[arm] = evaluate(model, data.test)["accuracy"]
        out[f"{arm}_seconds"] = round(time.perf_counter() - start, 1)
    print(json.dumps(out), flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--train-subset", type=int, default=8000, help="training images per seed (0 = all 60,000)")
    parser.add_argument("--teacher-epochs", type=int, default=4)
    parser.add_argument("--recovery-epochs", type=int, default=2)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--temperature", type=float, default=4.0)
    parser.add_argument("--alpha", type=float, default=0.9)
    parser.add_argument("--with-features", action="store_true", help="add the hidden-feature distillation arm")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    data = load_dataset("fashion-mnist")
    runs = [run_seed(int(s), data, args) for s in args.seeds.split(",")]
    arms = [a for a in ("finetune", "distill", "distill_features") if a in runs[0]]
    means = {a: round(statistics.mean(r[a] for r in runs), 4) for a in arms}
    result = {
        "benchmark": "distill_vs_finetune",
        "dataset": "fashion-mnist",
        "model": "SmallConvNet(32,64) -> 50% channels (16,32)",
        "train_subset": args.train_subset or len(data.train),
        "teacher_epochs": args.teacher_epochs,
        "recovery_epochs": args.recovery_epochs,
        "temperature": args.temperature,
        "alpha": args.alpha,
        "seeds": [r["seed"] for r in runs],
        "teacher_mean": round(statistics.mean(r["teacher"] for r in runs), 4),
        "pruned_before_recovery_mean": round(statistics.mean(r["pruned_before_recovery"] for r in runs), 4),
        **{f"{a}_mean": m for a, m in means.items()},
        **{f"{a}_per_seed": [round(r[a], 4) for r in runs] for a in arms},
        "distill_minus_finetune_points": round(100 * (means["distill"] - means["finetune"]), 2),
        "distill_wins": means["distill"] > means["finetune"],
        "seconds": round(time.perf_counter() - start, 1),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
