"""``prunekit llm``: one-shot prune a causal LM, report perplexity before/after, save it.

Two kinds of pruning, alone or together (structured first):

* unstructured / N:M zeros in the block linears (``--method``, ``--sparsity``, ``--pattern``);
* structured removal of attention heads (KV groups), MLP neurons and whole blocks
  (``--heads``, ``--mlp``, ``--layers``), which makes the model smaller and faster.

Example:
    prunekit llm --model smollm2-135m --method wanda --sparsity 0.5 \\
        --calib austen:emma --eval austen:persuasion --out runs/wanda50
    prunekit llm --model smollm2-135m --heads 0.34 --mlp 0.25 --layers 2 --speed --out runs/slim
    prunekit llm --model smollm2-135m --method wanda --sparsity 0.7 --sparse-runtime --out runs/fast70
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from prunekit.cli.llm_experts import add_experts_arguments, experts_summary
from prunekit.cli.llm_reconstruct import add_reconstruct_arguments, reconstruct_options
from prunekit.llm.config import METHODS
from prunekit.llm.offload.cli import add_out_of_core_arguments
from prunekit.llm.recover.cli import add_recover_arguments, keep_teacher, recover_stage
from prunekit.train.distributed import is_main_process


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "llm",
        help="one-shot prune a Hugging Face causal LM (magnitude / Wanda / SparseGPT, N:M)",
        description="One-shot prune the linear layers of a causal LM's transformer blocks, "
        "print perplexity before and after, and save the pruned model.",
    )
    p.add_argument("--model", required=True,
                   help="local HF folder, a .gguf file, or 'smollm2-135m'")
    p.add_argument("--method", choices=METHODS, default="wanda")
    p.add_argument("--sparsity", type=float, default=None,
                   help="fraction of block weights zeroed (default 0.5; with structured flags "
                   "alone, no unstructured step runs)")
    p.add_argument("--pattern", default=None, help="N:M pattern such as 2:4 or 4:8")
    p.add_argument("--owl", action="store_true", help="OWL non-uniform layer sparsity")
    add_reconstruct_arguments(p)
    p.add_argument("--heads", type=float, default=0.0,
                   help="structured: fraction of attention units removed (KV groups with GQA, else heads)")
    p.add_argument("--mlp", type=float, default=0.0,
                   help="structured: fraction of MLP intermediate neurons removed")
    p.add_argument("--layers", type=int, default=0, help="structured: number of whole blocks removed")
    add_experts_arguments(p)
    p.add_argument("--scope", choices=("layer", "global"), default="layer",
                   help="structured: same fraction in every block (layer; reloads with plain "
                   "from_pretrained for Llama-family models) or ranked across blocks (global)")
    p.add_argument("--calib", default=None,
                   help="calibration text: a file or austen:<novel> (default austen:emma)")
    p.add_argument("--eval", dest="eval_text", default=None,
                   help="evaluation text: a file or austen:<novel> (default austen:persuasion); 'none' "
                   "skips perplexity (e.g. a model with random weights)")
    p.add_argument("--nsamples", type=int, default=64, help="calibration windows (default 64)")
    p.add_argument("--seqlen", type=int, default=512, help="tokens per calibration window")
    p.add_argument("--seed", type=int, default=0, help="seed of the calibration windows")
    p.add_argument("--eval-window", type=int, default=512)
    p.add_argument("--eval-stride", type=int, default=512)
    p.add_argument("--eval-max-tokens", type=int, default=None,
                   help="evaluate on the first N tokens only (default: all)")
    p.add_argument("--speed", action="store_true",
                   help="also measure generation speed (prefill and decode tokens/s) before and after")
    p.add_argument("--sparse-runtime", action="store_true",
                   help="after pruning, convert sparse linears to prunekit's sparse kernels where that is "
                   "faster (timed per layer at decode shape), and measure dense vs sparse-runtime decode/prefill "
                   "tokens/s, weight memory and peak RSS in this run (metrics.json 'speed')")
    p.add_argument("--sparse-dtype", choices=("float32", "bfloat16", "int8"), default="float32",
                   help="value dtype of the sparse-runtime weights (float32 is exact)")
    p.add_argument("--skip-ppl-before", action="store_true", help="do not evaluate the dense model")
    p.add_argument("--device", default="auto", help="cpu, cuda or auto (cuda when present); out of core "
                   "(--max-memory) the block being calibrated and pruned is on it, the rest on disk")
    p.add_argument("--threads", type=int, default=None,
                   help="CPU threads for torch (default: torch's choice; 1 is often fastest "
                   "on a busy shared machine)")
    p.add_argument("--out", default=None, help="folder for metrics.json and model/")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    add_recover_arguments(p)
    add_out_of_core_arguments(p)
    p.set_defaults(func=run)


def _configs(args: argparse.Namespace) -> tuple[Any, Any]:
    """The structured and unstructured configs the flags ask for (either may be None)."""
    from prunekit.llm.config import LLMPruneConfig
    from prunekit.llm.structured import StructuredConfig

    structured = StructuredConfig(heads=args.heads, mlp=args.mlp, layers=args.layers,
                                  scope=args.scope, experts=args.experts)
    wants_structured = bool(args.heads or args.mlp or args.layers or args.experts)
    wants_unstructured = not wants_structured or args.sparsity is not None or args.pattern or args.owl
    unstructured = None
    if wants_unstructured:
        sparsity = 0.5 if args.sparsity is None else args.sparsity
        unstructured = LLMPruneConfig(method=args.method, sparsity=sparsity, pattern=args.pattern,
                                      owl=args.owl, **reconstruct_options(args))
    return (structured if wants_structured else None), unstructured


def _structured_summary(plan: dict[str, Any], config: Any, seconds: float) -> dict[str, Any]:
    return {
        **config.to_dict(),
        "removed_heads": sum(len(v) for v in plan["heads"].values()),
        "removed_mlp_neurons": sum(len(v) for v in plan["mlp"].values()),
        "removed_layers": list(plan["layers"]),
        **experts_summary(plan),
        "not_applicable": dict(plan.get("not_applicable", {})),
        "seconds": seconds,
    }


def run(args: argparse.Namespace) -> int:
    import torch

    from prunekit.config.device import resolve_device
    from prunekit.data.text import read_text
    from prunekit.errors import ConfigError
    from prunekit.io import atomic_write_json
    from prunekit.llm.calibration import calibration_windows, causal_lm_batches, tokenize_text
    from prunekit.llm.evaluate import generation_speed, perplexity
    from prunekit.llm.loading import load_model, load_tokenizer, resolve_model
    from prunekit.llm.memory import StagePeaks
    from prunekit.llm.prune import block_sparsity, prune_llm
    from prunekit.llm.structured import LAYER_SHAPES_FIELD, save_pretrained_model, structured_prune
    from prunekit.metrics import count_nonzero, count_params

    if args.max_memory is not None:
        from prunekit.llm.offload.cli import run_out_of_core

        return run_out_of_core(args)
    structured, config = _configs(args)
    resolve_model(args.model)  # fail fast on a bad path, before reading any text
    needs_calib = structured is not None or (config is not None and config.needs_calibration)
    calib_text = read_text(args.calib or "austen:emma") if needs_calib else None
    evaluate = args.eval_text != "none"
    eval_text = read_text(args.eval_text or "austen:persuasion") if evaluate else None
    if args.threads is not None:
        if args.threads < 1:
            raise ConfigError(f"--threads must be a positive integer, got {args.threads}")
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    progress = not args.no_progress

    tokenizer = load_tokenizer(args.model)
    windows = None
    if calib_text is not None:
        windows = calibration_windows(tokenize_text(tokenizer, calib_text), args.nsamples,
                                      args.seqlen, args.seed)
    # the prompt of the speed measurements: the evaluation text, else the calibration text,
    # else fixed random tokens
    if eval_text is not None:
        eval_ids = tokenize_text(tokenizer, eval_text)
    elif windows is not None:
        eval_ids = windows.reshape(-1)
    else:
        eval_ids = torch.randint(0, len(tokenizer), (256,), generator=torch.Generator().manual_seed(args.seed))
    t0 = time.perf_counter()
    peaks = StagePeaks()
    with peaks.stage("load"):
        model = load_model(args.model, device=device)
    load_seconds = time.perf_counter() - t0
    params_before = count_params(model)
    print(f"loaded {args.model} ({params_before / 1e6:.1f}M params) in {load_seconds:.1f}s on {device}")

    def ppl() -> float | None:
        if not evaluate:
            return None
        return perplexity(model, eval_ids, window=args.eval_window, stride=args.eval_stride,
                          max_tokens=args.eval_max_tokens, progress=progress)

    def speed() -> dict | None:
        if not args.speed:
            return None
        return generation_speed(model, eval_ids[:128], new_tokens=32, runs=2).to_dict()

    speed_before = speed()
    with peaks.stage("eval_before"):
        ppl_before = None if args.skip_ppl_before else ppl()
    if ppl_before is not None:
        print(f"perplexity before: {ppl_before:.2f}")
    teacher = keep_teacher(model, args)  # the dense model, for --recover
    structured_info = None
    with peaks.stage("prune"):
        if structured is not None:
            start = time.perf_counter()
            batches = [{k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in b.items()}
                       for b in causal_lm_batches(windows, 4)]
            plan = structured_prune(model, batches, structured)
            structured_info = _structured_summary(plan, structured, time.perf_counter() - start)
            print(f"removed {structured_info['removed_heads']} attention units, "
                  f"{structured_info['removed_mlp_neurons']} MLP neurons and "
                  f"{len(plan['layers'])} blocks {plan['layers']} in {structured_info['seconds']:.1f}s: "
                  f"{params_before / 1e6:.1f}M -> {count_params(model) / 1e6:.1f}M params")
            for kind, why in structured_info["not_applicable"].items():
                print(f"--{kind}: not applicable, {why}")
        result = prune_llm(model, windows, config, progress=progress) if config is not None else None
    prune_seconds = (structured_info["seconds"] if structured_info else 0.0) + (result.seconds if result else 0.0)
    prune_peak = peaks.by_stage["prune"]["peak_rss_mb"]
    with peaks.stage("eval_after"):
        ppl_after = ppl()
    speed_after = speed()
    recovery: dict[str, Any] = {}
    if args.recover:
        with peaks.stage("recover"):
            recovery = recover_stage(model, teacher, tokenizer, args, ppl)
        if not is_main_process():
            return 0  # a torchrun process other than rank 0: rank 0 evaluates and writes
    if args.out:  # the Hugging Face folder holds the pruned model as plain (dense-shaped) weights
        save_pretrained_model(model, Path(args.out) / "model", tokenizer)
    if ppl_after is not None:
        print(f"perplexity after:  {ppl_after:.2f}")
    if config is not None:
        print(f"pruned {result.measured_sparsity:.1%} of block weights with {config.method}"
              f"{' ' + str(config.pattern) if config.pattern else ''} in {result.seconds:.1f}s")
    rss = peaks.max_rss_mb()  # over every stage, evaluation and recovery included
    print(f"peak RSS {rss:.0f} MB" + (f" (while pruning {prune_peak:.0f} MB)" if prune_peak else ""))
    sparse_runtime = _sparse_runtime_stage(model, eval_ids, args, ppl, device) if args.sparse_runtime else None
    metrics = {
        "model": str(args.model),
        "method": config.method if config else None,
        "pattern": (str(config.pattern) if config.pattern else "unstructured") if config else None,
        "sparsity_target": config.target_sparsity if config else 0.0,
        "ppl_before": ppl_before,
        "ppl_after": ppl_after,
        "prune_seconds": prune_seconds,
        "peak_rss_mb": rss,
        "prune_peak_rss_mb": prune_peak,
        "memory_by_stage": peaks.by_stage,
        "model_mb": sum(p.numel() * p.element_size() for p in model.parameters()) / 2**20,
        "sparsity_measured": result.measured_sparsity if result else block_sparsity(model),
        "layer_sparsity": result.to_dict()["layer_sparsity"] if result else None,
        "structured": structured_info,
        "params_before": params_before,
        "params": count_params(model),
        "nonzero_params": count_nonzero(model),
        "generation_before": speed_before,
        "generation_after": speed_after,
        "nsamples": args.nsamples if windows is not None else 0,
        "seqlen": args.seqlen,
        "eval_window": args.eval_window,
        "eval_stride": args.eval_stride,
        "eval_tokens": int(min(eval_ids.numel(), args.eval_max_tokens or eval_ids.numel())) if evaluate else 0,
        "config": config.to_dict() if config else None,
        **recovery,
    }
    if sparse_runtime is not None:
        metrics["speed"] = sparse_runtime.pop("speed")
        metrics["sparse_runtime"] = sparse_runtime
    if args.out:
        out = Path(args.out)
        atomic_write_json(out / "metrics.json", metrics)
        print(f"wrote {out / 'metrics.json'} and {out / 'model'}")
        if sparse_runtime is not None:
            from prunekit.sparse_runtime import save_sparse

            save_sparse(model, out / "sparse_runtime.safetensors")
            print(f"wrote {out / 'sparse_runtime.safetensors'} (load with prunekit.load_sparse(model, path))")
        if getattr(model.config, LAYER_SHAPES_FIELD, None):
            print("per-block widths differ: reload with prunekit.llm.structured.load_pruned(folder, "
                  "AutoModelForCausalLM)")
    if speed_before and speed_after:
        note = "" if structured else " (unstructured zeros are not faster on dense kernels)"
        print(f"decode {speed_before['decode_tokens_per_s']:.1f} -> "
              f"{speed_after['decode_tokens_per_s']:.1f} tokens/s; prefill "
              f"{speed_before['prefill_tokens_per_s']:.0f} -> {speed_after['prefill_tokens_per_s']:.0f} "
              f"tokens/s{note}")
    hidden = ("config", "layer_sparsity", "sparse_runtime")
    print(json.dumps({k: v for k, v in metrics.items() if k not in hidden}))
    return 0


def _sparse_runtime_stage(model: Any, eval_ids: Any, args: argparse.Namespace, ppl: Any, device: str) -> dict:
    """Measure dense, convert with ``sparse_inference_`` at decode shape, measure again, same run."""
    import gc

    from prunekit.llm.evaluate import speed_and_memory
    from prunekit.sparse_runtime import SparseInferenceConfig, sparse_inference_

    prompt = eval_ids[:128]
    dense = speed_and_memory(model, prompt)
    one_token = {"input_ids": prompt[:1].reshape(1, 1).to(device), "use_cache": False}
    config = SparseInferenceConfig(value_dtype=args.sparse_dtype, print_table=not args.no_progress)
    report = sparse_inference_(model, one_token, config)
    gc.collect()
    _release_freed_memory()
    sparse = speed_and_memory(model, prompt)
    ppl_sparse = ppl()
    print(f"sparse runtime: {report.converted}/{len(report.layers)} layers packed; decode "
          f"{dense['decode_tokens_per_s']:.1f} -> {sparse['decode_tokens_per_s']:.1f} tokens/s, prefill "
          f"{dense['prefill_tokens_per_s']:.0f} -> {sparse['prefill_tokens_per_s']:.0f} tokens/s, weights "
          f"{dense['weights_mb']:.0f} -> {sparse['weights_mb']:.0f} MB"
          + (f"; perplexity {ppl_sparse:.2f}" if ppl_sparse is not None else ""))
    summary = report.to_dict()
    return {
        "speed": {"dense": dense, "sparse_runtime": sparse},
        "ppl": ppl_sparse,
        "value_dtype": args.sparse_dtype,
        "converted": summary["converted"],
        "eligible": summary["eligible"],
        "threads": summary["threads"],
        "kernels": summary["kernels"],
        "formats": {r["format"]: sum(1 for x in summary["layers"] if x["format"] == r["format"])
                    for r in summary["layers"]},
    }


def _release_freed_memory() -> None:
    """Hand freed heap pages back to the OS (glibc), so RSS shows the dense weights are gone."""
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    if name:
        try:
            ctypes.CDLL(name).malloc_trim(0)
        except (OSError, AttributeError):
            pass
