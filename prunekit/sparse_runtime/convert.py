"""``sparse_inference_``: replace sparse layers by packed ones where, and only where, it is faster.

For every eligible layer (``nn.Linear``; ``nn.Conv2d`` with a 1x1 kernel, stride 1, no
padding, one group) the input it sees in one forward of ``example_input`` is captured;
then the dense layer and each sparse format that fits its zeros are timed on that very
input, on this device and thread count, in interleaved rounds. The fastest is kept; a
sparse format replaces the dense layer only when it beats it by ``min_speedup``, so the
result is never slower than dense, layer by layer.
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from prunekit.errors import ModelError
from prunekit.masks.parametrize import make_permanent
from prunekit.metrics.macs import _call
from prunekit.sparse_runtime.build import kernel_status
from prunekit.sparse_runtime.config import SparseInferenceConfig
from prunekit.sparse_runtime.formats import BLOCK_SHAPES, SparseFormat, fits, nm_pattern, pack, stored_count
from prunekit.sparse_runtime.module import SparseLinear
from prunekit.sparse_runtime.ops import sparse_mm
from prunekit.sparse_runtime.report import LayerChoice, SparseInferenceReport
from prunekit.sparse_runtime.timing import time_candidates

#: the column-index format is tried from this sparsity up (below it the bitmask always wins)
INDEX16_FROM = 0.6
#: from this many input rows a layer's product is compute-bound (weights are timed warm)
COMPUTE_BOUND_ROWS = 16


def eligible_weight(module: nn.Module) -> tuple[torch.Tensor, torch.Tensor | None, bool] | None:
    """``(weight [out, in], bias, is_conv1x1)`` for a layer the runtime can run, else None.

    Example:
        >>> eligible_weight(nn.Conv2d(3, 8, 3)) is None, eligible_weight(nn.Linear(4, 2))[0].shape
        (True, torch.Size([2, 4]))
    """
    if isinstance(module, nn.Linear):
        return module.weight, module.bias, False
    if (
        isinstance(module, nn.Conv2d)
        and module.kernel_size == (1, 1)
        and module.stride == (1, 1)
        and module.padding in ((0, 0), "valid")
        and module.groups == 1
    ):
        return module.weight.reshape(module.out_channels, module.in_channels), module.bias, True
    return None


def candidate_formats(weight: torch.Tensor, config: SparseInferenceConfig) -> list[SparseFormat]:
    """The formats worth timing for ``weight``: those allowed whose storage fits its zeros.

    Example:
        >>> w = torch.zeros(8, 32); w[:, :8] = 1.0
        >>> [f.label for f in candidate_formats(w, SparseInferenceConfig())]
        ['unstructured', 'unstructured+index16', 'block1x4', 'block4x1', 'block4x4']
    """
    dtype = config.value_dtype
    nnz = int((weight != 0).sum())
    sparsity = 1.0 - nnz / max(1, weight.numel())
    out: list[SparseFormat] = []
    nm = nm_pattern(weight) if "nm" in config.formats else None
    if nm is not None:
        out.append(SparseFormat("nm", dtype=dtype))
    elif "unstructured" in config.formats:
        out.append(SparseFormat("unstructured", dtype=dtype))
    if ("unstructured" in config.formats or nm) and sparsity >= INDEX16_FROM:
        index16 = SparseFormat("nm" if nm else "unstructured", dtype=dtype, index="index16")
        if fits(weight.shape, index16):
            out.append(index16)
    if "block" in config.formats:
        for rows, cols in BLOCK_SHAPES:
            fmt = SparseFormat("block", rows=rows, cols=cols, dtype=dtype)
            # offered only where the zeros form such blocks (at most 10% stored zeros)
            if fits(weight.shape, fmt) and stored_count(weight, fmt) <= 1.1 * nnz:
                out.append(fmt)
    return out


@contextmanager
def _threads(n: int | None):
    previous = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def capture_inputs(model: nn.Module, names: list[str], example_input: Any) -> dict[str, torch.Tensor]:
    captured: dict[str, torch.Tensor] = {}
    handles = []
    modules = dict(model.named_modules())
    for name in names:
        def hook(_mod, args, _name=name):
            if _name not in captured and args and isinstance(args[0], torch.Tensor):
                captured[_name] = args[0].detach().clone()
        handles.append(modules[name].register_forward_pre_hook(hook))
    try:
        with torch.no_grad():  # not inference_mode: packed buffers built from these must stay normal tensors
            _call(model, example_input)
    finally:
        for h in handles:
            h.remove()
    return captured


def _shared_weights(model: nn.Module) -> set[int]:
    """Storage pointers of parameters that more than one module holds (tied weights)."""
    seen: dict[int, int] = {}
    for _, module in model.named_modules():
        for p in module.parameters(recurse=False):
            ptr = p.data_ptr()
            seen[ptr] = seen.get(ptr, 0) + 1
    return {ptr for ptr, count in seen.items() if count > 1}


def l2_cache_bytes() -> int:
    """This CPU's per-core L2 cache size (Linux sysfs; 2 MiB where it cannot be read).

    Example:
        >>> l2_cache_bytes() > 0
        True
    """
    try:
        text = Path("/sys/devices/system/cpu/cpu0/cache/index2/size").read_text().strip()
        unit = {"K": 2**10, "M": 2**20}.get(text[-1], 1)
        return int(text.rstrip("KM")) * unit
    except (OSError, ValueError):
        return 2 * 2**20


def set_submodule(model: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent_name) if parent_name else model, child, new)


def _dense_fn(w: torch.Tensor, bias: torch.Tensor | None, x: torch.Tensor, conv: bool):
    """The dense layer on its effective weight (a masked layer's mask multiply is not timed)."""
    if conv:
        w4 = w.reshape(*w.shape, 1, 1)
        return lambda: F.conv2d(x, w4, bias)
    return lambda: F.linear(x, w, bias)


def sparse_inference_(
    model: nn.Module, example_input: Any, config: SparseInferenceConfig | None = None
) -> SparseInferenceReport:
    """Convert ``model`` in place so sparse layers run packed where that is faster; return the report.

    Args:
        model: any model; masked layers (``sparsify_``) and plain layers with zeros both work.
        example_input: what the model is called with (tensor, tuple or kwargs dict), at the
            batch size it will serve: the choice is made by timing at that batch.
        config: :class:`SparseInferenceConfig` (formats, value dtype, threads, ...).

    Returns:
        A :class:`SparseInferenceReport` (per layer: sparsity, format chosen, dense and
        sparse microseconds), printed as a table unless ``config.print_table`` is False.
        Masks (``sparsify_``) of layers left dense are made permanent: at inference a
        mask multiply per call is pure overhead.

    Example:
        >>> import prunekit
        >>> net = nn.Sequential(nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 10))
        >>> _ = prunekit.sparsify_(net, prunekit.SparsifyConfig(amount=0.9))
        >>> x = torch.randn(1, 256)
        >>> before = net(x)
        >>> report = prunekit.sparse_inference_(net, x, SparseInferenceConfig(print_table=False))
        >>> torch.allclose(net(x), before, atol=1e-5), len(report.layers)
        (True, 2)
    """
    cfg = config or SparseInferenceConfig()
    if not isinstance(model, nn.Module):
        raise ModelError(f"sparse_inference_ needs an nn.Module, got {type(model).__name__}")
    status = kernel_status()
    excluded = lambda n: any(n == e or n.startswith(e + ".") for e in cfg.exclude)  # noqa: E731
    names = [n for n, m in model.named_modules() if eligible_weight(m) is not None and not excluded(n)]
    was_training = model.training
    model.eval()
    tied = _shared_weights(model)
    total = sum(eligible_weight(model.get_submodule(n))[0].numel() * 4 for n in names)  # type: ignore[index]
    cold = cfg.cache == "cold" or (cfg.cache == "auto" and total > l2_cache_bytes())
    choices: dict[str, tuple[SparseLinear | None, LayerChoice]] = {}
    with _threads(cfg.threads), torch.no_grad():
        inputs = capture_inputs(model, names, example_input)
        for name in names:
            module = model.get_submodule(name)
            weight, bias, conv = eligible_weight(module)  # type: ignore[misc]
            w = weight.detach()
            n, k = w.shape
            nnz = int((w != 0).sum())
            sparsity = 1.0 - nnz / max(1, w.numel())
            dense_bytes = w.numel() * w.element_size()
            row = LayerChoice(name, (n, k), 0, sparsity, "dense", None, None, dense_bytes, dense_bytes)
            x = inputs.get(name)
            if x is None:
                row.reason = "not called by the example input"
            elif any(p.data_ptr() in tied for p in module.parameters(recurse=False)):
                row.reason = "tied weight"
            elif w.device.type != "cpu":
                from prunekit.sparse_runtime.cuda import choose_cuda

                choices[name] = choose_cuda(module, w, bias, x, row, cfg)
                continue
            elif sparsity < cfg.min_sparsity:
                row.reason = f"sparsity < {cfg.min_sparsity:g}"
            elif not status.compiled:
                row.reason = "no compiled kernels"
            if row.reason:
                choices[name] = (None, row)
                continue
            flat = x.permute(0, 2, 3, 1).reshape(-1, k) if conv else x
            row.batch = flat.numel() // k
            packed = {f.label: pack(w, f) for f in candidate_formats(w, cfg)}
            fns = {"dense": _dense_fn(w, bias, x, conv)}
            fns.update({label: (lambda p=p, x=flat, b=bias: sparse_mm(x, p, b)) for label, p in packed.items()})
            reads = {label: [p.values, p.index, p.group_ptr] for label, p in packed.items()}
            reads["dense"] = [w]
            # a few input rows stream the weights (memory-bound: cache state decides); from
            # COMPUTE_BOUND_ROWS rows on the product is compute-bound and timed as it runs
            cold_here = cold and row.batch < COMPUTE_BOUND_ROWS
            times = time_candidates(fns, rounds=cfg.rounds, cold=reads if cold_here else None)
            row.dense_us = times.pop("dense")
            row.candidates_us = dict(times)
            best = min(times, key=times.get) if times else None
            if best is not None and times[best] * cfg.min_speedup <= row.dense_us:
                row.format, row.sparse_us = best, times[best]
                row.stored_bytes = packed[best].nbytes
                choices[name] = (SparseLinear(packed[best], bias, conv1x1=conv), row)
            else:
                row.sparse_us = times[best] if best else None
                row.reason = "dense is faster" if best else "no format fits"
                choices[name] = (None, row)
        inputs.clear()
    for name, (new, _) in choices.items():
        if new is not None:
            set_submodule(model, name, new)
    try:  # layers left dense: bake their masks in, a mask multiply per call is pure overhead here
        make_permanent(model)
    except ModelError:
        pass  # a user parametrization besides our mask: leave those layers as they are
    model.train(was_training)
    report = SparseInferenceReport(
        [row for _, row in choices.values()],
        threads=cfg.threads or torch.get_num_threads(),
        cache="cold" if cold else "warm",
        kernels=status.isa if status.compiled else f"none ({status.reason})",
    )
    if cfg.print_table:
        report.print()
    return report
