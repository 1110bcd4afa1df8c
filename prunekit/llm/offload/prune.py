"""Out-of-core one-shot pruning: one decoder block in memory at a time.

The model is built on the meta device; the embeddings are loaded to turn the
calibration windows into block 0's inputs; then for every block in order: load its
tensors from the safetensors shards, prune it with the very per-block routine of
:func:`prunekit.llm.prune_llm` (``prune_block``: one pass when the calibration tokens fit
``single_pass_mb``, else two; permutation and block fit included), its inputs read from the
:class:`ActivationStore` (in memory or spilled to disk), make its pruned outputs the next
block's inputs, write it as one output shard, free it. Masks and weights are identical to
the in-memory path.
"""

from __future__ import annotations

import gc
import json
import os
import shutil
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from prunekit.errors import ConfigError, UnsupportedOpError
from prunekit.io import atomic_write_text
from prunekit.io.atomic import current_umask
from prunekit.llm.blocks import find_blocks, find_linears
from prunekit.llm.config import LLMPruneConfig
from prunekit.llm.layers import parallel_lists
from prunekit.llm.memory import peak_rss_mb, trim_heap
from prunekit.llm.methods.dense_stream import DenseStream
from prunekit.llm.offload.activations import ActivationStore
from prunekit.llm.offload.config import OutOfCoreConfig, resolve_device
from prunekit.llm.offload.shards import ShardReader, ShardWriter
from prunekit.llm.offload.skeleton import empty_model, materialize, release
from prunekit.llm.offload.streaming import outside_blocks
from prunekit.llm.precision import resolve_calib_dtype
from prunekit.llm.progress import layer_progress
from prunekit.llm.prune import LLMPruneResult, calibration_batches, check_patterns, prune_block, prune_linear
from prunekit.llm.sequential import BlockInputs, BlockRun, capture_block_inputs, layout_bytes, mergeable
from prunekit.llm.single_pass import fits_single_pass, widest_output

DTYPE = torch.float32


@dataclass
class OutOfCoreResult(LLMPruneResult):
    """An :class:`LLMPruneResult` plus where the activations lived and the memory plan."""

    output: str = ""
    spilled: bool = False
    activation_mb: float = 0.0
    block_mb: float = 0.0
    device: str = "cpu"
    #: after each block is written and freed: the process's resident set and its peak so far, MB
    rss_mb_after_block: list[float] = field(default_factory=list)
    peak_rss_mb_after_block: list[float] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "output": self.output, "spilled": self.spilled,
                "activation_mb": self.activation_mb, "block_mb": self.block_mb, "device": self.device,
                "rss_mb_after_block": [round(x, 1) for x in self.rss_mb_after_block],
                "peak_rss_mb_after_block": [round(x, 1) for x in self.peak_rss_mb_after_block]}


def _bytes(module: nn.Module) -> int:
    return sum(p.numel() * DTYPE.itemsize for p in module.parameters())


def _current_rss() -> int:
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def _working_bytes(blocks: nn.ModuleList, gram: bool) -> int:
    """One block's weights and their serialised shard, a linear's pruning copies, the block's
    statistics and, with Hessians, the three float64 ``in x in`` factors SparseGPT /
    reconstruction hold at once."""
    block = max(blocks, key=_bytes)
    linears = list(find_linears(block).values())
    widths = [lin.weight.shape[-1] for lin in linears]
    stats = sum((w**2 if gram else w) * 4 for w in widths)
    factors = 3 * max(widths) ** 2 * 8 if gram else 0
    copies = 4 * max(lin.weight.numel() for lin in linears) * DTYPE.itemsize
    return 2 * _bytes(block) + copies + stats + factors


def _write_config(folder: Path, out: Path, tokenizer: Any) -> None:
    """config.json (weights now float32), generation_config.json and the tokenizer files."""
    config = json.loads((folder / "config.json").read_text())
    for key in ("dtype", "torch_dtype"):
        if key in config:
            config[key] = "float32"
    config.pop("quantization_config", None)
    atomic_write_text(out / "config.json", json.dumps(config, indent=2, sort_keys=True) + "\n")
    gen = folder / "generation_config.json"
    if gen.is_file():
        atomic_write_text(out / "generation_config.json", gen.read_text())
    if tokenizer is not None:
        tokenizer.save_pretrained(str(out))


def prune_llm_out_of_core(
    folder: str | os.PathLike[str],
    out: str | os.PathLike[str],
    calibration: torch.Tensor | list[dict[str, Any]] | None,
    config: LLMPruneConfig,
    offload: OutOfCoreConfig | None = None,
    *,
    tokenizer: Any = None,
    progress: bool = True,
) -> OutOfCoreResult:
    """Prune a Hugging Face checkpoint folder block by block into ``out`` (a sharded HF folder).

    Args:
        folder: a folder with ``config.json`` and safetensors weights (sharded or not).
        out: the output folder; it reloads with ``AutoModelForCausalLM.from_pretrained``.
        calibration: ``(nsamples, seqlen)`` token windows or ``model(**batch)`` dicts, as for
            :func:`prunekit.llm.prune_llm`; None for plain magnitude.
        config: method, sparsity / N:M pattern, reconstruction (OWL is not supported here).
        offload: memory budget, device and spilling of the activations.
        tokenizer: saved into ``out`` when given.

    Returns:
        An :class:`OutOfCoreResult` (per-block sparsities, seconds, whether activations spilled).

    Example:
        >>> import tempfile
        >>> from transformers import LlamaConfig, LlamaForCausalLM
        >>> src, dst = tempfile.mkdtemp(), tempfile.mkdtemp()
        >>> LlamaForCausalLM(LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        ...     num_attention_heads=4, vocab_size=50)).save_pretrained(src)
        >>> r = prune_llm_out_of_core(src, dst, torch.randint(0, 50, (4, 16)), LLMPruneConfig("wanda", 0.5),
        ...     OutOfCoreConfig(max_memory="2GB"), progress=False)
        >>> round(r.measured_sparsity, 2), sorted(os.listdir(dst))[-1]
        (0.5, 'model.safetensors.index.json')
    """
    offload = offload or OutOfCoreConfig()
    if config.owl:
        raise ConfigError("owl needs a dense pass over every block before pruning; it is not available "
                          "out of core: drop owl (or max_memory to prune in memory)")
    folder, out = Path(folder), Path(out)
    device = resolve_device(offload.device)
    reader = ShardReader(folder)
    model = empty_model(folder, dtype=DTYPE)
    path, blocks = find_blocks(model)
    if parallel_lists(model, path, blocks):
        raise UnsupportedOpError(f"{type(model).__name__} keeps each layer's parts in parallel lists (beside {path}): "
                                 "out-of-core pruning replays one block at a time; prune it in memory (prune_llm)")
    check_patterns(blocks, path, config)
    batches = calibration_batches(calibration, config) if config.needs_calibration else []
    gram = config.method == "sparsegpt" or config.layer_fit  # as prune_llm
    working = _working_bytes(blocks, gram or config.block_fit)
    embed_names = outside_blocks(model, head=False) if batches else []
    params = dict(model.named_parameters())
    embed_bytes = sum(params[n].numel() * DTYPE.itemsize for n in embed_names)
    needed = max(working, embed_bytes)  # the embeddings are freed before the first block is loaded
    if needed > offload.max_memory:
        raise ConfigError(
            f"max_memory {offload.max_memory / 1e9:.2f} GB is below what one block of {path} needs "
            f"(~{needed / 1e9:.2f} GB: weights, pruning copies, statistics; or the embeddings); "
            f"use at least {(needed + _current_rss()) / 1e9:.1f}GB"
        )
    room = offload.max_memory - needed - _current_rss()
    start = time.perf_counter()
    result = OutOfCoreResult(block_path=path, output=str(out), device=device,
                             block_mb=max(_bytes(b) for b in blocks) / 2**20)
    scratch = offload.scratch_dir or str(out.parent)
    store = ActivationStore(device=device)
    args: list[tuple[Any, ...]] = []
    kwargs: list[dict[str, Any]] = []
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    others = [n for n in reader.names() if not n.startswith(path + ".")]
    # one shard per block, and one per tensor outside the blocks (embeddings and head are the
    # largest tensors: written one at a time, each in memory once, streamed to the file)
    writer = ShardWriter(partial, shards=len(blocks) + len(others))
    zeros = total = 0
    try:
        if batches:
            materialize(model, "", reader, dtype=DTYPE, device=device, only=embed_names)
            for batch in batches:
                captured = capture_block_inputs(model, blocks, [batch])
                hidden = captured.hidden[0].to("cpu")
                spill = offload.spill == "disk" or (
                    offload.spill == "auto" and store.nbytes() + hidden.numel() * hidden.element_size() > room)
                if spill:
                    store.spill(scratch)
                store.append(hidden)
                args.append(captured.args[0])
                kwargs.append(captured.kwargs[0])
            release(model)
            _check_single_pass_room(store, args, kwargs, blocks, config, offload.max_memory - working)
        result.spilled = store.on_disk
        result.activation_mb = store.nbytes() / 2**20
        result.layer_sparsity = [config.target_sparsity] * len(blocks)
        label = f"{config.method} {config.pattern or config.sparsity} (out of core)"
        stream = DenseStream(store) if batches and config.reconstruct != "none" else None  # (in memory)
        with layer_progress(label, len(blocks), enabled=progress) as advance:
            for i, block in enumerate(blocks):
                prefix = f"{path}.{i}."
                materialize(block, prefix, reader, dtype=DTYPE, device=device)
                if batches:  # the very per-block routine of prune_llm, inputs from the store
                    run = BlockRun(block, BlockInputs(store, args, kwargs),
                                   resolve_calib_dtype(config.calib_dtype, device, DTYPE))
                    fit = prune_block(block, run, config.target_sparsity, config, gram, stream)
                    if fit is not None:
                        result.block_errors.append((fit.error_before, fit.error_after))
                    if i + 1 < len(blocks):
                        run.advance()
                else:
                    for lin in find_linears(block).values():
                        prune_linear(lin, None, config.target_sparsity, config)
                for lin in find_linears(block).values():
                    zeros += int((lin.weight == 0).sum())
                    total += lin.weight.numel()
                writer.write({prefix + k: v for k, v in block.state_dict().items()})
                release(block)
                gc.collect()  # tensors held in reference cycles (hooks, closures) go now, not later
                trim_heap()  # and the freed heap pages go back to the system
                result.rss_mb_after_block.append(_current_rss() / 2**20)
                result.peak_rss_mb_after_block.append(peak_rss_mb())
                advance()
        store.close()
        args.clear()
        kwargs.clear()
        for name in others:
            writer.write(reader.read([name], dtype=DTYPE))
        writer.finish()
        _write_config(folder, partial, tokenizer)
        _replace_folder(partial, out)
    finally:
        store.close()
        shutil.rmtree(partial, ignore_errors=True)
    result.seconds = time.perf_counter() - start
    result.measured_sparsity = zeros / max(total, 1)
    return result


def _replace_folder(new: Path, target: Path) -> None:
    """Put the finished folder ``new`` at ``target`` (a previous ``target`` is replaced whole)."""
    os.chmod(new, 0o777 & ~current_umask())
    if target.exists():
        old = target.with_name(f".{target.name}.old-{os.getpid()}")
        os.replace(target, old)
        os.replace(new, target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(new, target)


def _check_single_pass_room(store: ActivationStore, args: list[tuple[Any, ...]], kwargs: list[dict[str, Any]],
                            blocks: nn.ModuleList, config: LLMPruneConfig, room: int) -> None:
    """Warn when one-pass pruning (every calibration token of a block at once) may not fit
    ``room``. The decision stays :func:`fits_single_pass`'s, a function of sizes and
    ``config`` alone, so that out of core and in memory give the same weights; the estimate
    (:func:`layout_bytes`) is generous, hence a warning, not an error."""
    shapes, itemsize = store.layout()
    widest = max(widest_output(b) for b in blocks)
    if not fits_single_pass(shapes, itemsize, widest, config) or not mergeable(BlockInputs(store, args, kwargs)):
        return
    merged = layout_bytes(shapes, itemsize, widest)
    need = merged + (store.nbytes() if store.on_disk else 0)  # spilled activations are read back
    if need > room - _current_rss():
        warnings.warn(
            f"one-pass pruning of all calibration tokens may need ~{need / 1e9:.2f} GB beside one block, "
            f"more than max_memory leaves; if memory runs out, set single_pass_mb below {merged // 2**20} "
            f"(or 0) for two passes per block (in memory the same setting gives the same weights)",
            RuntimeWarning, stacklevel=3,
        )
