"""Deep Compression on LeNet-300-100: prune + fine-tune + k-means weight sharing + zstd.

    PYTHONPATH=. python benchmarks/deep_compression.py [--dataset fashion-mnist] [--threads 1]

Steps: train the dense model; prune by global magnitude in steps (80% -> 90% -> final),
fine-tuning after each with the masks held; share the non-zero weights of each layer
through a k-means codebook (``--bits``); write the prunekit compact file (positions +
codes + codebooks, zstd); load that file into a fresh LeNet-300-100 and evaluate it.

The last line printed is JSON with ``compression_ratio`` (dense fp32 safetensors bytes /
compact file bytes), ``accuracy_dense`` and ``accuracy_compressed`` (the reloaded file).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from prunekit.data import load_dataset  # noqa: E402
from prunekit.export import CompactConfig, load_compact_into, save_compact  # noqa: E402
from prunekit.masks import SparsifyConfig, sparsify_  # noqa: E402
from prunekit.metrics import count_nonzero, evaluate, size_bytes  # noqa: E402
from prunekit.models import LeNet300100  # noqa: E402
from prunekit.quant import QuantizeConfig, quantize_  # noqa: E402
from prunekit.train import TrainConfig, fit, seed_everything  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="fashion-mnist", choices=["fashion-mnist", "mnist5k"])
    parser.add_argument("--epochs", type=int, default=12, help="dense training epochs")
    parser.add_argument("--steps", default="0.8,0.9,0.94", help="global sparsity after each prune step")
    parser.add_argument("--finetune-epochs", default="4,4,10", help="fine-tuning epochs after each step")
    parser.add_argument("--finetune-lr", type=float, default=1e-3, help="fine-tuning learning rate")
    parser.add_argument("--bits", type=int, default=5, help="codebook bits per layer")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest on a busy machine)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    steps = [float(s) for s in args.steps.split(",")]
    ft_epochs = [int(e) for e in args.finetune_epochs.split(",")]
    if len(steps) != len(ft_epochs):
        parser.error("--steps and --finetune-epochs need the same number of entries")

    data = load_dataset(args.dataset)
    seed_everything(args.seed)
    model = LeNet300100(784, data.num_classes)
    dense_bytes = size_bytes(model)
    fit(
        model, data.train, TrainConfig(epochs=args.epochs, lr=1e-3, batch_size=128, seed=args.seed), description="dense"
    )
    accuracy_dense = evaluate(model, data.test)["accuracy"]
    print(f"dense: accuracy {100 * accuracy_dense:.2f}%, {dense_bytes:,} B", flush=True)

    for i, (amount, epochs) in enumerate(zip(steps, ft_epochs, strict=True)):
        sparsify_(model, SparsifyConfig(amount=amount))
        fit(
            model,
            data.train,
            TrainConfig(epochs=epochs, lr=args.finetune_lr, batch_size=128, seed=args.seed + 1 + i),
            description=f"finetune {amount:g}",
        )
        acc = evaluate(model, data.test)["accuracy"]
        print(f"sparsity {amount:g}: accuracy {100 * acc:.2f}%, non-zero {count_nonzero(model):,}", flush=True)
    accuracy_pruned = evaluate(model, data.test)["accuracy"]

    record = quantize_(model, QuantizeConfig(scheme="codebook", bits=args.bits, seed=args.seed))
    accuracy_shared = evaluate(model, data.test)["accuracy"]
    with tempfile.TemporaryDirectory() as tmp:
        path = save_compact(model, Path(tmp) / "lenet.compact.safetensors", record, CompactConfig(codec="zstd"))
        compressed_bytes = path.stat().st_size
        reloaded = LeNet300100(784, data.num_classes)
        load_compact_into(reloaded, path)
    accuracy_compressed = evaluate(reloaded, data.test)["accuracy"]
    weights = sum(m.weight.numel() for m in reloaded.modules() if isinstance(m, torch.nn.Linear))
    nonzero_weights = sum(int((m.weight != 0).sum()) for m in reloaded.modules() if isinstance(m, torch.nn.Linear))
    result = {
        "benchmark": "deep_compression",
        "dataset": args.dataset,
        "model": "lenet300100",
        "weight_sparsity": round(1 - nonzero_weights / weights, 4),
        "codebook_bits": args.bits,
        "dense_bytes": dense_bytes,
        "compressed_bytes": compressed_bytes,
        "compression_ratio": round(dense_bytes / compressed_bytes, 2),
        "accuracy_dense": round(accuracy_dense, 4),
        "accuracy_pruned": round(accuracy_pruned, 4),
        "accuracy_shared": round(accuracy_shared, 4),
        "accuracy_compressed": round(accuracy_compressed, 4),
        "accuracy_loss_points": round(100 * (accuracy_dense - accuracy_compressed), 2),
        "seconds": round(time.perf_counter() - start, 1),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
