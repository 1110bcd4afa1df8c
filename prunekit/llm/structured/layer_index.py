"""Blocks renumbered after some are removed: parameter names, module attributes, layer indices.

After blocks ``drop`` of the block list at ``path`` go, block ``i`` becomes block
``i - (number of dropped blocks before i)``; a fresh build of the smaller model also gives
each kept block's layer-index attributes (``layer_idx``, ``layer_id``, ``block_idx``,
``layer_number``) the new index. These pure functions say what a fresh build would hold,
so that :mod:`prunekit.llm.structured.layer_fields` can compare it with the pruned model.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, TypeVar

from torch import nn

_LAYER_INDEX_ATTR = re.compile(r"^(layer|block)_?(idx|id|index|number|num)$")
_PLAIN = (bool, int, float, str, type(None))
V = TypeVar("V")


def _plain(value: Any) -> Any:
    """A construction-time attribute value made comparable, or ``...`` for one not compared
    (modules, tensors, callables, configs)."""
    if isinstance(value, float) and value != value:
        return "nan"
    if isinstance(value, _PLAIN):
        return value
    if isinstance(value, (list, tuple)) and all(isinstance(v, _PLAIN) for v in value):
        return tuple(value)
    return ...


def module_attributes(model: nn.Module) -> dict[str, Any]:
    """Every module's class and plain public attributes, keyed ``"<module path>.#<attribute>"``.

    These are what a module fixes when it is built (``use_rope``, ``sliding_window``,
    ``layer_idx``, ``is_causal``); two models with equal parameters but different values
    here compute different functions. A module shared by several parents (XLM's one
    activation instance in every feed-forward) is listed under every path, so that a block
    keeps its entries when another block that shares it is removed.

    Example:
        >>> m = nn.Sequential(nn.Dropout(0.25))
        >>> module_attributes(m)["0.#p"], module_attributes(m)["0.#class"]
        (0.25, 'Dropout')
    """
    out: dict[str, Any] = {}
    for name, module in model.named_modules(remove_duplicate=False):
        prefix = f"{name}.#" if name else "#"
        out[prefix + "class"] = type(module).__name__
        for attr, value in vars(module).items():
            if attr.startswith("_") or attr == "training":
                continue
            plain = _plain(value)
            if plain is not ...:
                out[prefix + attr] = plain
    return out


def renumber_layer_indices(block: nn.Module, old: int, new: int) -> None:
    """Set every layer-index attribute of ``block`` and its modules (``layer_idx``,
    ``layer_id``, ``block_idx``, ``layer_number``) that holds ``old`` to ``new``, in place.

    Example:
        >>> b = nn.Linear(2, 2); b.layer_idx = 3
        >>> renumber_layer_indices(b, 3, 1); b.layer_idx
        1
    """
    for module in block.modules():
        for attr, value in list(vars(module).items()):
            if _LAYER_INDEX_ATTR.match(attr) and type(value) is int and value == old:
                setattr(module, attr, new)


def _renumber(items: dict[str, V], path: str, drop: list[int],
              value: Callable[[str, V, int, int], V] | None = None) -> dict[str, V]:
    """``items`` keyed by dotted names with the blocks ``drop`` of ``path`` left out and the
    kept blocks renumbered; ``value(rest, v, old, new)`` may change a kept block's value."""
    gone = set(drop)
    prefix = path + "."
    out: dict[str, V] = {}
    for key, v in items.items():
        index, _, rest = key[len(prefix):].partition(".") if key.startswith(prefix) else ("", "", "")
        if not index.isdigit():
            out[key] = v
            continue
        old = int(index)
        if old in gone:
            continue
        new = old - sum(d < old for d in gone)
        out[f"{prefix}{new}.{rest}"] = value(rest, v, old, new) if value is not None else v
    return out


def renumbered(state: dict[str, tuple[int, ...]], path: str, drop: list[int]) -> dict[str, tuple[int, ...]]:
    """The parameter names and shapes after removing blocks ``drop`` of the list at ``path``.

    Example:
        >>> renumbered({"h.0.w": (2,), "h.1.w": (3,), "h.2.w": (4,), "e": (1,)}, "h", [1])
        {'h.0.w': (2,), 'h.1.w': (4,), 'e': (1,)}
    """
    return _renumber(state, path, drop)


def renumbered_attributes(attrs: dict[str, Any], path: str, drop: list[int]) -> dict[str, Any]:
    """:func:`module_attributes` as they are after removing blocks ``drop`` of ``path``: kept
    blocks renumbered, their layer-index attributes holding the new index.

    Example:
        >>> renumbered_attributes({"h.0.#layer_idx": 0, "h.2.#layer_idx": 2, "h.2.#p": 2}, "h", [1])
        {'h.0.#layer_idx': 0, 'h.1.#layer_idx': 1, 'h.1.#p': 2}
    """
    def index(rest: str, value: Any, old: int, new: int) -> Any:
        if _LAYER_INDEX_ATTR.match(rest.rpartition("#")[2]) and type(value) is int and value == old:
            return new
        return value

    return _renumber(attrs, path, drop, index)
