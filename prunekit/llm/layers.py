"""A model's layers where a layer is one module, or the i-th entry of parallel lists.

Most models keep each transformer layer in one module of a block list (``model.layers.3``):
:func:`prunekit.llm.blocks.find_blocks` finds that list and a block's forward is a layer.
Some keep each layer's parts in sibling lists indexed together by the parent's forward
(XLM: ``attentions``, ``layer_norm1``, ``ffns``, ``layer_norm2``). :func:`find_layers` then
returns a list of :class:`ParallelLayer` views: layer ``i`` holds the ``i``-th entry of every
sibling ``ModuleList`` of the block list's length whose entries are of other classes, under
the same parent (found from the module structure alone). A view shares the model's modules
(it never becomes part of the model) and names them as the model does below the parent
(``attentions.0.q_lin``), so ``f"{block_prefix(...)}.{name}"`` is the model's own name.

A view has no forward of its own (the glue between the parts lives in the parent's forward):
calibration runs the whole model with hooks (:mod:`prunekit.llm.layer_run`), and
:func:`hook_layer` puts a layer's entry / exit hooks on its first / last entry, in the order
one probe forward calls them (:func:`call_order`: a pre-norm layer calls its norm first).

Example:
    >>> from torch import nn
    >>> class Net(nn.Module):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.attn = nn.ModuleList([nn.Linear(4, 4) for _ in range(2)])
    ...         self.ffn = nn.ModuleList([nn.Sequential(nn.Linear(4, 8), nn.Linear(8, 4)) for _ in range(2)])
    ...     def forward(self, x):
    ...         for a, f in zip(self.attn, self.ffn):
    ...             x = f(a(x))
    ...         return x
    >>> path, layers = find_layers(Net())
    >>> [name for name, m in layers[1].named_modules() if isinstance(m, nn.Linear)]
    ['attn.1', 'ffn.1.0', 'ffn.1.1']
    >>> block_prefix(path, layers, 1)
    ''
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from prunekit.errors import UnsupportedOpError
from prunekit.llm.blocks import find_blocks, is_prunable_linear


class ParallelLayer(nn.Module):
    """Layer ``index`` of a model whose layer parts sit in parallel lists (a view, no forward).

    Children are named after the lists and hold the entry under its index, so a module's
    name inside the view is its name below ``prefix`` (the lists' parent path) in the model.
    ``entries`` are the layer's modules in the order of ``lists`` (the forward's, see :func:`call_order`).
    """

    def __init__(self, prefix: str, index: int, lists: dict[str, nn.ModuleList]) -> None:
        super().__init__()
        self.prefix = prefix
        self.index = index
        self.entries: list[nn.Module] = []
        for name, modules in lists.items():
            slot = nn.Module()
            slot.add_module(str(index), modules[index])
            self.add_module(name, slot)
            self.entries.append(modules[index])

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        raise UnsupportedOpError(
            f"layer {self.index} of {self.prefix or 'the model'} is spread over parallel lists "
            f"({', '.join(n for n, _ in self.named_children())}); it runs only inside the model's forward")


def layer_parts(model: nn.Module, path: str) -> list[str]:
    """Paths of the ``nn.ModuleList``s beside the one at ``path`` (same parent module, same
    length) that hold other classes: the other parts of each layer, when a model keeps a
    layer's pieces in parallel lists (XLM: ``attentions``, ``layer_norm1``, ``ffns``,
    ``layer_norm2``, indexed together by its forward). Removing layer ``i`` removes entry
    ``i`` of every part; the rebuild check decides whether that is the model the config
    builds.

    Example:
        >>> from torch import nn
        >>> m = nn.Module(); m.att = nn.ModuleList([nn.Linear(2, 2)] * 2)
        >>> m.norm = nn.ModuleList([nn.LayerNorm(2)] * 2); m.other = nn.ModuleList([nn.LayerNorm(2)] * 3)
        >>> layer_parts(m, "att")
        ['norm']
    """
    parent_path, _, _ = path.rpartition(".")
    parent = model.get_submodule(parent_path) if parent_path else model
    blocks = model.get_submodule(path)
    kinds = [type(b) for b in blocks]
    prefix = parent_path + "." if parent_path else ""
    return [prefix + name for name, child in parent.named_children()
            if isinstance(child, nn.ModuleList) and prefix + name != path and len(child) == len(blocks)
            and [type(b) for b in child] != kinds]


def parallel_lists(model: nn.Module, path: str, blocks: nn.ModuleList) -> dict[str, nn.ModuleList]:
    """The block list and its sibling lists holding the other parts of each layer, by attribute
    name in registration order; ``{}`` when the block list has none (a layer is one module).

    A sibling counts when it is one of :func:`layer_parts` whose entries are all of other
    classes than the block list's, and at least one such sibling holds a prunable linear (a
    layer's parts that calibration and discovery must see)."""
    parent_path, _, name = path.rpartition(".")
    parent = model.get_submodule(parent_path) if parent_path else model
    kinds = {type(b) for b in blocks}
    siblings = {p.rpartition(".")[2] for p in layer_parts(model, path)
                if not kinds & {type(e) for e in model.get_submodule(p)}}
    lists = {n: m for n, m in parent.named_children() if n == name or n in siblings}
    if len(lists) < 2 or not any(is_prunable_linear(x) for n, m in lists.items() if n != name
                                 for e in m for x in e.modules()):
        return {}
    return lists


class _Stop(Exception):
    """Raised as the second layer starts during the call-order probe."""


def call_order(model: nn.Module, lists: dict[str, nn.ModuleList]) -> dict[str, nn.ModuleList]:
    """``lists`` in the order the model's forward calls their first entries (one forward of
    ``model.dummy_inputs`` up to the second layer); lists not called there keep their place
    after the called ones. Unchanged where the model has no dummy inputs or the forward fails
    (registration order, the usual forward order, is then assumed)."""
    inputs = getattr(model, "dummy_inputs", None)
    if not isinstance(inputs, dict) or not inputs:
        return lists
    seen: list[str] = []

    def record(name: str) -> Callable[..., None]:
        def hook(*_: Any) -> None:
            if name not in seen:
                seen.append(name)
        return hook

    def stop(*_: Any) -> None:
        raise _Stop

    handles = [m[0].register_forward_pre_hook(record(n)) for n, m in lists.items()]
    if len(next(iter(lists.values()))) > 1:
        handles += [m[1].register_forward_pre_hook(stop) for m in lists.values()]
    device = next(model.parameters()).device
    try:  # (the caller's random stream is left as it was: a model in training mode runs dropout here)
        with torch.no_grad(), torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            model(**{k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in inputs.items()})
    except _Stop:
        pass
    except Exception:  # a forward needing more than the dummy inputs: registration order
        return lists
    finally:
        for h in handles:
            h.remove()
    return {n: lists[n] for n in [*seen, *(n for n in lists if n not in seen)]}


def find_layers(model: nn.Module) -> tuple[str, nn.ModuleList]:
    """``(path, layers)``: :func:`~prunekit.llm.blocks.find_blocks`'s, or, where each layer's
    parts sit in parallel lists, a ``ModuleList`` of :class:`ParallelLayer` views (``path`` is
    still the block list's, for messages and layer removal) with their entries in call order
    (:func:`call_order`)."""
    path, blocks = find_blocks(model)
    lists = parallel_lists(model, path, blocks)
    if not lists:
        return path, blocks
    lists = call_order(model, lists)
    prefix = path.rpartition(".")[0]
    views = nn.ModuleList()
    for i in range(len(blocks)):
        views.append(ParallelLayer(prefix, i, lists))  # (append: ModuleList's constructor would not copy)
    return path, views


def is_parallel(blocks: nn.ModuleList) -> bool:
    """Whether ``blocks`` (from :func:`find_layers`) are parallel-list views."""
    return len(blocks) > 0 and isinstance(blocks[0], ParallelLayer)


def block_prefix(path: str, blocks: nn.ModuleList, index: int) -> str:
    """The model name that block ``index``'s own module names follow (``path.index``, or
    a view's parent path); join with :func:`join_name`."""
    block = blocks[index]
    return block.prefix if isinstance(block, ParallelLayer) else f"{path}.{index}"


def join_name(prefix: str, name: str) -> str:
    """``prefix.name`` (just ``name`` at the model's root)."""
    return f"{prefix}.{name}" if prefix and name else prefix or name


def hook_layer(block: nn.Module, pre: Callable[..., Any] | None = None,
               post: Callable[..., Any] | None = None) -> list[Any]:
    """Hooks on entering and leaving one layer; returns the handles.

    ``pre(module, args, kwargs)`` runs before the layer (a view: before the first of its entries
    called in this pass, whichever it is); ``post(module, args, out)`` after it (a view: after
    its last entry in :func:`call_order`).
    """
    if not isinstance(block, ParallelLayer):
        handles = []
        if pre is not None:
            handles.append(block.register_forward_pre_hook(pre, with_kwargs=True))
        if post is not None:
            handles.append(block.register_forward_hook(post))
        return handles
    state = {"open": False}
    handles = []

    def entry(module, args, kwargs):
        if not state["open"]:
            state["open"] = True
            if pre is not None:
                return pre(module, args, kwargs)
        return None

    def leave(module, args, out):
        state["open"] = False
        return post(module, args, out) if post is not None else None

    for module in block.entries:
        handles.append(module.register_forward_pre_hook(entry, with_kwargs=True))
    handles.append(block.entries[-1].register_forward_hook(leave))
    return handles
