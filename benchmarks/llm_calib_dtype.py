"""Benchmark: does bf16 autocast of the calibration forwards change pruning quality?

SmolLM2-135M, calibrated on Austen's Emma (``--nsamples`` x ``--seqlen``, seed 0, the CLI
defaults), evaluated by sliding-window perplexity (window = stride = 512, float32, no
autocast) on Persuasion. For each method, the same dense weights are pruned twice:
``calib_dtype="float32"`` and ``"bfloat16"``; reported: perplexity of both, their ratio,
the fraction of weights whose keep/drop decision differs, and the prune seconds.
Accepted when every ratio is within ``--tolerance`` (0.5%) of 1.

Every measured row is appended to ``runs.jsonl`` in ``--out`` as soon as it is measured (so
methods can run in separate invocations); ``result.json`` summarises every method there with
both precisions measured on the same calibration and evaluation settings.

Run:  PYTHONPATH=. python benchmarks/llm_calib_dtype.py --threads 1     (about 10 min on a free core)
The last line printed is JSON (the summary).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--methods", default="wanda,sparsegpt")
    ap.add_argument("--nsamples", type=int, default=64)
    ap.add_argument("--seqlen", type=int, default=512)
    ap.add_argument("--eval-max-tokens", type=int, default=65536, help="first N tokens of Persuasion")
    ap.add_argument("--tolerance", type=float, default=0.005)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "llm_calib_dtype"))
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    from prunekit.data.text import read_text
    from prunekit.llm.blocks import find_blocks, find_linears
    from prunekit.llm.calibration import calibration_windows, tokenize_text
    from prunekit.llm.config import LLMPruneConfig
    from prunekit.llm.evaluate import perplexity
    from prunekit.llm.loading import load_model, load_tokenizer
    from prunekit.llm.prune import prune_llm

    tok = load_tokenizer("smollm2-135m")
    windows = calibration_windows(tokenize_text(tok, read_text("austen:emma")), args.nsamples, args.seqlen, 0)
    eval_ids = tokenize_text(tok, read_text("austen:persuasion"))
    model = load_model("smollm2-135m")
    dense = {k: v.clone() for k, v in model.state_dict().items()}

    def masks() -> list[torch.Tensor]:
        return [lin.weight != 0 for block in find_blocks(model)[1] for lin in find_linears(block).values()]

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    setting = {"nsamples": args.nsamples, "seqlen": args.seqlen,
               "eval_tokens": min(eval_ids.numel(), args.eval_max_tokens), "threads": torch.get_num_threads()}
    for method in args.methods.split(","):
        kept: dict[str, list[torch.Tensor]] = {}
        for dtype in ("float32", "bfloat16"):
            model.load_state_dict(dense)
            start = time.perf_counter()
            result = prune_llm(model, windows, LLMPruneConfig(method=method, calib_dtype=dtype), progress=False)
            seconds = time.perf_counter() - start
            kept[dtype] = masks()
            ppl = perplexity(model, eval_ids, window=512, stride=512, max_tokens=args.eval_max_tokens)
            row = {"method": method, "calib_dtype": dtype, "ppl": ppl, "prune_seconds": round(seconds, 2),
                   "sparsity": round(result.measured_sparsity, 4), **setting}
            if dtype == "bfloat16":
                differ = sum(int((a != b).sum()) for a, b in zip(kept["float32"], kept["bfloat16"]))
                row["mask_differs_from_float32"] = round(differ / sum(a.numel() for a in kept["float32"]), 5)
            print(json.dumps(row), flush=True)
            with open(out / "runs.jsonl", "a") as f:
                f.write(json.dumps(row) + "\n")
    model.load_state_dict(dense)
    summary = summarize(out, args.tolerance)
    (out / "result.json").write_text(json.dumps(summary, indent=1) + "\n")
    print(json.dumps(summary))


def summarize(out: Path, tolerance: float) -> dict[str, Any]:
    """Per method, the latest float32 and bfloat16 rows of ``runs.jsonl`` with equal settings."""
    from prunekit.llm.precision import fast_bf16

    keys = ("nsamples", "seqlen", "eval_tokens")
    latest: dict[tuple[Any, ...], dict[str, Any]] = {}
    for line in (out / "runs.jsonl").read_text().splitlines():
        row = json.loads(line)
        latest[(row["method"], row["calib_dtype"], *(row[k] for k in keys))] = row
    summary: dict[str, Any] = {"fast_bf16": fast_bf16("cpu"), "tolerance": tolerance}
    for (method, dtype, *setting), row in latest.items():
        if dtype != "bfloat16" or (method, "float32", *setting) not in latest:
            continue
        base = latest[(method, "float32", *setting)]
        ratio = row["ppl"] / base["ppl"]
        summary[method] = {**dict(zip(keys, setting)), "ppl_float32": round(base["ppl"], 4),
                           "ppl_bfloat16": round(row["ppl"], 4), "ppl_ratio": round(ratio, 5),
                           "within_tolerance": abs(ratio - 1) <= tolerance,
                           "prune_seconds_float32": base["prune_seconds"],
                           "prune_seconds_bfloat16": row["prune_seconds"],
                           "mask_differs": row.get("mask_differs_from_float32")}
    return summary

if __name__ == "__main__":
    main()
