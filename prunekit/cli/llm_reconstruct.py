"""``prunekit llm`` flags of weight reconstruction and N:M channel permutation.

Example:
    prunekit llm --model smollm2-135m --method sparsegpt --pattern 2:4 --permute \\
        --reconstruct layer+block --block-steps 64 --out runs/sgpt24
"""

from __future__ import annotations

import argparse
from typing import Any

from prunekit.llm.config import RECONSTRUCT, LLMPruneConfig
from prunekit.llm.precision import CALIB_DTYPES

_DEFAULTS = LLMPruneConfig()


def add_reconstruct_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--reconstruct``, ``--block-steps``, ``--block-lr``, ``--block-bf16``, ``--calib-dtype``
    and ``--permute`` to ``parser``."""
    parser.add_argument(
        "--reconstruct", choices=RECONSTRUCT, default="none",
        help="after masking, re-fit the kept weights to the dense model on the calibration text: "
        "layer (each linear, ADMM least squares), block (each decoder block's outputs, a few Adam "
        "steps, masks held), layer+block (both)")
    parser.add_argument("--block-steps", type=int, default=_DEFAULTS.block_steps,
                        help=f"Adam steps per block for --reconstruct block (default {_DEFAULTS.block_steps})")
    parser.add_argument("--block-lr", type=float, default=_DEFAULTS.block_lr,
                        help=f"Adam learning rate of the block fit (default {_DEFAULTS.block_lr})")
    parser.add_argument(
        "--calib-dtype", choices=CALIB_DTYPES, default=_DEFAULTS.calib_dtype,
        help="precision of the calibration forwards: auto (bf16 autocast where the CPU has AMX / "
        "AVX512-BF16 or the GPU has bf16, else float32), float32, bfloat16; statistics are always "
        f"accumulated in float32 (default {_DEFAULTS.calib_dtype})")
    parser.add_argument("--block-bf16", action=argparse.BooleanOptionalAction, default=_DEFAULTS.block_bf16,
                        help="run the block fit's forward/backward under bf16 autocast where the CPU "
                        "(AVX512-BF16/AMX) or GPU supports it; weights and masks stay in the model's dtype")
    parser.add_argument("--permute", action="store_true",
                        help="N:M only: permute input channels (folded into the producing layer, so "
                        "the model is unchanged) so that important weights fall into different groups")


def reconstruct_options(args: argparse.Namespace) -> dict[str, Any]:
    """The :class:`LLMPruneConfig` keyword arguments these flags set."""
    return {"reconstruct": args.reconstruct, "block_steps": args.block_steps,
            "block_lr": args.block_lr, "block_bf16": args.block_bf16, "permute": args.permute,
            "calib_dtype": args.calib_dtype}
