"""Benchmark: how much 2:4-retained weight magnitude the channel permutation wins on SmolLM2-135M.

For the permutable layers (``o_proj`` per KV head, ``down_proj``) of a few blocks, the sum of
``|W|`` a 2:4 mask keeps, before and after :func:`prunekit.llm.methods.permute_fold.pair_permutation`
(no calibration data needed: the scores are ``|W|``). The last line printed is JSON.

Run:  PYTHONPATH=. python benchmarks/llm_permute_gain.py       (about 2 min on a free core)
"""

from __future__ import annotations

import argparse
import json
import time

import torch


def main() -> None:
    from prunekit.llm.blocks import find_blocks, find_linears, weight_2d
    from prunekit.llm.loading import load_model
    from prunekit.llm.methods.permute import nm_retained
    from prunekit.llm.methods.permute_fold import foldable_pairs, pair_permutation

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--blocks", default="0,10,20,29")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model = load_model("smollm2-135m").eval()
    rows = []
    for i in (int(b) for b in args.blocks.split(",")):
        block = find_blocks(model)[1][i]
        for pair in foldable_pairs(block):
            w = weight_2d(find_linears(block)[pair.consumer]).detach().abs()
            start = time.perf_counter()
            perm, _ = pair_permutation(pair, w, 2, 4)
            before, after = nm_retained(w, 2, 4), nm_retained(w[:, perm], 2, 4)
            rows.append({"block": i, "layer": pair.consumer, "retained_before": before, "retained_after": after,
                         "gain": after / before - 1, "seconds": time.perf_counter() - start})
            print(json.dumps(rows[-1]), flush=True)
    print(json.dumps({"layers": rows, "mean_gain": sum(r["gain"] for r in rows) / len(rows)}))


if __name__ == "__main__":
    main()
