"""The config of a model with whole blocks removed: every per-layer field, found and checked.

Removing blocks changes more than ``num_hidden_layers``: per-layer lists (``layer_types``,
``layers_block_type``, ``mlp_layer_types``), per-layer strings (a hybrid pattern such as
``"M*M-"``), lists of layer indices (``mlp_only_layers``, ``attn_layer_indices``),
periodic patterns (``attn_layer_offset``, ``expert_layer_period``, ``first_k_dense_replace``)
and the layer counts of one stack among several (``decoder_layers`` of an
encoder-decoder, the ``n_input_layers`` / ``n_output_layers`` split of a looped model).
Nothing is listed per family: :func:`config_after_removal` starts from the usual edit
(per-layer lists filtered, ``num_hidden_layers`` lowered), then tries each candidate edit
of the config's own fields and keeps those that bring a model built from the config on
the meta device closer to the pruned model (same parameter names, same shapes where the
unpruned model's matched) and pass the config's own validation (strict dataclass
validators included). A removal no edit expresses returns None; :func:`removable_layers`
then picks the next-best block instead.

Example:
    >>> from transformers import LlamaConfig, LlamaForCausalLM
    >>> m = LlamaForCausalLM(LlamaConfig(num_hidden_layers=3, hidden_size=16, intermediate_size=32,
    ...                                  num_attention_heads=2, vocab_size=32))
    >>> config_after_removal(m, [1])["num_hidden_layers"]
    2
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from prunekit.errors import UnsupportedOpError
from prunekit.llm.blocks import find_blocks
from prunekit.llm.structured.storage import LAYER_SHAPES_FIELD

_COUNT_NAME = re.compile(r"layer|depth|block", re.IGNORECASE)
_INDEX_NAME = re.compile(r"idx|indices|index|layers$", re.IGNORECASE)
_PATTERN_NAME = re.compile(r"period|offset|freq|interval|first|start|every|step|dense|sparse|replace",
                           re.IGNORECASE)
_INVALID = 1 << 30
_MAX_VALUES = 16  # periodic patterns: offsets and periods tried below this


def meta_shapes(model: nn.Module, config: Any, init: bool = False) -> dict[str, tuple[int, ...]] | None:
    """Parameter shapes of ``type(model)(config)`` built on the meta device; None if it fails.

    The config is first round-tripped through ``from_dict`` (what ``from_pretrained``
    validates), so a config the class rejects is None too. With ``init`` the model's
    ``initialize_weights`` runs as well (``from_pretrained`` runs it; RWKV's divides by
    ``num_hidden_layers - 1``).
    """
    try:
        type(config).from_dict(config.to_dict())
        with torch.device("meta"):
            fresh = type(model)(config)
            if init and hasattr(fresh, "initialize_weights"):
                fresh.initialize_weights()
    except Exception:  # a config the class rejects is simply not a candidate
        return None
    return {k: tuple(v.shape) for k, v in fresh.state_dict().items()}


def renumbered(state: dict[str, tuple[int, ...]], path: str, drop: list[int]) -> dict[str, tuple[int, ...]]:
    """The parameter names and shapes after removing blocks ``drop`` of the list at ``path``.

    Example:
        >>> renumbered({"h.0.w": (2,), "h.1.w": (3,), "h.2.w": (4,), "e": (1,)}, "h", [1])
        {'h.0.w': (2,), 'h.1.w': (4,), 'e': (1,)}
    """
    gone = set(drop)
    out = {}
    prefix = path + "."
    for key, shape in state.items():
        if not key.startswith(prefix):
            out[key] = shape
            continue
        index, _, rest = key[len(prefix):].partition(".")
        if not index.isdigit():
            out[key] = shape
        elif int(index) not in gone:
            new = int(index) - sum(d < int(index) for d in gone)
            out[f"{prefix}{new}.{rest}"] = shape
    return out


def _score(model: nn.Module, config: Any, want: dict, ignore: set[str]) -> int:
    got = meta_shapes(model, config)
    if got is None:
        return _INVALID
    return sum(1 for k in want.keys() | got.keys()
               if (k not in want or k not in got) or (want[k] != got[k] and k not in ignore))


def _keep(seq: Any, drop: set[int]) -> Any:
    kept = [v for i, v in enumerate(seq) if i not in drop]
    return "".join(kept) if isinstance(seq, str) else type(seq)(kept) if isinstance(seq, tuple) else kept


def _indices(name: str, value: Any, n: int, gone: set[int]) -> list[int] | None:
    """A list of layer indices (``mlp_only_layers``) renumbered without ``gone``, or None."""
    if not (isinstance(value, list) and value and _INDEX_NAME.search(name)):
        return None
    if not all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v < n for v in value):
        return None
    return [v - sum(d < v for d in gone) for v in value if v not in gone]


def _base(original: dict[str, Any], n: int, gone: set[int]) -> dict[str, Any]:
    """The usual edit: index lists renumbered, per-layer lists filtered, the layer count lowered."""
    out: dict[str, Any] = {}
    for name, value in original.items():
        if name == LAYER_SHAPES_FIELD:
            continue
        renamed = _indices(name, value, n, gone)
        if renamed is not None:
            out[name] = renamed
        elif isinstance(value, (list, tuple)) and len(value) == n or \
                isinstance(value, str) and len(value) == n and "pattern" in name.lower():
            out[name] = _keep(value, gone)
    out["num_hidden_layers"] = n - len(gone)
    return out


def _candidates(original: dict[str, Any], n: int, drop: list[int]) -> Iterator[tuple[str, list[Any]]]:
    """``(field, values to try)`` for every config field a block removal may change."""
    gone = set(drop)
    after = n - len(gone)
    for name, value in original.items():
        if name == LAYER_SHAPES_FIELD or isinstance(value, bool):
            continue
        renamed = _indices(name, value, n, gone)
        if isinstance(value, (list, tuple)) and len(value) == n:
            yield name, [v for v in (_keep(value, gone), renamed, value) if v is not None]
        elif renamed is not None:
            yield name, [renamed, value]
        if isinstance(value, str) and len(value) == n and (_COUNT_NAME.search(name) or "pattern" in name.lower()):
            yield name, [_keep(value, gone), value]
        if isinstance(value, int) and _COUNT_NAME.search(name):
            yield name, [after] if value == n else [value - len(gone), value + len(gone)]
    for name, value in original.items():  # periodic patterns: the values that make the shapes fit
        if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= max(n, 1) and \
                _PATTERN_NAME.search(name):
            yield name, [v for v in range(min(max(n, value + 1), _MAX_VALUES)) if v != value]


def layer_config(config: Any) -> Any:
    """The config object that holds the decoder's layer fields: the text config of a
    multimodal model (``config.text_config``), else the config itself."""
    return config.get_text_config() if hasattr(config, "get_text_config") else config


def config_after_removal(model: nn.Module, drop: list[int]) -> dict[str, Any] | None:
    """The config fields to change when blocks ``drop`` are removed; None if none fit.

    Returns ``{field: new value}`` of :func:`layer_config` (the text config of a multimodal
    model). When the class cannot be built from its own config on the meta device, the usual
    edit (per-layer lists filtered, ``num_hidden_layers``) is returned unchecked.
    """
    path, blocks = find_blocks(model)
    n = len(blocks)
    config = model.config
    state = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    before = meta_shapes(model, config)
    init = before is not None and meta_shapes(model, config, init=True) is not None  # init checkable
    own = layer_config(config)
    original = {k: getattr(own, k) for k in own.to_dict() if hasattr(own, k)}  # the live values
    base = _base(original, n, set(drop))
    if before is None:
        return base
    ignore = set(renumbered({k: s for k, s in state.items() if before.get(k, s) != s}, path, drop))
    want = renumbered(state, path, drop)
    trial = copy.deepcopy(config)
    changes: dict[str, Any] = {}

    def put(name: str, value: Any) -> None:
        try:
            setattr(layer_config(trial), name, value)
        except Exception:  # a read-only property (a count derived from a list), a strict field validator
            return
        changes[name] = value

    for name, value in base.items():
        put(name, value)
    best = _score(model, trial, want, ignore)
    if best == _INVALID:  # undo cuts of lists that only look per-layer (Falcon-H1's [min, max] pairs)
        cuts = dict(changes)
        for name, value in base.items():
            if isinstance(value, (list, tuple, str)) and name in original and original[name] != value:
                put(name, original[name])
                score = _score(model, trial, want, ignore)
                if score <= best:  # a tie while invalid: another cut may be the one to undo
                    best = score
                else:
                    put(name, value)
        if best == _INVALID:  # the cuts were not the problem (Dory: a layer split must add up)
            for name, value in cuts.items():
                put(name, value)
    for _ in range(3):
        if best == 0:
            break
        improved = False
        for name, values in _candidates(original, n, drop):
            if best == 0:
                break
            current = getattr(layer_config(trial), name, None)
            for value in values:
                if value == current:
                    continue
                put(name, value)
                score = _score(model, trial, want, ignore)
                if score < best:
                    best, current, improved = score, value, True
                    break
                put(name, current)
        if not improved:
            break
    if best != 0 or (init and meta_shapes(model, trial, init=True) is None):  # initialisation checked once
        return None
    return {k: v for k, v in changes.items() if original.get(k, getattr(own, k, None)) != v}


def removable_layers(model: nn.Module, order: list[int], count: int) -> list[int]:
    """The first ``count`` blocks of ``order`` whose removal, together, the config can express.

    Raises:
        UnsupportedOpError: when fewer than ``count`` such blocks exist.
    """
    path, blocks = find_blocks(model)
    chosen: list[int] = []
    refused: list[int] = []
    for i in order:
        if len(chosen) == count:
            break
        trial = sorted(chosen + [int(i)])
        if len(trial) < len(blocks) and config_after_removal(model, trial) is not None:
            chosen = trial
        else:
            refused.append(int(i))
    if len(chosen) < count:
        raise UnsupportedOpError(
            f"{path}: cannot remove {count} block(s): removing {refused[:5]} gives a model that its "
            f"config ({type(model.config).__name__}) cannot rebuild (no per-layer field explains the change)")
    return chosen
