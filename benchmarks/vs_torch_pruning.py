"""prunekit vs Torch-Pruning at equal MACs: CPU latency speedup (batch 1 and 8) and
prune seconds, measured side by side in one run.

For each model, Torch-Pruning prunes at ``--ratio`` (uniform, L2 group magnitude); its
MACs fraction becomes prunekit's ``target_macs`` (prunekit searches the ratio, with
``round_to=8``), so prunekit has at most Torch-Pruning's MACs. prunekit uses its
latency-aware allocation (``allocation="latency"``, profiled at ``--latency-batch``);
``prunekit_uniform`` is prunekit with the uniform allocation, for reference. The dense
model and all pruned models are timed alternately (median of ``--runs``, fixed threads).
MACs include attention (``prunekit.metrics.count_macs``). The last line is JSON::

    {"models": {"resnet18": {"macs_reduction": R, "prunekit": {"speedup_b1": S,
     "speedup_b8": S, "prune_s": T, "macs_reduction": R}, "torch_pruning": {...}}, ...}}

    PYTHONPATH=. python benchmarks/vs_torch_pruning.py [--models resnet18] [--threads 1]
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time

import torch
from torch import nn

MODELS = ("resnet18", "resnet50", "mobilenet_v2", "vit_b_16")


def prune_torch_pruning(model: nn.Module, x: torch.Tensor, ratio: float) -> float:
    import torch_pruning as tp
    import torchvision

    ignored = [m for m in model.modules() if isinstance(m, nn.Linear) and m.out_features == 1000]
    num_heads = {m: m.num_heads for m in model.modules() if isinstance(m, nn.MultiheadAttention)}
    kwargs = {}
    if isinstance(model, torchvision.models.VisionTransformer):
        kwargs["unwrapped_parameters"] = [(model.class_token, 2), (model.encoder.pos_embedding, 2)]
    start = time.perf_counter()
    pruner = tp.pruner.MetaPruner(
        model, x, importance=tp.importance.GroupMagnitudeImportance(p=2), pruning_ratio=ratio,
        ignored_layers=ignored, num_heads=num_heads, **kwargs,
    )
    pruner.step()
    if isinstance(model, torchvision.models.VisionTransformer):
        model.hidden_dim = model.conv_proj.out_channels
        for m in model.modules():
            if isinstance(m, nn.MultiheadAttention):
                m.embed_dim = m.out_proj.in_features
                m.head_dim = m.embed_dim // m.num_heads
                m.kdim = m.vdim = m.embed_dim
    return time.perf_counter() - start


def prune_prunekit(model: nn.Module, x: torch.Tensor, target_macs: float, round_to: int,
                   allocation: str, latency_batch: int) -> float:
    from prunekit.structured import StructuredConfig, prune_channels_

    start = time.perf_counter()
    prune_channels_(model, x, StructuredConfig(target_macs=target_macs, round_to=round_to,
                                               max_ratio=0.9, allocation=allocation,
                                               latency_batch=latency_batch))
    return time.perf_counter() - start


def compare(name: str, ratio: float, runs: int, size: int, round_to: int,
            latency_batch: int) -> dict:
    import torchvision

    from prunekit.metrics import count_macs
    from prunekit.structured.targets import batch_of, interleaved_latency

    torch.manual_seed(0)
    dense = torchvision.models.get_model(name, weights=None).eval()
    side = 224 if name.startswith("vit") else size
    x = torch.randn(1, 3, side, side)
    macs0 = count_macs(dense, x)
    tp_model = copy.deepcopy(dense)
    tp_s = prune_torch_pruning(tp_model, x, ratio)
    tp_model.eval()
    macs_tp = count_macs(tp_model, x)
    pruned = {}
    for key, allocation in (("prunekit", "latency"), ("prunekit_uniform", "uniform")):
        m = copy.deepcopy(dense)
        secs = prune_prunekit(m, x, macs_tp / macs0, round_to, allocation, latency_batch)
        pruned[key] = (m.eval(), secs, count_macs(m, x))
    row = {"macs_reduction": round(macs0 / macs_tp, 3), "input": side}
    models = [dense, tp_model, pruned["prunekit"][0], pruned["prunekit_uniform"][0]]
    lat = {}
    for b in (1, 8):
        model_runs = runs if b == 1 or not name.startswith("vit") else max(4, runs // 3)
        lat[b] = interleaved_latency(models, batch_of(x, b), runs=model_runs, warmup=2)
    row["dense_ms"] = {"b1": round(lat[1][0], 2), "b8": round(lat[8][0], 2)}
    for key, i, secs, macs in (("torch_pruning", 1, tp_s, macs_tp),
                               ("prunekit", 2, *pruned["prunekit"][1:]),
                               ("prunekit_uniform", 3, *pruned["prunekit_uniform"][1:])):
        row[key] = {
            "speedup_b1": round(lat[1][0] / lat[1][i], 3),
            "speedup_b8": round(lat[8][0] / lat[8][i], 3),
            "prune_s": round(secs, 2),
            "macs_reduction": round(macs0 / macs, 3),
        }
    for key in ("prunekit", "prunekit_uniform", "torch_pruning"):
        row[key]["b8_speedup_over_macs_reduction"] = round(
            row[key]["speedup_b8"] / row["macs_reduction"], 3)
    row["prunekit_over_torch_pruning_b8"] = round(
        row["prunekit"]["speedup_b8"] / row["torch_pruning"]["speedup_b8"], 3)
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--ratio", type=float, default=0.5, help="Torch-Pruning ratio")
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--size", type=int, default=224, help="image side for CNNs")
    parser.add_argument("--round-to", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--latency-batch", type=int, default=8,
                        help="batch prunekit's latency-aware allocation is profiled at")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    out = {"threads": args.threads, "ratio": args.ratio, "models": {}}
    for name in args.models.split(","):
        try:
            out["models"][name] = compare(name, args.ratio, args.runs, args.size, args.round_to,
                                         args.latency_batch)
        except Exception as exc:  # report and continue with the next model
            out["models"][name] = {"error": f"{type(exc).__name__}: {exc}"[:300]}
        print(json.dumps({name: out["models"][name]}), flush=True)
    print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
