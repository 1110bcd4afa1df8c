"""The ``--recover`` flags of ``prunekit llm`` and the stage that runs them after pruning.

Example:
    prunekit llm --model smollm2-135m --heads 0.34 --mlp 0.25 --layers 2 \\
        --recover distill --recover-text austen:mansfieldpark --recover-tokens 200000 --out runs/slim
    torchrun --nproc-per-node 2 -m prunekit llm --model smollm2-135m --method wanda \\
        --recover lora --recover-tokens 100000 --out runs/w50   # DDP; only rank 0 writes
"""

from __future__ import annotations

import argparse
import copy
import os
from pathlib import Path
from typing import Any

from torch import nn

from prunekit.llm.recover.config import BF16_CHOICES, RECOVER_METHODS, STRATEGIES

_DEFAULT_LR = {"distill": 1e-4, "lora": 1e-3}


def add_recover_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--recover`` and its settings to the ``prunekit llm`` parser."""
    g = parser.add_argument_group("recovery (fine-tuning after pruning, zeros held)")
    g.add_argument("--recover", choices=RECOVER_METHODS, default=None,
                   help="after pruning: distill (all weights, from the dense model) or lora (peft adapters "
                   "merged with the mask re-applied)")
    g.add_argument("--recover-text", default=None,
                   help="training text: a file, austen:<novel>, or several joined with commas "
                   "(default: the calibration text)")
    g.add_argument("--recover-tokens", type=int, default=1_000_000, help="training tokens (default 1M)")
    g.add_argument("--recover-seqlen", type=int, default=256)
    g.add_argument("--recover-batch", type=int, default=4, help="windows per step (global under torchrun)")
    g.add_argument("--recover-lr", type=float, default=None, help="peak lr (default distill 1e-4, lora 1e-3)")
    g.add_argument("--recover-temperature", type=float, default=1.0)
    g.add_argument("--recover-kd-weight", type=float, default=1.0,
                   help="weight of the logit KL; the rest is next-token cross-entropy")
    g.add_argument("--recover-hidden-weight", type=float, default=0.0,
                   help="weight of the final hidden-state MSE to the dense model (0: off)")
    g.add_argument("--recover-lora-rank", type=int, default=16)
    g.add_argument("--recover-bf16", choices=BF16_CHOICES, default="auto")
    g.add_argument("--recover-minutes", type=float, default=0.0, help="time budget (0: none)")
    g.add_argument("--recover-checkpoint", default=None,
                   help="checkpoint folder (default <out>/recover_checkpoint); a rerun continues from it")
    g.add_argument("--recover-checkpoint-minutes", type=float, default=5.0)
    g.add_argument("--recover-strategy", choices=STRATEGIES, default="auto",
                   help="under torchrun: fsdp (sharded), ddp, or auto (fsdp for distill, ddp for lora)")


def recover_config(args: argparse.Namespace) -> Any:
    """The :class:`RecoverConfig` the flags ask for."""
    from prunekit.llm.recover.config import RecoverConfig

    return RecoverConfig(
        method=args.recover, tokens=args.recover_tokens, seqlen=args.recover_seqlen,
        batch_size=args.recover_batch, lr=args.recover_lr or _DEFAULT_LR[args.recover],
        temperature=args.recover_temperature, kd_weight=args.recover_kd_weight,
        hidden_weight=args.recover_hidden_weight, lora_rank=args.recover_lora_rank,
        lora_alpha=2.0 * args.recover_lora_rank, bf16=args.recover_bf16, max_minutes=args.recover_minutes,
        checkpoint_minutes=args.recover_checkpoint_minutes, strategy=args.recover_strategy, seed=args.seed,
    )


def keep_teacher(model: nn.Module, args: argparse.Namespace) -> nn.Module | None:
    """A dense copy of ``model`` to distil from, taken before pruning (None without --recover).

    Checks the recovery flags first, and joins the ``torchrun`` process group when there is one."""
    if not args.recover:
        return None
    recover_config(args)  # fail on bad flags before the pruning work
    _init_process_group()
    return copy.deepcopy(model).eval()


def _init_process_group() -> None:
    import torch

    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.distributed.is_initialized():
        torch.distributed.init_process_group("nccl" if torch.cuda.is_available() else "gloo")


def recover_stage(model: nn.Module, teacher: nn.Module | None, tokenizer: Any, args: argparse.Namespace,
                  ppl: Any) -> dict[str, Any]:
    """Run the recovery the flags ask for on the pruned ``model``; return the metrics it adds
    (``ppl_after_recovery``, ``recover_tokens``, ``recover_seconds``, ``recover``)."""
    if not args.recover:
        return {}
    from prunekit.data.text import read_text
    from prunekit.llm.calibration import tokenize_text
    from prunekit.llm.recover.loop import recover
    from prunekit.train.distributed import is_main_process

    config = recover_config(args)
    sources = (args.recover_text or args.calib or "austen:emma").split(",")
    import torch

    ids = torch.cat([tokenize_text(tokenizer, read_text(s.strip())) for s in sources])
    folder = args.recover_checkpoint or (str(Path(args.out) / "recover_checkpoint") if args.out else None)
    result = recover(model, ids, config, teacher=teacher, checkpoint_dir=folder, progress=not args.no_progress)
    summary = {k: v for k, v in result.to_dict().items() if k != "losses"}
    losses = result.losses
    summary.update(loss_first=losses[0] if losses else None, loss_last=losses[-1] if losses else None,
                   checkpoint=folder, config=config.to_dict())
    after = ppl() if is_main_process() else None
    if after is not None:
        print(f"perplexity after recovery ({config.method}, {result.tokens:,} tokens in "
              f"{result.seconds:.0f}s): {after:.2f}")
    return {"ppl_after_recovery": after, "recover_tokens": result.tokens, "recover_seconds": result.seconds,
            "recover": summary}
