"""``prunekit llm --max-memory SIZE``: the out-of-core path of the ``llm`` subcommand.

Flags are added by :func:`add_out_of_core_arguments`; ``prunekit.cli.llm`` hands the run
over to :func:`run_out_of_core` when ``--max-memory`` is given.

Example:
    prunekit llm --model DIR --max-memory 2GB --method sparsegpt --sparsity 0.5 \\
        --nsamples 8 --eval none --out runs/big50
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from prunekit.llm.offload.config import SPILL, parse_memory


def add_out_of_core_arguments(parser: argparse.ArgumentParser) -> None:
    """``--max-memory``, ``--spill`` and ``--scratch-dir`` on the ``llm`` subcommand."""
    parser.add_argument("--max-memory", default=None, metavar="SIZE",
                        help="prune out of core within this memory (e.g. 2GB): one decoder block at a time "
                        "is read from the safetensors shards, pruned and written to DIR/model as shards; "
                        "needs a Hugging Face folder and --out")
    parser.add_argument("--spill", choices=SPILL, default="auto",
                        help="with --max-memory: keep the calibration activations in memory, on disk, or "
                        "decide from the budget (auto)")
    parser.add_argument("--scratch-dir", default=None,
                        help="with --max-memory: folder for spilled activations (default: beside --out)")


def _check(args: argparse.Namespace) -> None:
    from prunekit.errors import ConfigError

    unsupported = [flag for flag, on in (("--heads", args.heads), ("--mlp", args.mlp), ("--layers", args.layers),
                                         ("--speed", args.speed), ("--sparse-runtime", args.sparse_runtime),
                                         ("--owl", args.owl)) if on]
    if unsupported:
        raise ConfigError(f"{', '.join(unsupported)} need the whole model in memory; drop them or --max-memory")
    if not args.out:
        raise ConfigError("--max-memory writes the pruned model shard by shard: give --out DIR")


def run_out_of_core(args: argparse.Namespace) -> int:
    """Prune ``--model`` block by block within ``--max-memory``; metrics.json as the in-memory run."""
    import torch

    from prunekit.cli.llm import _configs
    from prunekit.data.text import read_text
    from prunekit.errors import ConfigError
    from prunekit.io import atomic_write_json
    from prunekit.llm.calibration import calibration_windows, tokenize_text
    from prunekit.llm.evaluate import perplexity
    from prunekit.llm.loading import load_tokenizer, resolve_model
    from prunekit.llm.memory import StagePeaks
    from prunekit.llm.offload.config import OutOfCoreConfig, resolve_device
    from prunekit.llm.offload.prune import prune_llm_out_of_core
    from prunekit.llm.offload.shards import ShardReader
    from prunekit.llm.offload.skeleton import empty_model
    from prunekit.llm.offload.streaming import streamed

    _check(args)
    _, config = _configs(args)
    folder, gguf = resolve_model(args.model)
    if gguf is not None:
        raise ConfigError(f"--max-memory reads safetensors shards; {args.model} is GGUF: save it as a Hugging "
                          "Face folder first (prunekit llm --model ... --out DIR writes DIR/model)")
    offload = OutOfCoreConfig(max_memory=args.max_memory, device=resolve_device(args.device), spill=args.spill,
                              scratch_dir=args.scratch_dir)
    if args.threads is not None:
        if args.threads < 1:
            raise ConfigError(f"--threads must be a positive integer, got {args.threads}")
        torch.set_num_threads(args.threads)
    evaluate = args.eval_text != "none"
    progress = not args.no_progress
    out = Path(args.out)
    tokenizer = load_tokenizer(folder)
    windows = None
    if config.needs_calibration:
        ids = tokenize_text(tokenizer, read_text(args.calib or "austen:emma"))
        windows = calibration_windows(ids, args.nsamples, args.seqlen, args.seed)
    eval_ids = tokenize_text(tokenizer, read_text(args.eval_text or "austen:persuasion")) if evaluate else None

    def ppl(source: Path) -> float | None:
        if eval_ids is None:
            return None
        model = empty_model(source)
        with streamed(model, ShardReader(source), offload.device):
            return perplexity(model, eval_ids, window=args.eval_window, stride=args.eval_stride,
                              max_tokens=args.eval_max_tokens, progress=progress)

    peaks = StagePeaks()
    with peaks.stage("eval_before"):
        ppl_before = None if args.skip_ppl_before else ppl(folder)
    if ppl_before is not None:
        print(f"perplexity before: {ppl_before:.2f}")
    with peaks.stage("prune"):
        result = prune_llm_out_of_core(folder, out / "model", windows, config, offload, tokenizer=tokenizer,
                                       progress=progress)
    with peaks.stage("eval_after"):
        ppl_after = ppl(out / "model")
    if ppl_after is not None:
        print(f"perplexity after:  {ppl_after:.2f}")
    rss = peaks.max_rss_mb()
    print(f"pruned {result.measured_sparsity:.1%} of block weights with {config.method}"
          f"{' ' + str(config.pattern) if config.pattern else ''} out of core in {result.seconds:.1f}s "
          f"(activations {result.activation_mb:.0f} MB {'on disk' if result.spilled else 'in memory'}); "
          f"peak RSS {rss:.0f} MB")
    metrics = _metrics(args, config, result, peaks, ppl_before, ppl_after, windows, eval_ids)
    atomic_write_json(out / "metrics.json", metrics)
    print(f"wrote {out / 'metrics.json'} and {out / 'model'}")
    print(json.dumps({k: v for k, v in metrics.items() if k not in ("config", "layer_sparsity")}))
    return 0


def _metrics(args: argparse.Namespace, config: Any, result: Any, peaks: Any, ppl_before: float | None,
             ppl_after: float | None, windows: Any, eval_ids: Any) -> dict[str, Any]:
    return {
        "model": str(args.model),
        "method": config.method,
        "pattern": str(config.pattern) if config.pattern else "unstructured",
        "sparsity_target": config.target_sparsity,
        "ppl_before": ppl_before,
        "ppl_after": ppl_after,
        "prune_seconds": result.seconds,
        "peak_rss_mb": peaks.max_rss_mb(),
        "prune_peak_rss_mb": peaks.by_stage["prune"]["peak_rss_mb"],
        "memory_by_stage": peaks.by_stage,
        "max_memory_bytes": parse_memory(args.max_memory),
        "out_of_core": result.to_dict(),
        "sparsity_measured": result.measured_sparsity,
        "layer_sparsity": result.to_dict()["layer_sparsity"],
        "nsamples": args.nsamples if windows is not None else 0,
        "seqlen": args.seqlen,
        "eval_window": args.eval_window,
        "eval_stride": args.eval_stride,
        "eval_tokens": int(min(eval_ids.numel(), args.eval_max_tokens or eval_ids.numel())) if eval_ids is not None
        else 0,
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "config": config.to_dict(),
    }

