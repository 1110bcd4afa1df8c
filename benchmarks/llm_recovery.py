"""Recovery fine-tuning of pruned SmolLM2-135M, sparsity held (issue 14's recovery check).

1. Structured: attention KV groups, MLP neurons and blocks removed (about 25% of the
   parameters), then distillation from the dense model (logit KL) on Austen text, within
   a time budget; perplexity dense / pruned / recovered on a held-out novel (Persuasion)
   and the share of the log-perplexity gap closed.
2. Wanda 50%, then LoRA recovery merged with the mask re-applied: the sparsity before and
   after must be equal exactly.

Training text: every Austen novel but the held-out one; calibration: Emma. Each stage is
appended to ``--out``/stages.jsonl as it finishes (the partial record of a long run); the
recovery checkpoints go to ``--checkpoints`` so a killed run rerun with the same arguments
continues. The last line printed is JSON (also written to ``--out``/result.json).

Run:  OMP_NUM_THREADS=2 PYTHONPATH=. python benchmarks/llm_recovery.py [--distill-minutes 60]
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import time
from pathlib import Path

import torch

HELD_OUT = "persuasion"
TRAIN = ("emma", "mansfieldpark", "northangerabbey", "prideprejudice", "sensesensibility")


def _args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--heads", type=float, default=0.34)
    ap.add_argument("--mlp", type=float, default=0.25)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--nsamples", type=int, default=8, help="calibration windows (of --calib-seqlen)")
    ap.add_argument("--calib-seqlen", type=int, default=256)
    ap.add_argument("--eval-tokens", type=int, default=2048, help="first N tokens of the held-out novel")
    ap.add_argument("--distill-tokens", type=int, default=2_000_000)
    ap.add_argument("--distill-minutes", type=float, default=60.0)
    ap.add_argument("--distill-lr", type=float, default=2e-4)
    ap.add_argument("--lora-tokens", type=int, default=200_000)
    ap.add_argument("--lora-minutes", type=float, default=10.0)
    ap.add_argument("--lora-lr", type=float, default=1e-3)
    ap.add_argument("--seqlen", type=int, default=256)
    ap.add_argument("--batch-size", type=int, default=2)
    ap.add_argument("--checkpoint-minutes", type=float, default=10.0)
    ap.add_argument("--bf16", choices=("auto", "on", "off"), default="off")
    ap.add_argument("--threads", type=int, default=1, help="1 is fastest on a busy shared machine")
    ap.add_argument("--skip-lora", action="store_true")
    ap.add_argument("--skip-distill", action="store_true", help="only the Wanda + LoRA part")
    ap.add_argument("--out", default="benchmarks/results/llm_recovery")
    ap.add_argument("--checkpoints", default="/tmp/prunekit_llm_recovery_ckpt")
    return ap.parse_args()


class Stages:
    """Append each finished stage to stages.jsonl (rewritten atomically)."""

    def __init__(self, folder: Path) -> None:
        self.path = folder / "stages.jsonl"
        self.lines: list[str] = []

    def add(self, name: str, **values: object) -> None:
        from prunekit.io import atomic_write_text

        record = {"stage": name, "time": time.strftime("%H:%M:%S"), **values}
        self.lines.append(json.dumps(record))
        atomic_write_text(self.path, "\n".join(self.lines) + "\n")
        print(json.dumps(record), flush=True)


def main() -> None:
    a = _args()
    torch.set_num_threads(a.threads)
    from prunekit.data.text import read_text
    from prunekit.io import atomic_write_json
    from prunekit.llm import (
        LLMPruneConfig,
        StructuredConfig,
        calibration_windows,
        causal_lm_batches,
        load_causal_lm,
        perplexity,
        prune_llm,
        structured_prune,
        tokenize_text,
    )
    from prunekit.llm.recover import RecoverConfig, block_zeros, recover
    from prunekit.metrics import count_params

    out = Path(a.out)
    stages = Stages(out)
    t_start = time.perf_counter()
    dense, tok = load_causal_lm("smollm2-135m")
    calib = calibration_windows(tokenize_text(tok, read_text("austen:emma")), a.nsamples, a.calib_seqlen)
    eval_ids = tokenize_text(tok, read_text(f"austen:{HELD_OUT}"))
    train_ids = torch.cat([tokenize_text(tok, read_text(f"austen:{n}")) for n in TRAIN])

    def ppl(model: torch.nn.Module) -> float:
        return perplexity(model, eval_ids, window=512, stride=512, max_tokens=a.eval_tokens)

    dense.eval()
    ppl_dense = ppl(dense)
    stages.add("dense", ppl=ppl_dense, params=count_params(dense), train_tokens_available=int(train_ids.numel()))

    # 1. structured, then distillation from the dense model
    structured: dict | None = None
    ppl_pruned = ppl_rec = closed = None
    if not a.skip_distill:
        student = copy.deepcopy(dense)
        t0 = time.perf_counter()
        structured_prune(student, causal_lm_batches(calib, 4),
                         StructuredConfig(heads=a.heads, mlp=a.mlp, layers=a.layers))
        params = count_params(student)
        ppl_pruned = ppl(student)
        stages.add("structured", ppl=ppl_pruned, params=params, params_removed=1 - params / count_params(dense),
                   seconds=time.perf_counter() - t0)
        config = RecoverConfig(method="distill", tokens=a.distill_tokens, seqlen=a.seqlen, batch_size=a.batch_size,
                               lr=a.distill_lr, bf16=a.bf16, max_minutes=a.distill_minutes,
                               checkpoint_minutes=a.checkpoint_minutes)
        r = recover(student, train_ids, config, teacher=dense, checkpoint_dir=Path(a.checkpoints) / "distill")
        ppl_rec = ppl(student)
        gap = math.log(ppl_pruned) - math.log(ppl_dense)
        closed = (math.log(ppl_pruned) - math.log(ppl_rec)) / gap if gap > 0 else float("nan")
        structured = {
            "ppl_dense": ppl_dense, "ppl_pruned": ppl_pruned, "ppl_recovered": ppl_rec, "log_gap_closed": closed,
            "params_dense": count_params(dense), "params": params, "params_removed": 1 - params / count_params(dense),
            "recover_tokens": r.tokens, "recover_seconds": r.seconds, "recover_steps": r.steps,
            "stopped_by_time": r.stopped_by_time, "tokens_per_s": r.tokens / max(r.seconds, 1e-9),
            "loss_first": r.losses[0] if r.losses else None, "loss_last": r.losses[-1] if r.losses else None,
            "resumed_from_step": r.resumed_from_step, "config": config.to_dict(),
        }
        stages.add("distill", **structured)
        del student

    # 2. Wanda 50%, then LoRA merged with the mask re-applied
    lora = None
    if not a.skip_lora:
        sparse = copy.deepcopy(dense)
        prune_llm(sparse, calib, LLMPruneConfig("wanda", 0.5), progress=False)
        zeros_before = block_zeros(sparse)
        ppl_sparse = ppl(sparse)
        stages.add("wanda50", ppl=ppl_sparse, zeros=zeros_before)
        lconfig = RecoverConfig(method="lora", tokens=a.lora_tokens, seqlen=a.seqlen, batch_size=a.batch_size,
                                lr=a.lora_lr, bf16=a.bf16, max_minutes=a.lora_minutes,
                                checkpoint_minutes=a.checkpoint_minutes)
        lr_ = recover(sparse, train_ids, lconfig, teacher=dense, checkpoint_dir=Path(a.checkpoints) / "lora")
        lora = {
            "ppl_dense": ppl_dense, "ppl_pruned": ppl_sparse, "ppl_recovered": ppl(sparse),
            "zeros_before": zeros_before, "zeros_after": block_zeros(sparse),
            "sparsity_kept_exactly": block_zeros(sparse) == zeros_before,
            "recover_tokens": lr_.tokens, "recover_seconds": lr_.seconds, "stopped_by_time": lr_.stopped_by_time,
            "config": lconfig.to_dict(),
        }
        stages.add("lora", **lora)
    result = {
        "ppl_dense": ppl_dense, "ppl_structured": ppl_pruned, "ppl_structured_recovered": ppl_rec,
        "log_gap_closed": closed, "structured": structured, "lora": lora,
        "eval": {"text": f"austen:{HELD_OUT}", "tokens": a.eval_tokens, "window": 512},
        "train_text": [f"austen:{n}" for n in TRAIN], "threads": a.threads,
        "total_seconds": time.perf_counter() - t_start,
    }
    atomic_write_json(out / "result.json", result)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
