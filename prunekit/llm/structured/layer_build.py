"""Building a model's class from its config on the meta device, as a reload would, and
giving a pruned model the attributes that build holds.

:func:`meta_build` is the rebuild every layer-removal check compares with; after blocks
are removed, :func:`adopt_config_attributes` (outside the blocks) and
:func:`adopt_block_attributes` (per-layer copies and solved floats inside the kept
blocks) set the live model's plain attributes to what a reload of the edited config builds.

Example:
    >>> from transformers import LlamaConfig, LlamaForCausalLM
    >>> m = LlamaForCausalLM(LlamaConfig(num_hidden_layers=2, hidden_size=16, intermediate_size=32,
    ...                                  num_attention_heads=2, vocab_size=32))
    >>> meta_build(m, m.config).model.embed_tokens.weight.device.type
    'meta'
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

from prunekit.llm.structured.layer_index import module_attributes
from prunekit.llm.structured.layer_patterns import keep_entries, same

_ABSENT = object()

def meta_build(model: nn.Module, config: Any, init: bool = False, errors: list[str] | None = None
               ) -> nn.Module | None:
    """``type(model)`` built on the meta device from ``config`` as a reload reads it back
    (``from_dict(config.to_dict())``, what ``from_pretrained`` validates and builds from);
    None if the config or the class refuses (the refusal, one line, is appended to
    ``errors`` when given).

    Building from the read-back config means a field the config derives again from another
    one (GPT-Neo's ``attention_layers`` from ``attention_types``) counts only through the
    field it is derived from; the attention implementation in use is kept. With ``init`` the model's
    ``initialize_weights`` runs as well (``from_pretrained`` runs it; RWKV's divides by
    ``num_hidden_layers - 1``).
    """
    try:
        saved = type(config).from_dict(config.to_dict())  # what a reload reads back
        _same_attention(saved, config)
        with torch.device("meta"):
            fresh = type(model)(saved)
            if init and hasattr(fresh, "initialize_weights"):
                fresh.initialize_weights()
    except Exception as e:  # a config the class rejects is simply not a candidate
        if errors is not None:
            errors.append(" ".join(f"{type(e).__name__}: {e}".split())[:240])
        return None
    return fresh


def _same_attention(saved: Any, config: Any) -> None:
    """Give ``saved`` the attention implementation ``config`` runs with,
    so that the build differs from the live model only by what the saved fields say."""
    for attr in ("_attn_implementation_internal", "_attn_implementation"):
        if attr in vars(config):
            try:
                setattr(saved, attr, getattr(config, attr))
            except Exception:  # a read-only property in this transformers version
                pass


def meta_shapes(model: nn.Module, config: Any, init: bool = False) -> dict[str, tuple[int, ...]] | None:
    """Parameter shapes of ``type(model)(config)`` built on the meta device; None if it fails
    (:func:`meta_build`)."""
    fresh = meta_build(model, config, init)
    return None if fresh is None else {k: tuple(v.shape) for k, v in fresh.state_dict().items()}


def _prefixes(paths: str | tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """``"a.b"`` or several paths as the key prefixes of what lies inside them."""
    return tuple(p + "." for p in ([paths] if isinstance(paths, str) else paths))


def adopt_config_attributes(model: nn.Module, before: nn.Module | None, path: str | tuple[str, ...]
                            ) -> list[str]:
    """Outside the block list at ``path`` (or the lists, a layer's parts), set each plain
    attribute that ``model`` still shares with ``before`` (a meta build of its config before
    the edit) to the value a build of its edited config gives, in place; returns the
    ``module.attribute`` names changed.

    Such attributes derive from the config (Beam's rotary ``layer_types``, the set of layer
    types present), so after blocks are removed they take the value a reload would build.
    Attributes the model no longer shares with ``before`` (set by pruning or a forward
    pass) are left alone.
    """
    after = meta_build(model, model.config)
    if before is None or after is None:
        return []
    old, new = module_attributes(before), module_attributes(after)
    live = dict(model.named_modules(remove_duplicate=False))
    fresh = dict(after.named_modules(remove_duplicate=False))
    changed = []
    for key, value in module_attributes(model).items():
        name, _, attr = key.rpartition("#")
        name = name[:-1] if name.endswith(".") else name
        if (key.startswith(_prefixes(path)) or attr == "class" or key not in new or new[key] == value
                or old.get(key) != value):
            continue
        setattr(live[name], attr, copy.deepcopy(getattr(fresh[name], attr)))
        changed.append(f"{name}.{attr}")
    return changed


def adopt_block_attributes(model: nn.Module, path: str | tuple[str, ...], drop: list[int], n: int) -> list[str]:
    """After blocks ``drop`` of the ``n`` at ``path`` are gone (and the config edited), set each
    kept block's attribute that a rebuild holds in its new form, in place: a per-layer tuple
    or list without the removed entries (GPT-Neo's ``attention_layers``) and a float a solved
    field reproduces up to a rounding (MiniCPM's ``residual_scale``). The kept blocks thus
    compute what a reload computes; returns the ``module.attribute`` names changed."""
    after = meta_build(model, model.config)
    if after is None:
        return []
    fresh = dict(after.named_modules(remove_duplicate=False))
    gone = set(drop)
    changed = []
    for name, module in model.named_modules(remove_duplicate=False):
        if not name.startswith(_prefixes(path)) or name not in fresh:
            continue
        for attr, value in list(vars(module).items()):
            new = getattr(fresh[name], attr, _ABSENT)
            if attr.startswith("_") or new is _ABSENT or new == value:
                continue
            per_layer = (isinstance(value, (list, tuple)) and len(value) == n and isinstance(new, (list, tuple))
                         and list(new) == list(keep_entries(value, gone)))
            rounded = isinstance(value, float) and isinstance(new, float) and same(value, new)
            if per_layer or rounded:
                setattr(module, attr, copy.deepcopy(new))
                changed.append(f"{name}.{attr}")
    return changed
