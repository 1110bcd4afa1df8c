"""Heterogeneous configs: transformers' ``per_layer_config`` (one config object whose layers
override some of its fields, Gemma 4's wider global-attention heads, Dots3's narrower
sliding-window layers).

On such a config, reading a field that some layer overrides (``config.head_dim``) raises
``AmbiguousGlobalPerLayerAttributeError``. Structured pruning reads and edits configs field
by field, so this module gives it three things, with no family named:

* :func:`global_access`: a context in which every heterogeneous config of a model (sub-configs
  included) answers with its global value, as transformers allows on request; the flag is
  removed again on exit, so it is never saved;
* :func:`live_values`: a config's fields with ``per_layer_config`` as a list of one override
  dict per layer, so a block removal filters it like any other per-layer list;
* :func:`set_field`: the inverse, setting a field (a per-layer list back into
  ``per_layer_config``).

Example:
    >>> from transformers import Gemma4TextConfig
    >>> cfg = Gemma4TextConfig(num_hidden_layers=2, hidden_size=16, head_dim=4, global_head_dim=8,
    ...                        num_attention_heads=2, num_key_value_heads=1, intermediate_size=8)
    >>> live_values(cfg)["per_layer_config"]
    [{}, {'head_dim': 8}]
    >>> with global_access(cfg):
    ...     cfg.head_dim
    4
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

PER_LAYER = "per_layer_config"
_FLAG = "allow_global_per_layer_attribute_access"


def is_heterogeneous(config: Any) -> bool:
    """Whether ``config`` holds per-layer overrides (transformers' heterogeneous configs)."""
    return "_heterogeneity_spec" in getattr(config, "__dict__", {})


def _configs(config: Any, seen: set[int] | None = None) -> Iterator[Any]:
    """``config`` and every config nested in it (a multimodal model's ``text_config``)."""
    seen = set() if seen is None else seen
    if id(config) in seen or not hasattr(config, "to_dict"):
        return
    seen.add(id(config))
    yield config
    for value in list(vars(config).values()):
        if hasattr(value, "to_dict") and hasattr(value, "model_type"):
            yield from _configs(value, seen)


@contextlib.contextmanager
def global_access(config: Any) -> Iterator[None]:
    """Within the block, every heterogeneous config under ``config`` answers a per-layer field
    with its global value (the per-layer values stay in ``per_layer_config``)."""
    changed = [c for c in _configs(config) if is_heterogeneous(c) and not c.__dict__.get(_FLAG)]
    for c in changed:
        c.__dict__[_FLAG] = True
    try:
        yield
    finally:
        for c in changed:
            c.__dict__.pop(_FLAG, None)


def get(config: Any, name: str, default: Any = None) -> Any:
    """``config.name`` (its global value on a heterogeneous config), else ``default``."""
    read = getattr(config, "_getattr_without_heterogeneous_validation", None)
    if read is not None and is_heterogeneous(config):
        return read(name, default)
    return getattr(config, name, default)


def per_layer_list(config: Any) -> list[dict[str, Any]] | None:
    """The per-layer overrides as one dict per layer (``{}`` where a layer has none), or None."""
    if not is_heterogeneous(config):
        return None
    overrides = config.__dict__["_heterogeneity_spec"].per_layer_overrides
    return [dict(overrides.get(i, {})) for i in range(get(config, "num_hidden_layers"))]


def live_values(config: Any) -> dict[str, Any]:
    """Every field of ``config`` by its live value; ``per_layer_config`` as :func:`per_layer_list`."""
    out = {k: get(config, k) for k in config.to_dict() if k != PER_LAYER and get(config, k, _NONE) is not _NONE}
    layers = per_layer_list(config)
    if layers is not None:
        out[PER_LAYER] = layers
    return out


def set_field(config: Any, name: str, value: Any) -> None:
    """``setattr(config, name, value)``; a per-layer list for ``per_layer_config`` becomes its
    ``{layer: overrides}`` form (layers without overrides left out)."""
    if name == PER_LAYER and isinstance(value, list):
        value = {i: dict(v) for i, v in enumerate(value) if v}
    setattr(config, name, value)


_NONE = object()
