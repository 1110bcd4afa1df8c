"""The config edits a block removal may need (pure functions of the config's values).

A removal of blocks ``gone`` from ``n`` usually filters per-layer lists, renumbers lists of
layer indices and lowers the layer count (:func:`base_edit`); where that is not the model,
:func:`candidate_edits` lists the other values each field may take, and
:func:`per_layer_target` the readings a block attribute may have. The search over them, which
builds models, is :mod:`prunekit.llm.structured.layer_fields`.

Example:
    >>> base_edit({"num_hidden_layers": 3, "layer_types": ["a", "b", "c"], "mlp_only_layers": [2]}, 3, {1})
    {'layer_types': ['a', 'c'], 'mlp_only_layers': [1], 'num_hidden_layers': 2}
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from prunekit.llm.structured.layer_patterns import encode_runs, expand_runs, keep_entries
from prunekit.llm.structured.storage import LAYER_SHAPES_FIELD

COUNT_NAME = re.compile(r"layer|depth|block", re.IGNORECASE)
_INDEX_NAME = re.compile(r"idx|indices|index|layers$", re.IGNORECASE)
_PATTERN_NAME = re.compile(r"period|offset|freq|interval|first|start|every|step|dense|sparse|replace",
                           re.IGNORECASE)
_MAX_VALUES = 16  # periodic patterns: offsets and periods tried below this


class OneOf(tuple):
    """Target values of an attribute that has two readings (a per-layer tuple filtered, or a
    pair kept whole): a rebuild matching either is the same model."""


def renumbered_indices(name: str, value: Any, n: int, gone: set[int]) -> list[int] | None:
    """A list of layer indices (``mlp_only_layers``) renumbered without ``gone``, or None."""
    if not (isinstance(value, list) and value and _INDEX_NAME.search(name)):
        return None
    if not all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v < n for v in value):
        return None
    return [v - sum(d < v for d in gone) for v in value if v not in gone]


def base_edit(original: dict[str, Any], n: int, gone: set[int]) -> dict[str, Any]:
    """The usual edit: per-layer lists filtered, index lists renumbered, the layer count lowered.

    A list with one entry per layer is filtered even when its name and values also read as
    layer indices (SmolLM3's 0/1 flags ``no_rope_layers=[1, 1]``); where the other reading
    is the right one, the search in :func:`config_after_removal` finds it.
    """
    out: dict[str, Any] = {}
    for name, value in original.items():
        if name == LAYER_SHAPES_FIELD:
            continue
        renamed = renumbered_indices(name, value, n, gone)
        runs = expand_runs(value, n)
        if runs is not None and n > len(gone):  # a run-length pattern, encoded again
            out[name] = encode_runs(keep_entries(runs, gone), value)
        elif isinstance(value, (list, tuple)) and len(value) == n or \
                isinstance(value, str) and len(value) == n and "pattern" in name.lower():
            out[name] = keep_entries(value, gone)
        elif renamed is not None:
            out[name] = renamed
    out["num_hidden_layers"] = n - len(gone)
    return out


def candidate_edits(original: dict[str, Any], n: int, drop: list[int]) -> Iterator[tuple[str, list[Any]]]:
    """``(field, values to try)`` for every config field a block removal may change."""
    gone = set(drop)
    after = n - len(gone)
    for name, value in original.items():
        if name == LAYER_SHAPES_FIELD or isinstance(value, bool):
            continue
        renamed = renumbered_indices(name, value, n, gone)
        if isinstance(value, (list, tuple)) and len(value) == n:
            yield name, [v for v in (keep_entries(value, gone), renamed, value) if v is not None]
        elif renamed is not None:
            yield name, [renamed, value]
        if isinstance(value, str) and len(value) == n and (COUNT_NAME.search(name) or "pattern" in name.lower()):
            yield name, [keep_entries(value, gone), value]
        if isinstance(value, int) and COUNT_NAME.search(name):
            yield name, [after] if value == n else [value - len(gone), value + len(gone)]
        runs = expand_runs(value, n)  # GPT-Neo's attention_types=[[["global", "local"], 12]]
        if runs is not None and after:
            yield name, [encode_runs(keep_entries(runs, gone), value)]
    for name, value in original.items():  # periodic patterns: the values that make the shapes fit
        if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= max(n, 1) and \
                _PATTERN_NAME.search(name):
            yield name, [v for v in range(min(max(n, value + 1), _MAX_VALUES)) if v != value]


def per_layer_target(value: Any, n: int, gone: set[int]) -> Any:
    """The target of a block attribute: a tuple with one entry per layer (GPT-Neo's
    ``attention_layers``, the config's list kept by every block) may also be rebuilt
    without the removed layers' entries."""
    if isinstance(value, tuple) and len(value) == n and n > len(gone):
        return OneOf((keep_entries(value, gone), value))
    return value
