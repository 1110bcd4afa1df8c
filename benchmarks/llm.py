"""Benchmark: one-shot pruning of SmolLM2-135M on Jane Austen text.

Calibrates on one novel (default Emma), evaluates sliding-window perplexity (window =
stride = 512) on another (default Persuasion), for dense / magnitude / Wanda / SparseGPT
at 50% unstructured and 2:4. Every pruning run is its own process (so its peak RSS is
its own) going through the same code as ``prunekit llm``. The last line printed is JSON:

    {"dense": {"ppl": P}, "magnitude": {"unstructured": {"ppl": P, "seconds": T,
     "peak_rss_mb": M}, "2:4": {...}}, "wanda": {...}, "sparsegpt": {...}, "settings": {...}}

Run:  PYTHONPATH=. python benchmarks/llm.py            (about 30-60 min on 2 busy cores)
      PYTHONPATH=. python benchmarks/llm.py --quick    (8 windows, 2k eval tokens: a smoke run)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
METHODS = ("magnitude", "wanda", "sparsegpt")
PATTERNS = ("unstructured", "2:4")


def run_one(argv: list[str]) -> None:
    """Child process: run the ``prunekit llm`` subcommand with ``argv``."""
    from prunekit.cli import llm

    parser = argparse.ArgumentParser(prog="prunekit")
    sub = parser.add_subparsers(dest="command")
    llm.register(sub)
    args = parser.parse_args(["llm", *argv])
    raise SystemExit(args.func(args))


def child(argv: list[str], log) -> dict:
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run([sys.executable, __file__, "--child", "--", *argv], cwd=ROOT, env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    log.write(proc.stdout)
    log.flush()
    if proc.returncode != 0:
        raise SystemExit(f"child run failed ({' '.join(argv)}):\n{proc.stdout[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    if "--child" in sys.argv:
        run_one(sys.argv[sys.argv.index("--") + 1 :])
        return
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--calib", default="austen:emma")
    ap.add_argument("--eval", dest="eval_text", default="austen:persuasion")
    ap.add_argument("--nsamples", type=int, default=32)
    ap.add_argument("--seqlen", type=int, default=512)
    ap.add_argument("--eval-max-tokens", type=int, default=16384)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--quick", action="store_true", help="8 windows, 2048 eval tokens")
    ap.add_argument("--log", default=str(Path(tempfile.gettempdir()) / "prunekit-llm-benchmark.log"))
    a = ap.parse_args()
    if a.quick:
        a.nsamples, a.eval_max_tokens = 8, 2048
    common = ["--model", a.model, "--calib", a.calib, "--eval", a.eval_text,
              "--nsamples", str(a.nsamples), "--seqlen", str(a.seqlen),
              "--eval-max-tokens", str(a.eval_max_tokens), "--threads", str(a.threads),
              "--sparsity", "0.5", "--no-progress"]
    results: dict = {}
    start = time.perf_counter()
    with open(ROOT / a.log, "w") as log:
        for method in a.methods.split(","):
            for pattern in PATTERNS:
                first = not results
                argv = [*common, "--method", method]
                if pattern != "unstructured":
                    argv += ["--pattern", pattern]
                if not first:
                    argv.append("--skip-ppl-before")
                m = child(argv, log)
                if first:
                    results["dense"] = {"ppl": round(m["ppl_before"], 3)}
                results.setdefault(method, {})[pattern] = {
                    "ppl": round(m["ppl_after"], 3),
                    "seconds": round(m["prune_seconds"], 1),
                    "peak_rss_mb": round(m["peak_rss_mb"], 1),
                    "sparsity": round(m["sparsity_measured"], 4),
                }
                print(f"{method:>9} {pattern:>12}: ppl {m['ppl_after']:.2f}  "
                      f"prune {m['prune_seconds']:.0f}s  peak RSS {m['peak_rss_mb']:.0f} MB",
                      flush=True)
    results["settings"] = {
        "model": a.model, "calib": a.calib, "eval": a.eval_text, "nsamples": a.nsamples,
        "seqlen": a.seqlen, "eval_window": 512, "eval_stride": 512,
        "eval_tokens": a.eval_max_tokens, "threads": a.threads, "sparsity": 0.5,
        "total_seconds": round(time.perf_counter() - start, 1),
    }
    mag = results.get("magnitude", {}).get("unstructured", {}).get("ppl")
    if mag:
        results["ratios_vs_magnitude"] = {
            m: round(results[m]["unstructured"]["ppl"] / mag, 4)
            for m in ("wanda", "sparsegpt") if m in results
        }
    print(json.dumps(results))


if __name__ == "__main__":
    main()
