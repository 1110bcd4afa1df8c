"""Structured pruning of every torchvision classification model at ratio 0.5.

Each model runs in its own subprocess with a time limit and an address-space limit.
Per model it prints one JSON line (params, MACs before/after, prune seconds, output
shape); the last line is ``{"ok": N, "total": M, "failed": [...]}``. A model is ok when
it prunes, runs forward with its original output shape, has at least 2x fewer MACs and
took at most 10 s to prune.

    PYTHONPATH=. python benchmarks/zoo.py [--models resnet18,vit_b_16] [--jobs 1]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

TIME_LIMIT_S = 10.0
MIN_MACS_REDUCTION = 2.0


def input_size(model, name: str) -> int:
    """Smallest input (of 32, 64, 96, 160, 224) the model runs on (ViT / MaxViT need 224)."""
    import torch

    if name.startswith(("vit_", "maxvit")):
        return 224
    for size in (32, 64, 96, 160, 224):
        try:
            with torch.no_grad():
                model(torch.zeros(1, 3, size, size))
            return size
        except Exception:
            continue
    return 224


def run_one(name: str) -> dict:
    import torch
    import torchvision

    from prunekit.metrics import count_macs, count_params
    from prunekit.structured import StructuredConfig, prune_channels_

    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = torchvision.models.get_model(name, weights=None).eval()
    size = input_size(model, name)
    x = torch.randn(1, 3, size, size)
    with torch.no_grad():
        shape_before = tuple(model(x).shape)
    params0, macs0 = count_params(model), count_macs(model, x)
    start = time.perf_counter()
    prune_channels_(model, x, StructuredConfig(ratio=0.5))
    seconds = time.perf_counter() - start
    with torch.no_grad():
        shape_after = tuple(model.eval()(x).shape)
    params1, macs1 = count_params(model), count_macs(model, x)
    reduction = macs0 / max(macs1, 1)
    problems = []
    if shape_after != shape_before:
        problems.append(f"output shape {shape_after} != {shape_before}")
    if reduction < MIN_MACS_REDUCTION:
        problems.append(f"MACs reduced only {reduction:.2f}x")
    if seconds > TIME_LIMIT_S:
        problems.append(f"pruning took {seconds:.1f}s")
    return {
        "model": name,
        "ok": not problems,
        "input": size,
        "params_before": params0,
        "params_after": params1,
        "macs_before": macs0,
        "macs_after": macs1,
        "macs_reduction": round(reduction, 3),
        "prune_s": round(seconds, 3),
        "output_shape": list(shape_after),
        "problems": problems,
    }


def _limit_memory(gigabytes: float) -> None:
    limit = int(gigabytes * (1 << 30))
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="", help="comma-separated subset")
    parser.add_argument("--timeout", type=float, default=180.0, help="seconds per model process")
    parser.add_argument("--memory-gb", type=float, default=16.0, help="address-space limit")
    parser.add_argument("--one", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        try:
            print(json.dumps(run_one(args.one)), flush=True)
        except Exception as exc:  # reported by the parent as a failure
            msg = f"{type(exc).__name__}: {exc}".splitlines()[0][:400]
            print(json.dumps({"model": args.one, "ok": False, "problems": [msg]}), flush=True)
        return 0

    import torchvision

    names = args.models.split(",") if args.models else torchvision.models.list_models(
        module=torchvision.models
    )
    ok, failed = 0, []
    env = dict(os.environ, OMP_NUM_THREADS="1")
    for name in names:
        start = time.perf_counter()
        try:
            proc = subprocess.run(
                [sys.executable, __file__, "--one", name],
                capture_output=True, text=True, timeout=args.timeout, env=env,
                preexec_fn=lambda: _limit_memory(args.memory_gb),
            )
            lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
            row = json.loads(lines[-1]) if lines else {
                "model": name, "ok": False,
                "problems": [f"exit {proc.returncode}: {proc.stderr.strip().splitlines()[-1:]}"],
            }
        except subprocess.TimeoutExpired:
            row = {"model": name, "ok": False, "problems": [f"timeout {args.timeout}s"]}
        row["wall_s"] = round(time.perf_counter() - start, 1)
        print(json.dumps(row), flush=True)
        if row.get("ok"):
            ok += 1
        else:
            failed.append(name)
    print(json.dumps({"ok": ok, "total": len(names), "failed": failed}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
