"""Structured pruning of SmolLM2-135M: KV groups (with their query heads), MLP neurons, layers.

Scores on calibration text (Emma), removes the same fraction in every block (so the
result reloads with plain ``from_pretrained``), reports perplexity on Persuasion,
parameters and decode speed before and after, and checks the save / reload round trip.
The last line printed is JSON.

Run:  PYTHONPATH=. python benchmarks/llm_structured.py [--heads 0.34 --mlp 0.25 --layers 2]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time

import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--heads", type=float, default=0.34)
    ap.add_argument("--mlp", type=float, default=0.25)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--nsamples", type=int, default=8)
    ap.add_argument("--eval-max-tokens", type=int, default=4096)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)

    from transformers import AutoModelForCausalLM

    from prunekit.data.text import read_text
    from prunekit.llm import (
        StructuredConfig,
        calibration_windows,
        causal_lm_batches,
        generation_speed,
        load_causal_lm,
        perplexity,
        save_pretrained_model,
        structured_prune,
        tokenize_text,
    )
    from prunekit.metrics import count_params

    model, tok = load_causal_lm("smollm2-135m")
    calib = calibration_windows(tokenize_text(tok, read_text("austen:emma")), a.nsamples, 512)
    eval_ids = tokenize_text(tok, read_text("austen:persuasion"))
    out: dict = {"settings": vars(a)}
    out["dense"] = {
        "ppl": perplexity(model, eval_ids, max_tokens=a.eval_max_tokens),
        "params": count_params(model),
        "decode_tokens_per_s": generation_speed(model, eval_ids[:128], runs=2).decode_tokens_per_s,
    }
    start = time.perf_counter()
    plan = structured_prune(model, causal_lm_batches(calib, 4),
                            StructuredConfig(heads=a.heads, mlp=a.mlp, layers=a.layers))
    seconds = time.perf_counter() - start
    cfg = model.config
    out["pruned"] = {
        "ppl": perplexity(model, eval_ids, max_tokens=a.eval_max_tokens),
        "params": count_params(model),
        "decode_tokens_per_s": generation_speed(model, eval_ids[:128], runs=2).decode_tokens_per_s,
        "seconds": seconds,
        "removed_layers": plan["layers"],
        "config": {"num_hidden_layers": cfg.num_hidden_layers, "num_attention_heads": cfg.num_attention_heads,
                   "num_key_value_heads": cfg.num_key_value_heads, "intermediate_size": cfg.intermediate_size},
    }
    with tempfile.TemporaryDirectory() as folder:
        save_pretrained_model(model, folder, tok)
        again = AutoModelForCausalLM.from_pretrained(folder).eval()
        x = eval_ids[:256].unsqueeze(0)
        with torch.no_grad():
            diff = (again(input_ids=x).logits - model(input_ids=x).logits).abs().max().item()
    out["reload_max_abs_logit_diff"] = diff
    print(json.dumps(out))


if __name__ == "__main__":
    main()
