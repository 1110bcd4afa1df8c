"""A forward check of a block removal: does the model a config rebuilds compute what the
pruned model computes?

The rebuild checks of :mod:`~prunekit.llm.structured.layer_fields` compare what a reload
builds on the meta device (parameter shapes, module classes, construction-time
attributes). When two config readings pass them alike (a pair such as Mamba-2's
``time_step_limit = (0.0, inf)`` read as one entry per layer of a 2-layer model: cut to
``(inf,)`` it still builds, and the kept block's ``dt_limit`` attribute "matches" as a
per-layer copy), only running the models tells them apart. :func:`removal_logits_gap`
runs both sides on a few tokens without copying a weight:

* the pruned model as it will compute: the live model with each removed block turned into
  the identity (a forward hook hands its input hidden states on as its output), so the kept
  blocks keep their own attributes and layer indices;
* the rebuild: ``type(model)(config)`` built on the meta device, every parameter and buffer
  then pointing at the live model's tensor of the same (renumbered) name.

It returns the largest logit difference relative to ``max(1, largest |logit|)``, or None
when the check cannot run (a tensor the rebuild creates that the live model does not hold,
a block whose output is not its hidden states, a model that needs more than
``input_ids``): the caller then keeps its default.

Example:
    >>> from transformers import LlamaConfig, LlamaForCausalLM
    >>> m = LlamaForCausalLM(LlamaConfig(num_hidden_layers=3, hidden_size=16, intermediate_size=32,
    ...                                  num_attention_heads=2, vocab_size=32))
    >>> cfg = LlamaConfig(**{**m.config.to_dict(), "num_hidden_layers": 2})
    >>> removal_logits_gap(m, "model.layers", [1], cfg) < 1e-5
    True
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from prunekit.llm.structured.layer_build import meta_build
from prunekit.llm.structured.layer_index import renumbered

_TOKENS = 8


def _logits(output: Any) -> torch.Tensor:
    logits = getattr(output, "logits", None)
    if logits is None:
        logits = output[0] if isinstance(output, (tuple, list)) else output
    if not isinstance(logits, torch.Tensor):
        raise TypeError("the model returns no logits tensor")
    return logits.float()


def _skip_hook(module: nn.Module, args: tuple, kwargs: dict, output: Any) -> Any:
    """The block's output with its hidden states replaced by its input ones (an identity block)."""
    hidden = args[0] if args else kwargs.get("hidden_states")
    if not isinstance(hidden, torch.Tensor):
        raise TypeError("the block's input hidden states are not found")
    if isinstance(output, torch.Tensor) and output.shape == hidden.shape:
        return hidden
    if isinstance(output, tuple) and output and isinstance(output[0], torch.Tensor) \
            and output[0].shape == hidden.shape:
        return (hidden, *output[1:])
    raise TypeError("the block's output is not its hidden states")


@contextmanager
def _skipped(blocks: nn.ModuleList, drop: list[int]) -> Iterator[None]:
    handles = [blocks[i].register_forward_hook(_skip_hook, with_kwargs=True) for i in drop]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


@contextmanager
def _eval(model: nn.Module) -> Iterator[None]:
    modes = {m: m.training for m in model.modules()}
    model.eval()
    try:
        yield
    finally:
        for m, mode in modes.items():
            m.train(mode)


def _attached(model: nn.Module, fresh: nn.Module, path: str, drop: list[int]) -> bool:
    """Point every parameter and buffer of the meta-built ``fresh`` at the live tensor of the
    same name after the removal (no copy); False if one is missing or of another shape."""
    live = {n: t for n, t in model.named_parameters(remove_duplicate=False)}
    live.update(model.named_buffers(remove_duplicate=False))
    after = renumbered(live, path, drop)
    wanted = [*fresh.named_parameters(remove_duplicate=False), *fresh.named_buffers(remove_duplicate=False)]
    for name, tensor in wanted:
        source = after.get(name)
        if source is None or tuple(source.shape) != tuple(tensor.shape):
            return False
        owner_name, _, leaf = name.rpartition(".")
        owner = fresh.get_submodule(owner_name) if owner_name else fresh
        table = owner._parameters if leaf in owner._parameters else owner._buffers
        table[leaf] = source
    return True


def _run(model: nn.Module, ids: torch.Tensor) -> torch.Tensor:
    kwargs: dict[str, Any] = {"input_ids": ids}
    if "use_cache" in inspect.signature(model.forward).parameters:
        kwargs["use_cache"] = False
    with torch.no_grad():
        return _logits(model(**kwargs))


def removal_logits_gap(model: nn.Module, path: str, drop: list[int], config: Any) -> float | None:
    """Largest |logit difference| (relative to ``max(1, largest |logit|)``) on a few tokens
    between ``model`` with blocks ``drop`` of the list at ``path`` skipped and
    ``type(model)(config)`` running on the same tensors; None when the check cannot run
    (see the module docstring). Nothing of ``model`` changes."""
    try:
        fresh = meta_build(model, config)
        if fresh is None or not _attached(model, fresh, path, drop):
            return None
        embeddings = model.get_input_embeddings()
        vocab = int(embeddings.weight.shape[0])
        device = embeddings.weight.device
        ids = (torch.arange(_TOKENS, device=device) * 7 + 3).remainder(vocab).unsqueeze(0)
        blocks = model.get_submodule(path)
        with _eval(model), _skipped(blocks, drop):
            want = _run(model, ids)
        with _eval(fresh):
            got = _run(fresh, ids)
        if got.shape != want.shape or not torch.isfinite(want).all():
            return None
        return float((got - want).abs().max()) / max(1.0, float(want.abs().max()))
    except Exception:  # a model this check cannot drive: the caller keeps its default reading
        return None


SAME_LOGITS = 1e-4  # relative logit gap under which a rebuild computes what the pruned model does


def settle_cut_readings(ambiguous: dict[str, tuple[Any, Any]], put: Callable[[str, Any], None],
                        rebuilds: Callable[[], bool], gap: Callable[[], float | None]) -> None:
    """For each config field ``name -> (cut, whole)`` that a block removal cut per layer while
    the whole value may be meant (Mamba-2's pair ``time_step_limit = (0.0, inf)`` in a 2-layer
    model, cut to ``(inf,)``): the whole value is put back when its config still ``rebuilds``
    the model and computes what the pruned one does while the cut one does not (``gap``: the
    relative logit gap of the current config, None when the check cannot run). The cut stays
    when both agree (a few tokens may not tell a window from full attention) or the check
    cannot run.

    Example:
        >>> cfg = {"limit": (float("inf"),)}
        >>> put = cfg.__setitem__
        >>> gap = lambda: 0.0 if len(cfg["limit"]) == 2 else None
        >>> settle_cut_readings({"limit": ((float("inf"),), (0.0, float("inf")))}, put, lambda: True, gap)
        >>> cfg["limit"]
        (0.0, inf)
    """
    for name, (cut, whole) in ambiguous.items():
        put(name, whole)
        if rebuilds():
            gap_whole = gap()
            put(name, cut)
            gap_cut = gap()
            if gap_whole is not None and gap_whole <= SAME_LOGITS and (gap_cut is None or gap_cut > SAME_LOGITS):
                put(name, whole)
        else:
            put(name, cut)
