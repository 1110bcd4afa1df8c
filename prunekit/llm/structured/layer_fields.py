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
the meta device closer to the pruned model and pass the config's own validation (strict
dataclass validators included). "Closer" compares what a reload would rebuild: parameter
names and shapes (where the unpruned model's matched), each module's class, and each
module's plain attributes set at construction (SmolLM3's ``use_rope`` from the 0/1 list
``no_rope_layers``, a ``sliding_window``, a ``layer_type``), with the kept blocks'
layer-index attributes renumbered (:func:`renumber_layer_indices`). A per-layer list that
also reads as a list of layer indices (``no_rope_layers=[1, 1]``) is thus resolved by the
modules it builds, not by its name; a cut list the rebuild accepts whole as well (Mamba-2's
pair ``time_step_limit`` in a 2-layer model) is settled by running both readings
(:mod:`~prunekit.llm.structured.layer_forward`). A removal no edit expresses exactly returns None;
:func:`removable_layers` then picks the next-best block instead, and raises when none
fits: a pruned model that a reload would rebuild differently is never produced.

Beyond single fields: a run-length pattern (GPT-Neo's ``attention_types``) is expanded,
cut and encoded again; a block attribute holding one entry per layer is compared without
the removed entries; a numeric field is solved when a block float depends on it and the
depth (MiniCPM3's ``scale_depth``, :func:`_solve_numeric`); a layer kept in parallel
lists (XLM) loses its entry in every list (:func:`removal_plan`); block lists tied by one
count (HRM) make a single removal not applicable (:class:`TiedDepthError`). The rebuild
is :func:`~prunekit.llm.structured.layer_build.meta_build` (the config read back as a
reload reads it).

Example:
    >>> from transformers import LlamaConfig, LlamaForCausalLM
    >>> m = LlamaForCausalLM(LlamaConfig(num_hidden_layers=3, hidden_size=16, intermediate_size=32,
    ...                                  num_attention_heads=2, vocab_size=32))
    >>> config_after_removal(m, [1])["num_hidden_layers"]
    2
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from torch import nn

from prunekit.errors import UnsupportedOpError
from prunekit.llm.blocks import find_blocks
from prunekit.llm.layers import layer_parts
from prunekit.llm.structured.layer_build import _prefixes, meta_build, meta_shapes  # noqa: F401 (shapes.py imports it here)
from prunekit.llm.structured.layer_edits import (
    COUNT_NAME,
    OneOf,
    base_edit,
    candidate_edits,
    per_layer_target,
)
from prunekit.llm.structured.layer_index import (
    module_attributes,
    renumbered,
    renumbered_attributes,
)
from prunekit.llm.structured.layer_packed import packed_alternatives
from prunekit.llm.structured.layer_patterns import same, secant
from prunekit.llm.structured.layer_ties import tied_lists
from prunekit.llm.structured.per_layer import live_values, set_field
from prunekit.llm.structured.storage import LAYER_SHAPES_FIELD

_INVALID = 1 << 30
_ABSENT = object()


def _renumber_all(items: dict[str, Any], paths: list[str], drop: list[int], attributes: bool = False
                  ) -> dict[str, Any]:
    """:func:`renumbered` (or :func:`renumbered_attributes`) over every list of ``paths``."""
    for p in paths:
        items = renumbered_attributes(items, p, drop) if attributes else renumbered(items, p, drop)
    return items


def _matches(want: Any, got: Any) -> bool:
    return any(same(w, got) for w in want) if isinstance(want, OneOf) else same(want, got)


def _mismatched(want: dict[str, Any], got: dict[str, Any], ignore: set[str]) -> list[str]:
    return sorted(k for k in want.keys() | got.keys()
                  if (k not in want or k not in got) or (not _matches(want[k], got[k]) and k not in ignore))


def _mismatches(want: dict[str, Any], got: dict[str, Any], ignore: set[str]) -> int:
    return len(_mismatched(want, got, ignore))


@dataclass(frozen=True)
class _Target:
    """What a rebuild of the pruned model must match: parameter shapes (``ignore``: widths
    pruned before) and the construction-time attributes of the modules inside the block
    list (``blocks``: its path with a trailing dot). Attributes outside the blocks follow the
    config (:func:`adopt_config_attributes`), so they are not compared."""

    shapes: dict[str, tuple[int, ...]]
    ignore: set[str]
    attrs: dict[str, Any]
    ignore_attrs: set[str]
    blocks: tuple[str, ...]


def _differences(model: nn.Module, config: Any, target: _Target) -> list[str] | None:
    """Where ``type(model)(config)`` differs from the pruned model (parameters missing, extra
    or of another shape, then module classes and construction-time attributes in the
    blocks); None if the class refuses the config."""
    fresh = meta_build(model, config)
    if fresh is None:
        return None
    got = {k: tuple(v.shape) for k, v in fresh.state_dict().items()}
    got_attrs = {k: v for k, v in module_attributes(fresh).items()
                 if k.startswith(target.blocks) and k not in target.ignore_attrs}
    return _mismatched(target.shapes, got, target.ignore) + _mismatched(target.attrs, got_attrs, set())


def _score(model: nn.Module, config: Any, target: _Target) -> int:
    """How far ``type(model)(config)`` is from the pruned model (:func:`_differences`)."""
    found = _differences(model, config, target)
    return _INVALID if found is None else len(found)


def _solve_numeric(model: nn.Module, trial: Any, target: _Target, original: dict[str, Any],
                   put: Any, best: int) -> int:
    """Solve one numeric config field so that a float attribute of the blocks the rebuild
    gets wrong takes its old value again (MiniCPM's ``residual_scale = scale_depth /
    sqrt(num_hidden_layers)``: ``scale_depth`` found for the new depth); keeps a solution
    only when it lowers the score and leaves every attribute outside the blocks as it was
    (a field that also scales the embeddings or the logits is not a free unknown). Returns
    the new score."""
    found = _differences(model, trial, target) or []
    floats = [k for k in found if isinstance(target.attrs.get(k), float)]
    if not floats:
        return best
    key = floats[0]

    def outside() -> dict[str, Any] | None:
        fresh = meta_build(model, trial)
        return None if fresh is None else {k: v for k, v in module_attributes(fresh).items()
                                           if not k.startswith(target.blocks)}

    unsolved = outside()

    def value_at(x: float) -> float | None:
        put(name, x)
        fresh = meta_build(model, trial)
        got = None if fresh is None else module_attributes(fresh).get(key)
        return got if isinstance(got, (int, float)) and not isinstance(got, bool) else None

    for name, value in original.items():
        if not isinstance(value, (int, float)) or isinstance(value, bool) or name == LAYER_SHAPES_FIELD:
            continue
        current = getattr(layer_config(trial), name, None)
        if not isinstance(current, (int, float)) or isinstance(current, bool):
            continue
        x = secant(value_at, target.attrs[key], float(current), 2.0 * current if current else 1.0, steps=4)
        if x is not None:
            put(name, x)
            score = _score(model, trial, target) if outside() == unsolved else _INVALID
            if score < best:
                return score if score == 0 else _solve_numeric(model, trial, target, original, put, score)
        put(name, current)
    return best


def _settle_readings(model: nn.Module, trial: Any, target: _Target, original: dict[str, Any],
                     changes: dict[str, Any], n: int, removal: tuple[str, list[int]], put: Any) -> None:
    """A per-layer cut the rebuild check accepts whole as well: settled by the forward
    (:func:`~prunekit.llm.structured.layer_forward.settle_cut_readings`)."""
    from prunekit.llm.structured.layer_forward import removal_logits_gap, settle_cut_readings

    ambiguous = {name: (cut, whole) for name, cut in changes.items()
                 if isinstance(whole := original.get(name, _ABSENT), (list, tuple, str))
                 and len(whole) == n and not same(cut, whole)}
    settle_cut_readings(ambiguous, put, rebuilds=lambda: _score(model, trial, target) == 0,
                        gap=lambda: removal_logits_gap(model, *removal, trial))


def layer_config(config: Any) -> Any:
    """The config object that holds the decoder's layer fields: the text config of a
    multimodal model (``config.text_config``), else the config itself."""
    return config.get_text_config() if hasattr(config, "get_text_config") else config


class DepthNotBuildableError(UnsupportedOpError):
    """The model's class builds no model with that many layers (its config validation or its
    weight initialisation refuses the depth), so no block removal of that size applies.
    ``reason`` says which class refused, and how."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


class TiedDepthError(DepthNotBuildableError):
    """The block list's length is tied to other block lists (one config count builds them
    all, HRM's ``num_layers_per_stack``), so no block of it can be removed alone: the class
    builds no model with this list shallower than its siblings. ``tied`` holds every tied
    list's path, the pruned one first."""

    def __init__(self, message: str, reason: str, tied: list[str]) -> None:
        super().__init__(message, reason)
        self.tied = tied


def config_after_removal(model: nn.Module, drop: list[int]) -> dict[str, Any] | None:
    """The config fields to change when blocks ``drop`` are removed; None if none fit.

    Returns ``{field: new value}`` of :func:`layer_config` (the text config of a multimodal
    model). When the class cannot be built from its own config on the meta device, the usual
    edit (per-layer lists filtered, ``num_hidden_layers``) is returned unchecked.
    """
    return removal_plan(model, drop)[1]


def removal_plan(model: nn.Module, drop: list[int]) -> tuple[list[str], dict[str, Any] | None]:
    """``(lists, updates)``: the block lists that lose entries ``drop`` (the block list of
    :func:`find_blocks`, with the other parts of each layer where a model keeps them in
    parallel lists, :func:`~prunekit.llm.layers.layer_parts`) and the config
    fields to change (:func:`config_after_removal`; None if none fit)."""
    path, _ = find_blocks(model)
    lists = [path]
    updates, reason, where = _fit(model, drop, lists)
    parts = layer_parts(model, path)
    if updates is None and reason is None and parts and tied_lists(model, path, where, parts):
        lists = [path] + parts
        updates = _fit(model, drop, lists)[0]
    return lists, updates


def _fit(model: nn.Module, drop: list[int], lists: list[str] | None = None
         ) -> tuple[dict[str, Any] | None, str | None, list[str]]:
    """:func:`config_after_removal` with entries ``drop`` of every list in ``lists`` removed
    (default: the block list), and when it is None, why: the class's refusal of the
    closest config found (its validation or initialisation error), else ``None`` and where
    the model that config builds differs from the pruned one (parameter and attribute keys)."""
    path, blocks = find_blocks(model)
    lists = lists or [path]
    n = len(blocks)
    config = model.config
    state = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    fresh = meta_build(model, config)
    init = fresh is not None and meta_build(model, config, init=True) is not None  # init checkable
    own = layer_config(config)
    original = live_values(own)  # the live values (per-layer overrides as a per-layer list)
    base = base_edit(original, n, set(drop))
    if fresh is None:
        return base, None, []
    before = {k: tuple(v.shape) for k, v in fresh.state_dict().items()}
    ignore = set(_renumber_all({k: s for k, s in state.items() if before.get(k, s) != s}, lists, drop))
    want: dict[str, Any] = _renumber_all(state, lists, drop)
    for key, shape in want.items():  # per-layer chunks packed outside the blocks (layer_packed.py)
        cuts = packed_alternatives(shape, n, drop) if not key.startswith(_prefixes(lists)) else []
        if cuts and key not in ignore:
            want[key] = OneOf((shape, *cuts))
    # attributes the live model already does not share with its own rebuild (widths set by an
    # earlier pruning step, flags a forward pass sets) say nothing about the config edit
    live, rebuilt = module_attributes(model), module_attributes(fresh)
    ignore_attrs = set(_renumber_all({k: None for k in live.keys() | rebuilt.keys()
                                      if live.get(k, _ABSENT) != rebuilt.get(k, _ABSENT)}, lists, drop, True))
    want_attrs = {k: per_layer_target(v, n, set(drop)) for k, v in _renumber_all(
        {k: v for k, v in live.items() if k in rebuilt and k.startswith(_prefixes(lists))}, lists, drop, True
    ).items() if k not in ignore_attrs}
    target = _Target(want, ignore, want_attrs, ignore_attrs, _prefixes(lists))
    trial = copy.deepcopy(config)
    changes: dict[str, Any] = {}

    def put(name: str, value: Any) -> None:
        try:
            set_field(layer_config(trial), name, value)
        except Exception:  # a read-only property (a count derived from a list), a strict field validator
            return
        changes[name] = value

    for name, value in base.items():
        put(name, value)
    best = _score(model, trial, target)
    if best == _INVALID:  # undo cuts of lists that only look per-layer (Falcon-H1's [min, max] pairs)
        cuts = dict(changes)
        for name, value in base.items():
            if isinstance(value, (list, tuple, str)) and name in original and original[name] != value:
                put(name, original[name])
                score = _score(model, trial, target)
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
        for name, values in candidate_edits(original, n, drop):
            if best == 0:
                break
            current = getattr(layer_config(trial), name, None)
            for value in values:
                if value == current:
                    continue
                put(name, value)
                score = _score(model, trial, target)
                if score < best:
                    best, current, improved = score, value, True
                    break
                put(name, current)
        if not improved:
            break
    if best not in (0, _INVALID):  # a value the blocks compute from a numeric field and the depth
        best = _solve_numeric(model, trial, target, original, put, best)
    if best == 0 and len(lists) == 1:  # a cut the rebuild also accepts whole: run both (layer_forward.py)
        _settle_readings(model, trial, target, original, changes, n, (lists[0], drop), put)
    errors: list[str] = []
    if best == _INVALID or meta_build(model, trial, init=init, errors=errors) is None:
        if not errors:
            meta_build(model, trial, init=init, errors=errors)
        return None, errors[0] if errors else None, []  # the class refuses every config tried
    if best != 0:
        return None, None, _differences(model, trial, target) or []
    return {k: v for k, v in changes.items() if original.get(k, getattr(own, k, None)) != v}, None, []


def _where(keys: list[str], shown: int = 4) -> str:
    """Parameter / attribute keys summarised by module, up to the first block index, with counts.

    Example:
        >>> _where(["m.h.1.w", "m.h.1.b", "m.g.0.#use_rope", "lm_head.weight"])
        'm.h.1 (2), m.g.0 (1), lm_head.weight (1)'
    """
    groups: dict[str, int] = {}
    for key in keys:
        parts = key.split(".")
        cut = next((i + 1 for i, part in enumerate(parts) if part.isdigit()), len(parts))
        group = ".".join(parts[:cut])
        groups[group] = groups.get(group, 0) + 1
    ranked = sorted(groups.items(), key=lambda kv: -kv[1])
    more = f", {len(ranked) - shown} more" if len(ranked) > shown else ""
    return ", ".join(f"{g} ({c})" for g, c in ranked[:shown]) + more


def removable_layers(model: nn.Module, order: list[int], count: int) -> list[int]:
    """The first ``count`` blocks of ``order`` whose removal, together, the config can express.

    Raises:
        DepthNotBuildableError: when every removal tried gives a depth the model's class itself
            refuses to build (OLMo-Hybrid needs one layer of each kind, RWKV's initialisation
            divides by ``num_hidden_layers - 1``): layer removal does not apply to this model.
            :class:`TiedDepthError` when the block list's depth is tied to sibling lists (HRM)
            and ``count`` is below their number: no single block can go.
        UnsupportedOpError: when fewer than ``count`` removable blocks exist otherwise (also
            for ``count`` at least the number of tied lists: removing the same block of every
            tied list is not implemented).
    """
    path, blocks = find_blocks(model)
    chosen: list[int] = []
    refused: list[int] = []
    reasons: list[tuple[int, str | None]] = []  # (depth after the removal tried, the class's refusal)
    differs: list[str] = []  # where the closest rebuild of the first refused removal differs
    ties: list[list[str]] = []  # per refused removal: the sibling lists it would shorten too
    for i in order:
        if len(chosen) == count:
            break
        trial = sorted(chosen + [int(i)])
        updates, reason, where = _fit(model, trial) if len(trial) < len(blocks) else (None, None, [])
        parts = layer_parts(model, path) if updates is None and reason is None else []
        if parts and tied_lists(model, path, where, parts):  # a layer's other parts, in parallel lists
            updates, reason, where = _fit(model, trial, [path] + parts)
        if updates is not None:
            chosen = trial
        else:
            refused.append(int(i))
            reasons.append((len(blocks) - len(trial), reason))
            differs = differs or where
            ties.append(tied_lists(model, path, where) if reason is None else [])
    if len(chosen) < count:
        name = type(layer_config(model.config)).__name__
        if not chosen and ties and all(ties):  # no single block goes: its list's depth is tied
            tied = [path] + sorted({t for tie in ties for t in tie})
            own = layer_config(model.config)
            fields = [k for k in own.to_dict() if type(getattr(own, k, None)) is int and getattr(own, k) == len(blocks)
                      and COUNT_NAME.search(k)]
            why = (f"{name} builds {len(tied)} block lists from one layer count ({', '.join(tied)}"
                   f"{'; ' + ', '.join(f'{k}={len(blocks)}' for k in fields) if fields else ''}): a block of one "
                   "list cannot be removed alone (removing the same block of every tied list is not implemented)")
            if count < len(tied):  # what was asked cannot exist: not applicable to this model
                raise TiedDepthError(f"{path}: cannot remove {count} block(s): {why}", why, tied)
            raise UnsupportedOpError(f"{path}: cannot remove {count} block(s): {why}; ask for layers=0")
        if reasons and all(r is not None for _, r in reasons):
            depth, reason = reasons[0]
            why = f"{name} builds no model with {depth} layer(s) ({reason})"
            raise DepthNotBuildableError(f"{path}: cannot remove {count} block(s): {why}", why)
        where = (f"; the closest config found builds a model with {len(differs)} difference(s), in "
                 f"{_where(differs)}") if differs else ""
        raise UnsupportedOpError(
            f"{path}: cannot remove {count} block(s): removing {refused[:5]} gives a model that its "
            f"config ({type(model.config).__name__}) cannot rebuild (no per-layer field explains the "
            f"change{where})")
    return chosen
