"""Integer attributes and config fields that carry an attention module's head counts.

Attention code reads its sizes from attributes set at construction: ``num_heads``,
``num_key_value_heads``, the inner width (``all_head_size``, Bailing's ``qkv_dim``), and
often from submodules holding their own copies (Inkling's query projection, relative
position bias and gated output projection each keep ``num_heads``) or from a config the
module reads at forward (Phi-3's ``self.config.num_attention_heads``). When heads are
removed, every such value must follow, wherever it lives under the attention module.

They are found by name *and* value, never by a list of modules: an integer attribute of
the attention module or of any submodule below it is

* a *key/value head count* when its name says key/value heads (``kv_heads``,
  ``key_value_heads``) and it equals the old number of units (not with multi-query
  attention, whose one key/value head stays);
* a *query heads per key/value head* count (``num_key_value_groups``) when it equals the
  old ratio (it changes when multi-query attention loses query heads);
* a *group count* (``o_groups``, a grouped linear's ``n_groups``) when it equals the old
  number of units: DeepSeek-V4's grouped output projection has one group per unit;
* a *head count* when its name says heads (``num_heads``, ``n_head``, ``num_attn_heads``,
  ``linear_num_heads``; not a head *size*) and it equals the old head count; one that
  equals the old key/value head count instead (a per-head module on the key projection,
  Inkling 2's short convolution) follows the key/value heads;
* an *inner width* when its name says a width (``dim``, ``size``, ``width``; not a
  per-head size, not the model's ``hidden_size``, an MLP or low-rank size) and it equals
  old heads x head_dim.

The same rules pick the fields of a config object the modules hold (one copy per
config object, so the model's own config keeps the full sizes for other blocks).

Example:
    >>> from torch import nn
    >>> class Proj(nn.Module):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.num_heads, self.head_dim, self.qkv_dim = 8, 8, 64
    >>> att = nn.Module(); att.num_heads = 8; att.proj = Proj()
    >>> sorted((name, value) for _, name, value in size_attributes(att, HeadCounts(8, 8, 8), HeadCounts(6, 6, 8)))
    [('num_heads', 6), ('num_heads', 6), ('qkv_dim', 48)]
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from typing import Any

from torch import nn
from torch.nn.modules.conv import _ConvNd

_KV = re.compile(r"(kv|key_value)_?heads?$", re.IGNORECASE)
_HEADS = re.compile(r"(^|_)(n|num)_?(\w+_)?heads?$", re.IGNORECASE)
_WIDTH = re.compile(r"(dim|size|width)$", re.IGNORECASE)
_GROUPS = re.compile(r"(kv|key_value)_?groups$", re.IGNORECASE)
_UNIT_GROUPS = re.compile(r"^(\w+_)?groups$", re.IGNORECASE)
_NOT_WIDTH = re.compile(r"(?<!all_)head_?(dim|size)$|hidden|intermediate|ffn|vocab|expert|lora", re.IGNORECASE)


@dataclass(frozen=True)
class HeadCounts:
    """Sizes of one attention module: query heads, key/value heads, channels per head."""

    heads: int
    kv_heads: int
    head_dim: int
    units: int = 0  # removable units (key/value groups, or query heads with multi-query attention)

    @property
    def width(self) -> int:
        return self.heads * self.head_dim


def new_value(name: str, value: Any, old: HeadCounts, new: HeadCounts, shared_kv: bool = False) -> int | None:
    """The value an attribute named ``name`` holding ``value`` takes after the removal, or None.

    Example:
        >>> new_value("num_key_value_heads", 4, HeadCounts(8, 4, 8), HeadCounts(6, 3, 8))
        3
        >>> new_value("head_dim", 8, HeadCounts(8, 8, 8), HeadCounts(6, 6, 8)) is None
        True
        >>> new_value("num_heads", 4, HeadCounts(8, 4, 8), HeadCounts(6, 3, 8))  # on the key/value side
        3
    """
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        return None
    if _GROUPS.search(name):  # query heads per key/value head: changes when multi-query heads go
        was, now = old.heads // max(old.kv_heads, 1), new.heads // max(new.kv_heads, 1)
        return now if value == was and now != was and old.heads % max(old.kv_heads, 1) == 0 else None
    if _UNIT_GROUPS.search(name) and old.units and not _is_kv_name(name):  # one group per unit (o_groups)
        return new.units if value == old.units and new.units != old.units else None
    if _KV.search(name):
        return new.kv_heads if value == old.kv_heads and not shared_kv and new.kv_heads != old.kv_heads else None
    if _HEADS.search(name):
        if value == old.heads:
            return new.heads if new.heads != old.heads else None
        # a head count on the key/value side (Inkling 2's short convolution on k_proj keeps
        # ``num_heads`` = key/value heads): equal to the key/value count, not the query count
        if value == old.kv_heads and not shared_kv and new.kv_heads != old.kv_heads:
            return new.kv_heads
        return None
    if _WIDTH.search(name) and not _NOT_WIDTH.search(name) and value == old.width and old.heads > 1:
        return new.width if new.width != old.width else None
    return None


def says_heads(name: str) -> bool:
    """True when an attribute's name says it counts query heads (``num_heads``, ``n_head``).

    Example:
        >>> says_heads("num_attn_heads"), says_heads("num_key_value_heads"), says_heads("head_dim")
        (True, False, False)
    """
    return bool(_HEADS.search(name)) and not _KV.search(name)


def _is_kv_name(name: str) -> bool:
    return bool(re.search(r"kv|key_value", name, re.IGNORECASE))


def _is_config(obj: Any) -> bool:
    return hasattr(obj, "to_dict") and hasattr(obj, "model_type")


def size_attributes(module: nn.Module, old: HeadCounts, new: HeadCounts, shared_kv: bool = False,
                    cut: set[str] | None = None) -> list[tuple[Any, str, Any]]:
    """``(owner, name, value)`` to set on ``module`` and its submodules (and their configs).

    With ``cut`` (paths, relative to ``module``, of the linears the removal slices), a
    submodule holding linears none of which is cut is another mixer with its own heads (a
    sparse-attention indexer) and is left alone with everything below it. A config a
    module holds is replaced by one shallow copy with its matching fields changed (shared
    by every module that held the same config object).
    """
    from prunekit.llm.blocks import is_prunable_linear

    out: list[tuple[Any, str, Any]] = []
    copies: dict[int, Any] = {}
    others: list[str] = []
    for path, sub in module.named_modules():
        if any(path.startswith(o + ".") for o in others):
            continue
        held = [f"{path}.{q}".rstrip(".") for q, m in sub.named_modules() if is_prunable_linear(m)]
        if path and cut is not None and held and not set(held) & cut:
            others.append(path)  # holds linears, none of them cut: not these heads
            continue
        if isinstance(sub, _ConvNd):
            continue  # a convolution's channels and groups are kept in step by the surgery rules
        for name, value in vars(sub).items():
            if name.startswith("_"):
                continue
            if _is_config(value):
                if id(value) not in copies:
                    changes = {k: v2 for k, v in value.to_dict().items()
                               if (v2 := new_value(k, getattr(value, k, None), old, new, shared_kv)) is not None}
                    copies[id(value)] = config_copy(value, changes) if changes else None
                if copies[id(value)] is not None:
                    out.append((sub, name, copies[id(value)]))
                continue
            v2 = new_value(name, value, old, new, shared_kv)
            if v2 is not None:
                out.append((sub, name, v2))
    return out


def config_copy(config: Any, changes: dict[str, int]) -> Any:
    """A shallow copy of ``config`` with ``changes`` set (read-only derived properties skipped)."""
    new = copy.copy(config)
    for k, v in changes.items():
        try:
            setattr(new, k, v)
        except Exception:  # a read-only derived property
            pass
    return new


def conv_group_attributes(block: nn.Module, params: dict[str, tuple[int, tuple[tuple[int, ...], ...]]],
                          drop: list[int]) -> list[tuple[Any, str, Any]]:
    """``groups`` / ``in_channels`` of grouped convolutions that lose whole groups with the units.

    A convolution over head channels with one group per head (ZAYA's ``conv_qk_grouped``:
    ``head_dim`` input channels per group) loses whole groups when heads go; its output
    channels are sliced as a follower (``params[path.weight] = (0, per-unit channels)``),
    and the group count must drop by the groups removed (the slicing rule alone cannot
    tell that from removing channels inside every group). Depthwise convolutions (one input
    channel per group) are left to the surgery rule.

    Example:
        >>> conv = nn.Conv1d(6, 6, 1, groups=3)          # 3 groups of 2 channels
        >>> units = ((0, 1), (2, 3), (4, 5))
        >>> [(n, v) for _, n, v in conv_group_attributes(nn.Sequential(conv), {"0.weight": (0, units)}, [1])]
        [('groups', 2), ('in_channels', 4)]
    """
    out: list[tuple[Any, str, Any]] = []
    for name, (dim, units) in params.items():
        owner, _, attr = name.rpartition(".")
        conv = block.get_submodule(owner) if owner else block
        if attr != "weight" or dim != 0 or not isinstance(conv, _ConvNd) or conv.transposed or conv.groups <= 1:
            continue
        per_in = int(conv.weight.shape[1])
        if per_in == 1:
            continue
        size = conv.out_channels // conv.groups
        gone = {i for u in drop for i in units[u]}
        hit = [len(gone & set(range(g * size, (g + 1) * size))) for g in range(conv.groups)]
        if any(0 < h < size for h in hit) or not any(hit):
            continue  # channels inside groups (or none): the surgery rule keeps the group count
        groups = conv.groups - sum(1 for h in hit if h)
        out += [(conv, "groups", groups), (conv, "in_channels", groups * per_in)]
    return out
