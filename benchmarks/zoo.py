"""Structured pruning of a model zoo at ratio 0.5, with Torch-Pruning alongside.

Sources (``--source``, models and inputs in ``zoo_sources.py``): ``torchvision`` (every
classifier, the default), ``timm`` (the smallest model of every timm family) and
``ultralytics`` (every YOLO v3u-26 detect / seg / pose / OBB yaml; optional package).

Every model runs in its own forked process (time and address-space limits). prunekit
prunes it with default settings at ratio 0.5; a model is ok when the output shapes are
unchanged, MACs drop at least 1.5x, pruning takes at most 10 s (of CPU time: one
thread; the wall time is recorded too), pruning units made
provably dead leaves the outputs equal to 1e-4, and ``load_pruned`` in a fresh Python
process reproduces the outputs to 1e-4 (checks in ``zoo_checks.py``). Torch-Pruning 1.6
(``MetaPruner``, L2 magnitude, ``pruning_ratio=0.5``, classifier / head ignored) runs on
the same models in their own processes: shape, MACs and time checks only. One JSON line
per model and run; the last line is
``{"source": S, "ok": N, "total": M, "failed": [...], "torch_pruning": {"ok": N, ...}}``.

    PYTHONPATH=. python benchmarks/zoo.py [--source timm] [--models a,b] [--limit 5]
    PYTHONPATH=. python benchmarks/zoo.py --source ultralytics --resume partial.jsonl
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from concurrent.futures import ThreadPoolExecutor


def _limit_memory(gigabytes: float) -> None:
    limit = int(gigabytes * (1 << 30))
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def _error(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}".strip().splitlines()[0][:400]


def _done_rows(paths: str) -> dict[tuple[str, str], dict]:
    """{(pruner, model): row} from the JSON lines of earlier runs (summaries skipped).
    Rows that failed only by running out of time (the model's process or its reload
    process; a loaded machine) are left out, so those models run again."""
    done: dict[tuple[str, str], dict] = {}
    for path in filter(None, paths.split(",")):
        with open(path) as f:
            for line in f:
                row = json.loads(line) if line.startswith("{") else {}
                timed_out = row.get("problems") and all(
                    "timeout" in p or "TimeoutExpired" in p for p in row["problems"])
                if "pruner" in row and "model" in row and not timed_out:
                    done[row["pruner"], row["model"]] = row
    return done


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", default="torchvision",
                        choices=("torchvision", "timm", "ultralytics"))
    parser.add_argument("--models", default="", help="comma-separated subset")
    parser.add_argument("--limit", type=int, default=0, help="only the first N models")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds per model process")
    parser.add_argument("--memory-gb", type=float, default=16.0, help="address-space limit")
    parser.add_argument("--jobs", type=int, default=1, help="models pruned at once")
    parser.add_argument("--no-torch-pruning", action="store_true", help="skip the comparison")
    parser.add_argument("--resume", default="",
                        help="comma-separated JSONL outputs of earlier (interrupted) runs: their "
                        "rows are printed again and those models are not run again (except "
                        "those that only timed out)")
    args = parser.parse_args()
    done = _done_rows(args.resume)

    import zoo_sources

    try:
        names = args.models.split(",") if args.models else zoo_sources.SOURCES[args.source]().names()
    except zoo_sources.SourceUnavailable as exc:
        print(json.dumps({"source": args.source, "ok": 0, "total": 0, "failed": [],
                          "torch_pruning": {"ok": 0}, "unavailable": str(exc)}), flush=True)
        return 0
    if args.limit:
        names = names[: args.limit]

    # a fork server: torch / prunekit / the source package are imported once here; each
    # model then runs in its own forked process (own memory limit, killed at the limit)
    import multiprocessing as mp

    import torch
    import zoo_checks

    torch.set_num_threads(1)
    ctx = mp.get_context("fork")

    def child(kind: str, name: str, conn) -> None:
        # a pipe, not a Queue: a Queue's feeder thread may fail to start under the limit
        _limit_memory(args.memory_gb)
        sys.stdout.flush()
        os.dup2(2, 1)  # what the model's package prints goes to stderr: stdout stays JSON lines
        try:
            if kind == "prunekit":
                conn.send(zoo_checks.run_prunekit(args.source, name, args.timeout / 2))
            else:
                conn.send(zoo_checks.run_torch_pruning(args.source, name))
        except BaseException as exc:  # reported as a failure of this model
            conn.send({"model": name, "ok": False, "problems": [_error(exc)]})

    def one(kind: str, name: str) -> dict:
        if (kind, name) in done:
            print(json.dumps(done[kind, name]), flush=True)
            return done[kind, name]
        start = time.perf_counter()
        recv, send = ctx.Pipe(duplex=False)
        proc = ctx.Process(target=child, args=(kind, name, send))
        proc.start()
        send.close()
        row = None
        try:
            if recv.poll(args.timeout):
                row = recv.recv()
            else:
                row = {"model": name, "ok": False, "problems": [f"timeout {args.timeout}s"]}
        except EOFError:  # the process died without a result (row set below)
            pass
        proc.join(5)
        if proc.is_alive():
            proc.kill()
            proc.join()
        if row is None:
            row = {"model": name, "ok": False, "problems": [f"exit {proc.exitcode}"]}
        row["pruner"] = kind
        row["wall_s"] = round(time.perf_counter() - start, 1)
        print(json.dumps(row), flush=True)
        return row

    def both(name: str) -> tuple[dict, dict | None]:
        ours = one("prunekit", name)
        # with --no-torch-pruning, Torch-Pruning rows kept by --resume are still reported
        run_tp = not args.no_torch_pruning or ("torch_pruning", name) in done
        theirs = one("torch_pruning", name) if run_tp else None
        return ours, theirs

    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        pairs = list(pool.map(both, names))
    rows = [p[0] for p in pairs]
    tp_rows = [p[1] for p in pairs if p[1] is not None]
    summary = {
        "source": args.source,
        "ok": sum(1 for r in rows if r.get("ok")),
        "total": len(names),
        "failed": [r["model"] for r in rows if not r.get("ok")],
        "torch_pruning": {"ok": sum(1 for r in tp_rows if r.get("ok")), "total": len(tp_rows),
                          "failed": [r["model"] for r in tp_rows if not r.get("ok")]},
    }
    print(json.dumps(summary), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
