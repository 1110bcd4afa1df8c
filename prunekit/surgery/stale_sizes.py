"""Update the Python size attributes a pruned forward would read stale.

The trace recorded every explicit integer a module passes to ``view`` / ``reshape`` /
``expand`` / ``split`` / ``narrow`` / slicing, and which channels it counts
(``prunekit.graph.sizes``). After a cut, the forward is replayed shape-only; a call whose
integer still has its old value where the pruned model needs another is *stale*. The
attribute holding it is looked up in the module that made the call, then its parents:

* an int attribute equal to the stale value (``self.head_dim``, ``self.width``);
* an int sequence equal to all of the call's integers (``self.split_sizes``,
  ``self.shape = (dim, 1, 1)``), or holding the stale value once;
* failing those, an int attribute that is 2, 3 or 4 times the value or a half, third
  or quarter of it (``x.split(self.expand_chs // 2)``, ``view(B, -1, self.dim_head * 3)``).

An update is kept only if the next replay shows the call fixed; it is undone otherwise
(the value came from a literal or from elsewhere, and the guard will name the module).
Where several attributes hold the value, each is tried in turn: the one whose change
fixes the call is used; if trying them does not single one out: :class:`AmbiguousSizeError`.
Modules with a surgery rule keep their rule's behaviour: their attributes are not
touched. Updates are returned as :class:`AttrUpdate` for the plan, and
:func:`apply_attr_updates` replays them on a fresh model.

Example:
    >>> from torch import nn
    >>> m = nn.Module(); m.head_dim = 8
    >>> apply_attr_updates(m, [{"module": "", "name": "head_dim", "before": 8, "after": 4}])
    >>> m.head_dim
    4
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from torch import nn
from torch.overrides import TorchFunctionMode

from prunekit.errors import ModelError
from prunekit.graph.guard import traced_forward
from prunekit.graph.shapes import ShapeOnly
from prunekit.graph.sizes import SizeRecord, Slot, expected_sizes, is_int, parse_call, size_call_name
from prunekit.surgery.registry import rule_for

MAX_ROUNDS = 8
DERIVED_FACTORS = (2, 3, 4)


class AmbiguousSizeError(ModelError):
    """A stale size is held by several attributes and prunekit cannot tell which one."""


@dataclass(frozen=True)
class AttrUpdate:
    """``module.name`` changed from ``before`` to ``after`` (JSON-ready values)."""

    module: str
    name: str
    before: Any
    after: Any

    def to_json(self) -> dict[str, Any]:
        return {"module": self.module, "name": self.name, "before": self.before,
                "after": self.after}


@dataclass(frozen=True)
class _Stale:
    key: tuple[str, int]
    record: SizeRecord
    slot: Slot
    new: int


@dataclass(frozen=True)
class _Candidate:
    module: str
    name: str
    index: int | None  # element of a sequence attribute, or None for an int
    old: int
    new: int


def _jsonable(v: Any) -> Any:
    return list(v) if isinstance(v, (tuple, list)) else v


def _like(current: Any, value: Any) -> Any:
    return type(current)(value) if isinstance(current, (tuple, list)) else value


class _Checker(TorchFunctionMode):
    """Replay: note stale integers and pass the expected ones, so the forward goes on."""

    def __init__(self, stack: list[str], records: dict, expected: dict) -> None:
        super().__init__()
        self.stack, self.records, self.expected = stack, records, expected
        self.counts: dict[str, int] = defaultdict(int)
        self.stale: list[_Stale] = []  # still the old value
        self.wrong: list[_Stale] = []  # neither old nor expected (computed from something stale)

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = size_call_name(func)
        if name is None:
            return func(*args, **kwargs)
        path = (self.stack[-1] if self.stack else "") or "<model>"
        key = (path, self.counts[path])
        self.counts[path] += 1
        rec = self.records.get(key)
        call = parse_call(name, args, kwargs) if rec is not None and rec.name == name else None
        if call is not None:
            values, changed = list(call.values), False
            for slot, new in zip(rec.slots, self.expected[key]):
                now = values[slot.where] if slot.where < len(values) else None
                if not is_int(now) or now == new:
                    continue
                (self.stale if now == slot.old else self.wrong).append(_Stale(key, rec, slot, new))
                values[slot.where], changed = new, True
            if changed:
                args, kwargs = call.rebuild(values)
        return func(*args, **kwargs)


def _call(model: nn.Module, example_input: Any) -> Any:
    if isinstance(example_input, dict):
        return model(**example_input)
    if isinstance(example_input, (tuple, list)):
        return model(*example_input)
    return model(example_input)


def find_stale(model: nn.Module, example_input: Any, records: dict,
               expected: dict) -> tuple[list[_Stale], list[_Stale]]:
    """Replay ``model`` shape-only in eval mode; the integers it passed that kept their
    old value where another is expected, and those that are neither."""
    was = model.training
    model.eval()
    try:
        with traced_forward(model) as stack, ShapeOnly():
            checker = _Checker(stack, records, expected)
            with checker:
                try:
                    _call(model, example_input)
                except Exception:  # noqa: BLE001 - what broke is reported by the guard
                    pass
    finally:
        model.train(was)
    return checker.stale, checker.wrong


def _candidates(model: nn.Module, stale: _Stale) -> tuple[str, list[_Candidate], bool]:
    """(module path searched, candidates, whether they are guesses from a multiple)."""
    v, w = stale.slot.old, stale.new
    modules = dict(model.named_modules())
    for depth, path in enumerate(reversed(stale.record.stack)):
        module = modules.get(path)
        if module is None:
            continue
        rule = rule_for(module)
        if rule is not None and rule.sync is not None:
            if depth == 0:
                return path, [], False  # its own rule keeps its sizes
            continue
        whole, direct, derived = [], [], []
        for name, val in vars(module).items():
            if name.startswith("_"):
                continue
            if is_int(val):
                if val == v:
                    direct.append(_Candidate(path, name, None, v, w))
                for k in DERIVED_FACTORS:
                    if val == k * v:  # the call passes self.x // k
                        derived.append(_Candidate(path, name, None, val, k * w))
                    elif val * k == v and w % k == 0:  # the call passes self.x * k
                        derived.append(_Candidate(path, name, None, val, w // k))
            elif isinstance(val, (tuple, list)) and val and all(is_int(x) for x in val):
                if list(val) == list(stale.record.values):
                    whole.append(_Candidate(path, name, stale.slot.where, v, w))
                elif list(val).count(v) == 1:
                    direct.append(_Candidate(path, name, list(val).index(v), v, w))
        if depth == 0:  # or a method of a child reads it (``self.rel_pos.get_bias()``)
            child_whole, child_direct = _in_children(module, path, stale)
            whole, direct = whole or child_whole, direct + child_direct
        if len(whole) == 1:
            return path, whole, False
        if whole or direct:
            return path, whole + direct, False
        if derived:
            return path, derived, True
    return "", [], False


def _in_children(module: nn.Module, path: str,
                 stale: _Stale) -> tuple[list[_Candidate], list[_Candidate]]:
    """Attributes of ``module``'s children (a child whose method the module called, e.g.
    ``self.rel_pos.get_bias()``): (sequences equal to all of the call's integers, ints
    equal to the stale one)."""
    v, w = stale.slot.old, stale.new
    whole, direct = [], []
    for child_name, child in module.named_children():
        rule = rule_for(child)
        if rule is not None and rule.sync is not None:
            continue
        where = f"{path}.{child_name}" if path else child_name
        for name, val in vars(child).items():
            if name.startswith("_"):
                continue
            if is_int(val) and val == v:
                direct.append(_Candidate(where, name, None, v, w))
            elif isinstance(val, (tuple, list)) and list(val) == list(stale.record.values):
                whole.append(_Candidate(where, name, stale.slot.where, v, w))
    return whole, direct


def _describe(stale: _Stale) -> str:
    path = stale.key[0]
    return (f"module '{path}' calls {stale.record.name} with {stale.slot.old} where the "
            f"pruned model needs {stale.new}")


def _ambiguous(model: nn.Module, stale: _Stale, cands: list[_Candidate]) -> AmbiguousSizeError:
    path = cands[0].module
    kind = type(model.get_submodule(path)).__name__ if path else type(model).__name__
    names = sorted({c.name for c in cands})
    shown = path or "<model>"
    return AmbiguousSizeError(
        f"{_describe(stale)}, and several attributes of '{shown}' ({kind}) hold "
        f"{stale.slot.old}: {names}; changing any one alone does not fix the call, so "
        f"prunekit cannot tell which the forward reads. "
        f"Register a rule whose sync updates it "
        f"(prunekit.surgery.register_surgery_rule({kind}, SurgeryRule(sync=...))) or list "
        f"'{shown}' in ignored_layers; the model was restored")


def _get(model: nn.Module, path: str) -> nn.Module:
    return model.get_submodule(path) if path else model


def _set(model: nn.Module, cand: _Candidate) -> None:
    module = _get(model, cand.module)
    current = getattr(module, cand.name)
    if cand.index is None:
        setattr(module, cand.name, cand.new)
    else:
        items = list(current)
        items[cand.index] = cand.new
        setattr(module, cand.name, _like(current, items))


def _where(s: _Stale) -> tuple:
    return (s.key, s.slot.where)


def _probe(model: nn.Module, example_input: Any, records: dict, expected: dict,
           unclear: list[tuple[_Stale, list[_Candidate]]], seen: list[_Stale]) -> dict:
    """Try the j-th candidate of every unclear stale integer (all at once, then undone):
    a candidate *feeds* the call if that fixes it without a new wrong integer in its
    module. Returns {stale slot: the one candidate that does} for the clear results.
    ``seen``: every stale or wrong integer of the replay before."""
    before = {_where(s) for s in seen}
    works: dict[tuple, list[_Candidate]] = defaultdict(list)
    for j in range(max(len(c) for _, c in unclear)):
        trial: dict[tuple, _Candidate] = {}
        for _s, cands in unclear:
            if j < len(cands):
                trial.setdefault((cands[j].module, cands[j].name, cands[j].index), cands[j])
        for c in trial.values():
            _set(model, c)
        try:
            after, wrong = find_stale(model, example_input, records, expected)
        finally:
            for c in trial.values():
                _set(model, replace(c, new=c.old))
        still = {_where(x) for x in after}
        broken = {m for x in after + wrong if _where(x) not in before for m in x.record.stack}
        for s, cands in unclear:
            c = cands[j] if j < len(cands) else None
            applied = c is not None and trial[(c.module, c.name, c.index)] == c
            if applied and _where(s) not in still and c.module not in broken:
                works[_where(s)].append(c)
    return {k: v[0] for k, v in works.items() if len(v) == 1}


def _proposals(model: nn.Module, stale: list[_Stale], failed: set[tuple[_Candidate, tuple]]):
    """(proposals {attribute slot: (candidate, stale)}, unclear [(stale, candidates)],
    the first unclear stale that is not a guess, for the error). ``failed``: (candidate,
    call slot) pairs already tried: an attribute that did not feed one call may still
    feed another (``self.dim_head_v`` is not the query's head size, but the value's)."""
    proposals: dict[tuple, tuple[_Candidate, _Stale]] = {}
    unclear, ambiguous = [], None
    for s in stale:
        _path, cands, guess = _candidates(model, s)
        cands = [c for c in cands if (c, _where(s)) not in failed]
        if len(cands) > 1:
            unclear.append((s, cands))
            if ambiguous is None and not guess:
                ambiguous = (s, cands)
            continue
        if not cands:
            continue
        c = cands[0]
        slot = (c.module, c.name, c.index)
        if slot in proposals and proposals[slot][0].new != c.new:
            other, other_stale = proposals.pop(slot)  # two calls want two values
            failed.update(((c, _where(s)), (other, _where(other_stale))))
            continue
        proposals[slot] = (c, s)
    return proposals, unclear, ambiguous


def update_stale_sizes(model: nn.Module, example_input: Any, records: dict,
                       removed: np.ndarray) -> list[AttrUpdate]:
    """After a cut (``removed`` flags the removed components): replay, find stale
    integers, update the attributes holding them; returns the updates made.

    Attributes holding a stale value alone are updated first (each update is checked
    by the next replay and undone if the call stays stale); where several hold it, each
    is tried in turn and the one whose change fixes the call is used. The caller owns
    undoing the updates (``apply_keep``'s snapshot restores every attribute).

    Raises:
        AmbiguousSizeError: several attributes hold a stale value and trying them does
            not single out one.
    """
    if not records:
        return []
    expected = expected_sizes(records, removed)
    if all(n == s.old for key, rec in records.items() for s, n in zip(rec.slots, expected[key])):
        return []  # no recorded integer counts a removed channel: nothing can be stale
    before: dict[tuple[str, str], Any] = {}
    failed: set[tuple[_Candidate, tuple]] = set()
    pending: dict[_Candidate, tuple] = {}  # applied last round -> the stale it should fix
    # a replay may stop at the first stale call it cannot get past, so a model whose
    # blocks each hold one stale size needs a round per block: rounds go on while they
    # make progress, up to one per module with recorded sizes
    rounds = max(MAX_ROUNDS, len({key[0] for key in records}) + 1)
    for _ in range(rounds):
        stale, wrong = find_stale(model, example_input, records, expected)
        still = {_where(s) for s in stale}
        for cand, what in pending.items():
            if what in still:  # the attribute did not feed that call: undo
                _set(model, replace(cand, new=cand.old))
                failed.add((cand, what))
        pending = {}
        if not stale:
            break
        proposals, unclear, ambiguous = _proposals(model, stale, failed)
        # modules without a clear update this round probe their unclear ones meanwhile
        # (one replay per candidate rank for all of them), so each module's search runs
        # in parallel with the others' instead of after them
        busy = {s.key[0] for _c, s in proposals.values()}
        waiting = [(s, cands) for s, cands in unclear if s.key[0] not in busy]
        if waiting:
            found = _probe(model, example_input, records, expected, waiting, stale + wrong)
            for s, _cands in waiting:
                c = found.get(_where(s))
                if c is not None:
                    proposals.setdefault((c.module, c.name, c.index), (c, s))
        if not proposals and ambiguous is not None:
            raise _ambiguous(model, *ambiguous)
        if not proposals:
            break
        for c, s in proposals.values():
            current = getattr(_get(model, c.module), c.name)
            before.setdefault((c.module, c.name), _jsonable(current))
            pending[c] = _where(s)
            _set(model, c)
    updates = []
    for (path, name), old in before.items():
        now = _jsonable(getattr(_get(model, path), name))
        if now != old:
            updates.append(AttrUpdate(path, name, old, now))
    return updates


def apply_attr_updates(model: nn.Module, updates: list[dict[str, Any]], where: str = "plan") -> None:
    """Replay recorded attribute updates (``AttrUpdate.to_json()``) on a fresh model.

    Raises ``ModelError`` if an attribute is missing or does not hold its old value.
    """
    for u in updates:
        path, name = u["module"], u["name"]
        try:
            module = _get(model, path)
        except AttributeError as exc:
            raise ModelError(f"{where}: the model has no module '{path}'; is it the same "
                             f"architecture?") from exc
        current = module.__dict__.get(name)
        if current is None or _jsonable(current) != u["before"]:
            raise ModelError(
                f"{where}: '{path or '<model>'}.{name}' is {current!r}, the plan expects "
                f"{u['before']!r}; is it the same architecture?")
        setattr(module, name, _like(current, u["after"]))
