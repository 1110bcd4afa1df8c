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
import resource
import sys
import time

TIME_LIMIT_S = 10.0
MIN_MACS_REDUCTION = 2.0


def input_size(model, name: str) -> int:
    """Smallest input (of 32, 64, 96, 160, 224) the model runs on (ViT / MaxViT need 224)."""
    import torch

    if name.startswith(("vit_", "maxvit")):
        return 224
    from prunekit.graph.shapes import ShapeOnly

    for size in (32, 64, 96, 160, 224):
        try:
            with torch.no_grad(), ShapeOnly():
                model(torch.zeros(1, 3, size, size))
            return size
        except Exception:
            continue
    return 224


def run_one(name: str) -> dict:
    import torch
    import torchvision

    from prunekit.graph.shapes import ShapeOnly
    from prunekit.metrics import count_params
    from prunekit.metrics.macs import flop_counter
    from prunekit.structured import StructuredConfig, prune_channels_

    def count_macs(m, inp):  # same count as prunekit.metrics.count_macs; no arithmetic
        with torch.no_grad(), ShapeOnly(), flop_counter() as counter:
            m(inp)
        return int(counter.get_total_flops() // 2)

    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = torchvision.models.get_model(name, weights=None).eval()
    size = input_size(model, name)
    x = torch.randn(1, 3, size, size)
    with torch.no_grad(), ShapeOnly():
        shape_before = tuple(model(x).shape)
    params0, macs0 = count_params(model), count_macs(model, x)
    start = time.perf_counter()
    prune_channels_(model, x, StructuredConfig(ratio=0.5))
    seconds = time.perf_counter() - start
    with torch.no_grad():  # a real forward: the pruned model must run
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
    parser.add_argument("--jobs", type=int, default=1, help="models pruned at once")
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
    # a fork server: torch/torchvision/prunekit are imported once here, each model then
    # runs in its own forked process (own memory limit, killed at the time limit)
    import multiprocessing as mp

    import torch

    import prunekit.structured  # noqa: F401  (imported before forking)

    torch.set_num_threads(1)
    ctx = mp.get_context("fork")

    def child(name: str, queue) -> None:
        _limit_memory(args.memory_gb)
        try:
            queue.put(run_one(name))
        except BaseException as exc:  # reported as a failure of this model
            msg = f"{type(exc).__name__}: {exc}".splitlines()[0][:400]
            queue.put({"model": name, "ok": False, "problems": [msg]})

    def one(name: str) -> dict:
        start = time.perf_counter()
        queue = ctx.Queue()
        proc = ctx.Process(target=child, args=(name, queue))
        proc.start()
        row = None
        try:
            row = queue.get(timeout=args.timeout)
        except Exception:
            row = {"model": name, "ok": False, "problems": [f"timeout {args.timeout}s"]}
        proc.join(5)
        if proc.is_alive():
            proc.kill()
            proc.join()
        if row is None:
            row = {"model": name, "ok": False, "problems": [f"exit {proc.exitcode}"]}
        row["wall_s"] = round(time.perf_counter() - start, 1)
        print(json.dumps(row), flush=True)
        return row

    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        rows = list(pool.map(one, names))
    ok = sum(1 for r in rows if r.get("ok"))
    failed = [r["model"] for r in rows if not r.get("ok")]
    print(json.dumps({"ok": ok, "total": len(names), "failed": failed}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
