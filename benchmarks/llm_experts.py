"""Expert removal by router statistics vs at random, on a small Mixtral trained on Austen.

A random-weight mixture of experts has interchangeable experts, so the model is first
given structure: a Mixtral-style causal LM built from a config (hidden 256, 4 layers,
8 experts, top-2, character-level vocabulary) is trained for ``--steps`` steps on
*Pride and Prejudice* (1 thread, AdamW, the router's load-balancing loss on). Then, from
the same trained weights each time:

* dense: perplexity on *Persuasion*;
* router statistics: ``structured_prune(model, emma_batches, StructuredConfig(experts=0.25))``
  removes the 2 of 8 experts per layer whose weighted output on *Emma* is smallest;
* random: 2 random experts per layer removed (``remove_experts``), for several seeds.

The last line is JSON with the three perplexities (random: each seed, mean, min, max).

Run:  PYTHONPATH=. OMP_NUM_THREADS=1 python benchmarks/llm_experts.py [--steps 300] [--out DIR]
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from pathlib import Path

import torch


def char_ids(text: str, vocab: dict[str, int]) -> torch.Tensor:
    return torch.tensor([vocab.get(c, 0) for c in text], dtype=torch.long)


def build_model(vocab_size: int, seed: int):
    from transformers import MixtralConfig, MixtralForCausalLM

    torch.manual_seed(seed)
    cfg = MixtralConfig(vocab_size=vocab_size, hidden_size=256, intermediate_size=256, num_hidden_layers=4,
                        num_attention_heads=8, num_key_value_heads=4, num_local_experts=8,
                        num_experts_per_tok=2, max_position_embeddings=512, output_router_logits=True,
                        router_aux_loss_coef=0.02, tie_word_embeddings=True, pad_token_id=0,
                        bos_token_id=None, eos_token_id=None)
    return MixtralForCausalLM(cfg)


def train(model, ids: torch.Tensor, steps: int, seqlen: int, batch: int, seed: int) -> list[float]:
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=2e-3, total_steps=steps, pct_start=0.1)
    model.train()
    losses = []
    for step in range(steps):
        start = torch.randint(0, ids.numel() - seqlen - 1, (batch,), generator=g)
        x = torch.stack([ids[s:s + seqlen] for s in start.tolist()])
        out = model(input_ids=x, labels=x)
        opt.zero_grad()
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        losses.append(round(out.loss.item(), 4))
        if step % 50 == 0 or step == steps - 1:
            print(f"step {step} loss {out.loss.item():.3f}", flush=True)
    model.eval()
    return losses


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--seqlen", type=int, default=128)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--fraction", type=float, default=0.25)
    ap.add_argument("--random-seeds", type=int, default=5)
    ap.add_argument("--calib-windows", type=int, default=16)
    ap.add_argument("--eval-tokens", type=int, default=32768)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=None, help="write results.json here")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)

    from prunekit.data.text import read_text
    from prunekit.llm import StructuredConfig, perplexity, structured_prune
    from prunekit.llm.structured import remove_experts

    train_text, calib_text, eval_text = (read_text(f"austen:{n}") for n in ("prideprejudice", "emma", "persuasion"))
    chars = sorted(set(train_text))
    vocab = {c: i + 1 for i, c in enumerate(chars)}  # 0: characters the training text lacks
    train_ids, calib_ids, eval_ids = (char_ids(t, vocab) for t in (train_text, calib_text, eval_text))
    model = build_model(len(vocab) + 1, a.seed)
    start = time.perf_counter()
    losses = train(model, train_ids, a.steps, a.seqlen, a.batch, a.seed)
    train_seconds = time.perf_counter() - start
    model.config.output_router_logits = False
    g = torch.Generator().manual_seed(a.seed + 1)
    starts = torch.randint(0, calib_ids.numel() - a.seqlen, (a.calib_windows,), generator=g).tolist()
    calib = torch.stack([calib_ids[s:s + a.seqlen] for s in starts])
    batches = [{"input_ids": calib[i:i + 4]} for i in range(0, len(calib), 4)]

    def ppl(m) -> float:
        with torch.no_grad():
            return perplexity(m, eval_ids, window=a.seqlen, stride=a.seqlen, max_tokens=a.eval_tokens)

    result: dict = {"settings": vars(a), "train_seconds": round(train_seconds, 1),
                    "train_loss_first_last": [losses[0], losses[-1]], "vocab": len(vocab) + 1}
    result["dense"] = ppl(model)
    print(f"dense perplexity {result['dense']:.3f}", flush=True)
    pruned = copy.deepcopy(model)
    plan = structured_prune(pruned, batches, StructuredConfig(experts=a.fraction))
    result["router_stats"] = {"ppl": ppl(pruned), "removed": plan["experts"],
                              "frequency": {i: s["frequency"] for i, s in plan["expert_stats"].items()},
                              "contribution": {i: s["contribution"] for i, s in plan["expert_stats"].items()}}
    print(f"router-statistics perplexity {result['router_stats']['ppl']:.3f}", flush=True)
    n_drop = {i: len(v) for i, v in plan["experts"].items()}
    randoms = []
    for seed in range(a.random_seeds):
        g = torch.Generator().manual_seed(1000 + seed)
        drop = {i: sorted(torch.randperm(plan["experts_before"][i], generator=g)[:k].tolist())
                for i, k in n_drop.items()}
        m = copy.deepcopy(model)
        remove_experts(m, drop)
        randoms.append({"seed": 1000 + seed, "removed": drop, "ppl": ppl(m)})
        print(f"random seed {1000 + seed} perplexity {randoms[-1]['ppl']:.3f}", flush=True)
    values = [r["ppl"] for r in randoms]
    result["random"] = {"runs": randoms, "mean": sum(values) / len(values), "min": min(values), "max": max(values)}
    result["router_stats_closer_than_every_random"] = result["router_stats"]["ppl"] < min(values)
    if a.out:
        from prunekit.io import atomic_write_json

        atomic_write_json(Path(a.out) / "results.json", result)
    print(json.dumps({"dense": result["dense"], "router_stats": result["router_stats"]["ppl"],
                      "random_mean": result["random"]["mean"], "random_min": result["random"]["min"],
                      "random_max": result["random"]["max"], "train_seconds": result["train_seconds"],
                      "router_stats_closer_than_every_random": result["router_stats_closer_than_every_random"]}))


if __name__ == "__main__":
    main()
