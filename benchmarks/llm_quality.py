"""Benchmark: one-shot pruning quality of SmolLM2-135M, every method x reconstruction, same run.

Calibrates on one Austen novel (default Emma), evaluates sliding-window perplexity
(window = stride = 512) on another (default Persuasion), at 50% and 70% unstructured and
2:4: magnitude / Wanda / SparseGPT, each with reconstruct none / layer / block (the
block fit at the defaults of ``LLMPruneConfig``, i.e. the CLI's), and 2:4 with channel
permutation. The model is loaded once; every setting starts from the same dense weights
and the same calibration windows. A run writes ``summary.json`` when it ends.

Settings run in priority order (the SparseGPT baselines first) and each result is
appended to ``runs-<shard>.jsonl`` in ``--out`` as soon as it is measured, so a rerun
skips what is done and ``--shard k/n`` splits the list over processes. ``--summarize``
reads every ``runs-*.jsonl`` there, prints the table and the done-criteria and writes them
to ``summary.json``:

    best prunekit ppl <= 0.9x SparseGPT (no reconstruction) at 50%, <= 0.8x at 2:4, <= 0.7x at 70%

The last line printed is JSON.

Run:  PYTHONPATH=. python benchmarks/llm_quality.py --shard 0/2 &
      PYTHONPATH=. python benchmarks/llm_quality.py --shard 1/2
      PYTHONPATH=. python benchmarks/llm_quality.py --summarize
      PYTHONPATH=. python benchmarks/llm_quality.py --quick       (a smoke run: 4 windows, 1k eval tokens)
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "benchmarks" / "results" / "llm_quality"
LEVELS: dict[str, dict[str, Any]] = {"50%": {"sparsity": 0.5}, "70%": {"sparsity": 0.7}, "2:4": {"pattern": "2:4"}}
TARGETS = {"50%": 0.9, "2:4": 0.8, "70%": 0.7}


def settings() -> list[dict[str, Any]]:
    """Every setting, in the order they run: baselines, likely winners, then the rest.

    The grid: magnitude / Wanda / SparseGPT x reconstruct none / layer / block at every
    level, and 2:4 with channel permutation (each method without reconstruction, SparseGPT
    with the block fit). ``layer+block`` is left out (the layer fit's cost, and on 16x256
    calibration tokens it did not help: see docs/llm-pruning.md); ``--only`` still runs it."""
    first = [("sparsegpt", lvl, r, False) for r in ("none", "block") for lvl in LEVELS]
    first += [("sparsegpt", "2:4", "block", True)]
    first += [(m, "2:4", "none", True) for m in ("sparsegpt", "wanda", "magnitude")]
    # the layer fit (ADMM per linear) is the slowest part of the grid: last
    rest = [(m, lvl, r, False) for r in ("none", "block", "layer") for m in ("sparsegpt", "wanda", "magnitude")
            for lvl in LEVELS]
    rest = [r for r in rest if r not in first]
    out = []
    for method, level, reconstruct, permute in first + rest:
        out.append(_setting(method, level, reconstruct, permute))
    return out


def _setting(method: str, level: str, reconstruct: str, permute: bool) -> dict[str, Any]:
    name = f"{method}/{level}/{reconstruct}" + ("/permute" if permute else "")
    return {"name": name, "method": method, "level": level, "reconstruct": reconstruct, "permute": permute}


def _parse_name(name: str) -> dict[str, Any]:
    """A setting from its name, e.g. ``sparsegpt/2:4/layer+block/permute`` (for ``--only``)."""
    parts = name.split("/")
    if len(parts) not in (3, 4) or parts[1] not in LEVELS or (len(parts) == 4 and parts[3] != "permute"):
        raise SystemExit(f"--only: bad setting name {name!r}; e.g. sparsegpt/2:4/block/permute")
    return _setting(parts[0], parts[1], parts[2], len(parts) == 4)


def _done(out: Path) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for path in sorted(out.glob("runs-*.jsonl")):
        for line in path.read_text().splitlines():
            if line.strip():
                row = json.loads(line)
                found[row["name"]] = row
    return found


def _append(path: Path, row: dict[str, Any]) -> None:
    """Append one JSON line and fsync it (a crash loses at most the line being written)."""
    with open(path, "a") as f:
        f.write(json.dumps(row) + "\n")
        f.flush()
        os.fsync(f.fileno())


def run(args: argparse.Namespace) -> None:
    import torch

    from prunekit.data.text import read_text
    from prunekit.llm.calibration import calibration_windows, tokenize_text
    from prunekit.llm.config import LLMPruneConfig
    from prunekit.llm.evaluate import perplexity
    from prunekit.llm.loading import load_model, load_tokenizer
    from prunekit.llm.prune import prune_llm

    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    k, n = (int(v) for v in args.shard.split("/"))
    todo = [s for i, s in enumerate(settings()) if i % n == k]
    if args.only:
        todo = [_parse_name(name) for name in args.only.split(",")]
    done = _done(out)
    todo = [s for s in todo if s["name"] not in done]
    log = out / f"runs-{k}.jsonl"
    tok = load_tokenizer(args.model)
    windows = calibration_windows(tokenize_text(tok, read_text(args.calib)), args.nsamples, args.seqlen, args.seed)
    eval_ids = tokenize_text(tok, read_text(args.eval_text))
    model = load_model(args.model).eval()
    dense = {name: p.detach().clone() for name, p in model.state_dict().items()}

    def ppl() -> float:
        return perplexity(model, eval_ids, window=512, stride=512, max_tokens=args.eval_tokens)

    common = {"nsamples": args.nsamples, "seqlen": args.seqlen, "eval_tokens": args.eval_tokens,
              "calib": args.calib, "eval": args.eval_text, "threads": args.threads}
    if k == 0 and "dense" not in done and not args.only:
        start = time.perf_counter()
        _append(log, {"name": "dense", "ppl": ppl(), "eval_seconds": time.perf_counter() - start, **common})
    for s in todo:
        if s["name"] in _done(out):  # another shard measured it meanwhile
            continue
        model.load_state_dict(dense)
        block = {k: v for k, v in (("block_steps", args.block_steps), ("block_lr", args.block_lr)) if v is not None}
        cfg = LLMPruneConfig(method=s["method"], reconstruct=s["reconstruct"], permute=s["permute"],
                             batch_size=args.batch_size, **block, **LEVELS[s["level"]])
        start = time.perf_counter()
        result = prune_llm(model, windows, cfg, progress=False)
        seconds = time.perf_counter() - start
        row = {**s, "ppl": ppl(), "prune_seconds": seconds, "sparsity": result.measured_sparsity,
               "block_error_after_over_before": _mean_ratio(result.block_errors),
               "config": cfg.to_dict(), "load_avg": os.getloadavg()[0], **common}
        _append(log, row)
        print(f"{s['name']:40s} ppl {row['ppl']:8.2f}  {seconds:6.0f}s", flush=True)


def _mean_ratio(errors: list[tuple[float, float]]) -> float | None:
    if not errors:
        return None
    return sum(after / max(before, 1e-30) for before, after in errors) / len(errors)


def summarize(out: Path) -> dict[str, Any]:
    rows = _done(out)
    table: dict[str, dict[str, float]] = {}
    for name, row in rows.items():
        if name != "dense":
            table.setdefault(row["level"], {})[name] = round(row["ppl"], 3)
    criteria = {}
    for level, target in TARGETS.items():
        base = rows.get(f"sparsegpt/{level}/none")
        candidates = {nm: p for nm, p in table.get(level, {}).items()}
        if not base or not candidates:
            criteria[level] = {"done": False, "missing": "baseline or settings not measured"}
            continue
        best = min(candidates, key=candidates.get)
        ratio = candidates[best] / base["ppl"]
        criteria[level] = {"sparsegpt_none_ppl": round(base["ppl"], 3), "best": best,
                           "best_ppl": candidates[best], "ratio": round(ratio, 4), "target": target,
                           "met": ratio <= target}
    for level, entries in sorted(table.items()):
        print(f"-- {level}")
        for name, value in sorted(entries.items(), key=lambda kv: kv[1]):
            print(f"   {name:40s} {value:10.2f}")
    dense = rows.get("dense", {})
    return {"dense_ppl": dense.get("ppl"), "settings": {k: v for k, v in dense.items() if k not in ("name", "ppl")},
            "ppl": table, "criteria": criteria, "measured": len(rows) - ("dense" in rows),
            "planned": len(settings()), "missing": [s["name"] for s in settings() if s["name"] not in rows]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--calib", default="austen:emma")
    ap.add_argument("--eval", dest="eval_text", default="austen:persuasion")
    ap.add_argument("--nsamples", type=int, default=32)
    ap.add_argument("--seqlen", type=int, default=256)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--eval-tokens", type=int, default=4096)
    ap.add_argument("--batch-size", type=int, default=4, help="windows per block-fit step")
    ap.add_argument("--block-steps", type=int, default=None, help="default: LLMPruneConfig's (the CLI's)")
    ap.add_argument("--block-lr", type=float, default=None, help="default: LLMPruneConfig's (the CLI's)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--shard", default="0/1", help="k/n: run every n-th setting starting at k")
    ap.add_argument("--only", default=None, help="comma-separated setting names")
    ap.add_argument("--out", default=str(DEFAULT_OUT))
    ap.add_argument("--summarize", action="store_true")
    ap.add_argument("--quick", action="store_true", help="smoke run into a temp folder")
    args = ap.parse_args()
    if args.quick:
        import tempfile

        args.nsamples, args.seqlen, args.eval_tokens, args.block_steps = 4, 64, 1024, 2
        args.out = tempfile.mkdtemp(prefix="llm-quality-")
        args.only = args.only or "sparsegpt/2:4/none,sparsegpt/2:4/layer+block/permute"
    if not args.summarize:
        run(args)
    summary = summarize(Path(args.out))
    if args.summarize or not args.quick:
        from prunekit.io.atomic import atomic_write_json

        atomic_write_json(Path(args.out) / "summary.json", summary)
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
