"""One-shot pruning of a transformer's block linears: ``prune_llm(model, windows, config)``.

Embeddings, the LM head and anything outside the transformer blocks are left alone.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from prunekit.errors import ConfigError, UnsupportedOpError
from prunekit.llm.blocks import find_linears, set_weight_2d, weight_2d
from prunekit.llm.calibration import causal_lm_batches
from prunekit.llm.config import LLMPruneConfig
from prunekit.llm.hooks import collect_input_stats
from prunekit.llm.layers import find_layers, is_parallel
from prunekit.llm.methods import magnitude_keep_mask, sparsegpt_prune, wanda_keep_mask
from prunekit.llm.methods.block_fit import BlockFit, fit_block
from prunekit.llm.methods.dense_stream import DenseStream, refit_target
from prunekit.llm.methods.permute_fold import permute_block_
from prunekit.llm.methods.reconstruct import reconstruct_masked
from prunekit.llm.methods.wanda import wanda_scores
from prunekit.llm.owl import outlier_ratio, owl_sparsities
from prunekit.llm.precision import autocast_breaks, resolve_calib_dtype
from prunekit.llm.progress import layer_progress
from prunekit.llm.sequential import BlockRun, replace_hidden, sequential_blocks
from prunekit.llm.single_pass import can_single_pass, prune_in_single_pass
from prunekit.patterns.nm import check_nm_divides


@dataclass
class LLMPruneResult:
    """What a run did: per-block sparsity asked for and measured, and wall time."""

    block_path: str
    layer_sparsity: list[float] = field(default_factory=list)
    measured_sparsity: float = 0.0
    seconds: float = 0.0
    block_errors: list[tuple[float, float]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "block_path": self.block_path,
            "layer_sparsity": [round(s, 4) for s in self.layer_sparsity],
            "measured_sparsity": self.measured_sparsity,
            "seconds": self.seconds,
            "block_errors": [[round(a, 6), round(b, 6)] for a, b in self.block_errors],
        }


def check_patterns(blocks: nn.ModuleList, path: str, config: LLMPruneConfig) -> None:
    if config.pattern is None:
        return
    for i, block in enumerate(blocks):
        for name, lin in find_linears(block).items():
            check_nm_divides(weight_2d(lin).shape[1], config.pattern.n, config.pattern.m,
                             where=f"{path}.{i}.{name}")


def calibration_batches(calibration: Any, config: LLMPruneConfig) -> list[dict[str, Any]]:
    if isinstance(calibration, torch.Tensor):
        if calibration.dim() != 2:
            raise ConfigError("calibration windows must be a (nsamples, seqlen) LongTensor")
        return causal_lm_batches(calibration, config.batch_size)
    batches = list(calibration or [])
    if not batches:
        raise ConfigError(f"method {config.method!r} needs calibration data; got none")
    return batches


def prune_linear(lin: nn.Module, stats: Any, sparsity: float, config: LLMPruneConfig,
                 cross: torch.Tensor | None = None) -> None:
    """Prune one linear from its input statistics. With the layer fit and ``cross`` (``X^T D``
    against the dense model's inputs), SparseGPT and the fit aim at the dense model's outputs."""
    w = weight_2d(lin)
    target = w
    if config.layer_fit and cross is not None:
        target = refit_target(w, stats.gram, cross, percdamp=config.percdamp)
    if config.method == "magnitude":
        new_w = w * magnitude_keep_mask(w, sparsity, config.pattern)
    elif config.method == "wanda":
        new_w = w * wanda_keep_mask(w, stats.sq_norm, sparsity, config.pattern)
    else:
        # SparseGPT is invariant to the Hessian's scale (damping is relative to its mean
        # diagonal), so the accumulated X^T X is passed as is: no second (in, in) copy, which
        # for a 10240-wide input is 400 MB beside the float64 factorisation
        new_w, _ = sparsegpt_prune(
            target, stats.gram, sparsity, config.pattern,
            blocksize=config.blocksize, percdamp=config.percdamp,
        )
    if config.layer_fit:
        new_w = reconstruct_masked(target, new_w != 0, stats.gram, percdamp=config.percdamp)
    set_weight_2d(lin, new_w)


def prune_block(block: nn.Module, run: BlockRun, sparsity: float, config: LLMPruneConfig,
                 gram: bool, stream: DenseStream | None = None) -> BlockFit | None:
    """Prune one block from its calibration inputs (one pass when it fits, else two); then
    the block fit when asked. ``run``'s inputs are left for the generator to move on.

    With a ``stream`` (the dense model's activations, advanced here) the reconstruction aims
    at the dense model: the layer fit at each linear's dense-model output (single pass only)
    and the block fit at the dense model's block output, from the pruned model's inputs."""
    linears = find_linears(block)
    dense_outputs = None
    single = can_single_pass(block, run, config)
    dense_inputs = None
    if stream is not None:
        inp = run.inputs
        dense = stream.step(block, inp.args, inp.kwargs, linears if single and config.layer_fit else None)
        dense_inputs = dense.inputs if single and config.layer_fit else None
        dense_outputs = dense.outputs if config.block_fit else None
    if single:
        if config.block_fit and dense_outputs is None:
            dense_outputs = run(keep_outputs=True)
        block_inputs = list(run.inputs.hidden) if dense_outputs is not None else []  # (a store's: a copy)
        prune_in_single_pass(block, run, config, partial_prune(sparsity, config), gram, dense_inputs)
        del dense_inputs
        if dense_outputs is None:
            return None
        replace_hidden(run.inputs.hidden, block_inputs)  # the fit needs the inputs; outputs are recomputed after it
        run.outputs_ready = False
    else:
        with collect_input_stats(linears, gram=gram) as stats:
            outputs = run(keep_outputs=config.block_fit and dense_outputs is None)
        dense_outputs = dense_outputs if dense_outputs is not None else outputs
        if config.permute and config.pattern is not None:
            permute_block_(block, stats, config.method, config.pattern.n, config.pattern.m, config.percdamp)
        for name, lin in linears.items():
            prune_linear(lin, stats[name], sparsity, config)
        del stats
        if dense_outputs is None:
            return None
    inputs = run.inputs
    return fit_block(block, inputs.hidden, inputs.args, inputs.kwargs, dense_outputs,
                     steps=config.block_steps, lr=config.block_lr, bf16=config.block_bf16)


def partial_prune(sparsity: float, config: LLMPruneConfig) -> Any:
    """``prune(module, stats)`` for one block's sparsity (the single-pass hooks call it)."""
    return lambda lin, stats, cross=None: prune_linear(lin, stats, sparsity, config, cross)


def owl_block_ratios(model: nn.Module, batches: list[dict[str, Any]], threshold: float,
                     progress: bool = True) -> list[float]:
    """Outlier ratio of every block, from Wanda scores on the dense model."""
    ratios: list[float] = []
    _, blocks = find_layers(model)
    with layer_progress("OWL outliers", len(blocks), enabled=progress) as advance:
        for _i, block, run in sequential_blocks(model, batches):
            linears = find_linears(block)
            with collect_input_stats(linears, gram=False) as stats:
                run()
            scores = [wanda_scores(weight_2d(m), stats[n].sq_norm) for n, m in linears.items()]
            ratios.append(outlier_ratio(scores, threshold))
            advance()
    return ratios


def prune_llm(
    model: nn.Module,
    calibration: torch.Tensor | list[dict[str, Any]] | None,
    config: LLMPruneConfig,
    *,
    progress: bool = True,
) -> LLMPruneResult:
    """Prune every linear layer inside the model's transformer blocks, in place.

    Args:
        model: a transformers model (Llama/Qwen2/Mistral, GPT-2, OPT, BERT, ViT, ...).
        calibration: ``(nsamples, seqlen)`` token windows for a causal LM, or a list of
            ``model(**batch)`` keyword dicts; may be None for plain magnitude.
        config: method, sparsity or N:M pattern, OWL.
        progress: show a per-layer progress bar.

    Returns:
        An :class:`LLMPruneResult` with per-block sparsities and seconds.

    Example:
        >>> from transformers import LlamaConfig, LlamaForCausalLM
        >>> m = LlamaForCausalLM(LlamaConfig(hidden_size=64, intermediate_size=128,
        ...     num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, vocab_size=100))
        >>> r = prune_llm(m, torch.randint(0, 100, (4, 32)), LLMPruneConfig("wanda", 0.5))
        >>> round(r.measured_sparsity, 2)
        0.5
    """
    path, blocks = find_layers(model)
    check_patterns(blocks, path, config)
    if is_parallel(blocks) and config.reconstruct != "none":
        raise UnsupportedOpError(f"reconstruct={config.reconstruct!r}: {type(model).__name__} keeps each layer's "
                                 f"parts in parallel lists (beside {path}), so a layer cannot be replayed alone "
                                 "for the fit; use reconstruct='none'")
    batches = calibration_batches(calibration, config) if config.needs_calibration else []
    was_training = model.training
    model.eval()
    start = time.perf_counter()
    result = LLMPruneResult(block_path=path)
    try:
        if config.owl:
            ratios = owl_block_ratios(model, batches, config.owl_threshold, progress)
            sparsities = owl_sparsities(ratios, config.sparsity, config.owl_lambda)
        else:
            sparsities = [config.target_sparsity] * len(blocks)
        result.layer_sparsity = sparsities
        label = f"{config.method} {config.pattern or config.sparsity}"
        with layer_progress(label, len(blocks), enabled=progress) as advance:
            if config.method == "magnitude" and config.reconstruct == "none" and not config.permute:
                for i, block in enumerate(blocks):
                    for lin in find_linears(block).values():
                        prune_linear(lin, None, sparsities[i], config)
                    advance()
            else:
                gram = config.method == "sparsegpt" or config.layer_fit
                stream = None
                autocast = calib_autocast(model, config, batches[0] if batches else None)
                for i, block, run in sequential_blocks(model, batches, autocast):
                    if i == 0 and config.reconstruct != "none":
                        stream = DenseStream(run.inputs.hidden)
                    fit = prune_block(block, run, sparsities[i], config, gram, stream)
                    if fit is not None:
                        result.block_errors.append((fit.error_before, fit.error_after))
                    advance()
    finally:
        model.train(was_training)
    result.seconds = time.perf_counter() - start
    result.measured_sparsity = block_sparsity(model)
    return result


def calib_autocast(model: nn.Module, config: LLMPruneConfig, batch: dict | None = None) -> torch.dtype | None:
    """The autocast dtype of ``model``'s calibration forwards under ``config.calib_dtype``; under
    ``"auto"``, None when a forward of ``batch`` fails under autocast only
    (:func:`~prunekit.llm.precision.autocast_breaks`)."""
    param = next(model.parameters())
    dtype = resolve_calib_dtype(config.calib_dtype, param.device, param.dtype)
    auto = dtype is not None and config.calib_dtype == "auto" and batch is not None
    if auto and autocast_breaks(model, batch, dtype):
        return None
    return dtype


def block_sparsity(model: nn.Module) -> float:
    """Fraction of exactly-zero weights over all linear layers inside the transformer blocks."""
    _, blocks = find_layers(model)
    zeros = total = 0
    for block in blocks:
        for lin in find_linears(block).values():
            w = lin.weight
            zeros += int((w == 0).sum())
            total += w.numel()
    return zeros / max(total, 1)
