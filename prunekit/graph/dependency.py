"""The dependency graph of a model: which channels must be removed together.

``build_dependency_graph(model, example_input)`` traces one forward pass (in training
mode with the batch doubled, so auxiliary branches such as Inception's run too; buffers
and the RNG state are restored afterwards), resolves couplings into groups, and applies
the layer-type rules (protected dims, count ties between groups).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import torch
from torch import nn
from torch.utils._pytree import tree_leaves

from prunekit.errors import ModelError, UnsupportedOpError
from prunekit.graph.groups import Group, build_groups
from prunekit.graph.sizes import finalize
from prunekit.graph.tracer import run_traced
from prunekit.surgery.registry import register_torchvision_rules, rule_for


@dataclass
class DependencyGraph:
    """Groups of coupled units, plus count ties between groups.

    Attributes:
        groups: removable groups (see ``Group``).
        tensor_shapes: shape of every parameter/buffer at trace time.
        ties: (primary group id, dependent group id, factor): kept(primary) ==
            factor * kept(dependent); the factor is an int or a ``Fraction``.
        ops: number of aten ops traced.
    """

    groups: list[Group]
    tensor_shapes: dict[str, tuple[int, ...]]
    ties: list[tuple[int, int, int | Fraction]] = field(default_factory=list)
    ops: int = 0
    output_shapes: list[tuple[int, ...]] = field(default_factory=list)
    splits: dict[tuple[str, int], tuple[tuple[int, int], ...]] = field(default_factory=dict)
    view_counts: dict[str, int] = field(default_factory=dict)
    # (module path, k-th size-taking call) -> SizeRecord, labels as component ids; a
    # group's ``comps`` index the same components (see prunekit.graph.sizes)
    sizes: dict = field(default_factory=dict)
    n_components: int = 0
    # groups (by a member (tensor, dim)) kept prunable on a guess: a module reshapes to a
    # size that both an attribute and its input's width hold; frozen if the cut fails
    optional_freeze: list[tuple[str, int]] = field(default_factory=list)
    # ties found from a size that is also an attribute (``reshape(B, N, self.attn_dim)``):
    # the forward probably reads the attribute, so they hold only where no tie conflicts
    soft_ties: list[tuple[int, int, int]] = field(default_factory=list)
    # (tensor, dim) of each dropped group's members -> why it was frozen (graph.explain)
    drop_reasons: dict[tuple[str, int], list[str]] = field(default_factory=dict)

    def group_of(self, tensor: str, dim: int) -> Group | None:
        for g in self.groups:
            if (tensor, dim) in g.index:
                return g
        return None

    def __repr__(self) -> str:
        return f"DependencyGraph({len(self.groups)} groups, {sum(g.size for g in self.groups)} units)"


def _double_batch(example_input: Any) -> Any:
    def dup(t):
        if isinstance(t, torch.Tensor) and t.dim() > 0 and t.shape[0] == 1:
            return torch.cat([t, t])
        return t

    if isinstance(example_input, dict):
        return {k: dup(v) for k, v in example_input.items()}
    if isinstance(example_input, (tuple, list)):
        return type(example_input)(dup(t) for t in example_input)
    return dup(example_input)


def _trace(model: nn.Module, example_input: Any):
    """Trace in eval mode; if some parameters were not used (auxiliary heads such as
    Inception's run only in training), trace again in training mode with the batch
    doubled. Buffers, the RNG state and the train/eval mode are restored.

    Returns (context, output shapes of the eval forward, its reshape splits and counts,
    its size-taking calls with the atom table they refer to).
    """
    buffers = {n: b.detach().clone() for n, b in model.named_buffers()}
    rng = torch.random.get_rng_state()
    was_training = model.training
    try:
        model.eval()
        ctx, out = run_traced(model, example_input)
        shapes = [tuple(t.shape) for t in tree_leaves(out) if isinstance(t, torch.Tensor)]
        views = (dict(ctx.splits), dict(ctx.view_counts))  # of the eval forward, as replayed
        sizes = (ctx.size_records, ctx.table)
        names = {n for n, _ in model.named_parameters()}
        if names - ctx.params_seen:
            model.train()
            try:
                ctx, _ = run_traced(model, _double_batch(example_input))
            except UnsupportedOpError:
                raise
            except Exception:  # training-mode forward not possible: keep the eval trace
                pass
        return ctx, shapes, views, sizes
    finally:
        model.train(was_training)
        torch.random.set_rng_state(rng)
        with torch.no_grad():
            for n, b in model.named_buffers():
                if n in buffers and b.shape == buffers[n].shape:
                    b.copy_(buffers[n])


def build_dependency_graph(model: nn.Module, example_input: Any) -> DependencyGraph:
    """Trace ``model`` on ``example_input`` and return its ``DependencyGraph``.

    Example:
        >>> m = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(),
        ...                   nn.Conv2d(8, 4, 3))
        >>> g = build_dependency_graph(m, torch.zeros(1, 3, 8, 8))
        >>> [(grp.size, sorted(grp.index)) for grp in g.groups]  # doctest: +NORMALIZE_WHITESPACE
        [(8, [('0.bias', 0), ('0.weight', 0), ('1.bias', 0), ('1.running_mean', 0),
              ('1.running_var', 0), ('1.weight', 0), ('3.weight', 1)])]
    """
    return build_dependency_graph_with_trace(model, example_input)[0]


def build_dependency_graph_with_trace(model: nn.Module, example_input: Any):
    """``build_dependency_graph`` plus its atom table and atom components (for
    ``prunekit.graph.explain``)."""
    register_torchvision_rules()
    try:
        ctx, out_shapes, (splits, view_counts), (records, table) = _trace(model, example_input)
    except RuntimeError as exc:
        raise ModelError(f"the model's forward failed on the example input: {exc}") from exc
    shapes = {n: tuple(p.shape) for n, p in model.named_parameters(remove_duplicate=False)}
    shapes.update({n: tuple(b.shape) for n, b in model.named_buffers(remove_duplicate=False)})
    _buffers_produce_nothing(ctx.table, model)
    comp, whole_heads = ctx.heads.resolve()
    for key in whole_heads:  # splits that lose whole heads keep their other counts
        if key in splits:
            splits[key] = ctx.heads.guard_counts(key)
    groups = build_groups(ctx.table, shapes, comp)
    graph = DependencyGraph(groups, shapes, ops=ctx.ops_seen, output_shapes=out_shapes,
                            splits=splits, view_counts=view_counts,
                            sizes=finalize(records, table, ctx.table, comp),
                            n_components=len(comp))
    _apply_module_rules(model, graph)
    _apply_width_ties(graph)
    return graph, ctx.table, comp


def _buffers_produce_nothing(table, model: nn.Module) -> None:
    """A buffer is not a learned channel: its slices go only with a parameter's (a BN's
    running statistics). A coordinate table (ConViT's ``rel_indices``, rebuilt by the
    forward when its shape differs) is then never cut on its own."""
    buffers = {n for n, _ in model.named_buffers(remove_duplicate=False)}
    params = {n for n, _ in model.named_parameters(remove_duplicate=False)}
    for block in table.blocks:
        if block.tensor in buffers and block.tensor not in params:
            block.producer = False


def _apply_width_ties(graph: DependencyGraph) -> None:
    """A module that sizes an output dim from its input's width (``B, N, C = x.shape``
    ... ``reshape(B, N, C)`` or ``reshape(B, N, H, C // H)``) needs both to keep
    proportional counts: tie their groups, or freeze them when that cannot hold (see
    graph.sizes)."""
    owner: dict[int, int] = {}
    for g in graph.groups:
        if g.comps is not None:
            owner.update((c, g.id) for c in g.comps.tolist())
    frozen: set[int] = set()
    why: dict[int, str] = {}
    known = {(a, b) for a, b, _ in graph.ties}
    for rec in graph.sizes.values():
        settled: set[tuple[str, int]] = set()  # output dims one input already sizes
        for src, dkey, _, _ in rec.ties:
            a = {owner.get(c) for c in set(src.atoms.tolist())}
            if a == {owner.get(c) for c in set(rec.dims[dkey].atoms.tolist()) if c >= 0}:
                settled.add(dkey)
        for src, dkey, k, held in rec.ties:
            if dkey in settled:
                continue
            settled.add(dkey)  # the first input of that width: the others are alternatives
            a = [owner.get(c) for c in set(src.atoms.tolist())]
            b = [owner.get(c) for c in set(rec.dims[dkey].atoms.tolist()) if c >= 0]
            if not any(x is not None for x in a):  # the input's width never changes
                frozen.update(x for x in b if x is not None)
                why.update((x, f"size of {_call(rec)} is the width of a dim that never "
                               "shrinks") for x in b if x is not None)
                continue
            # an output dim whose indices all lie in one unit (the head dim of a split that
            # loses whole heads, graph.head_modes) never shrinks either: heads go instead
            whole = _spans_dim(rec.dims[dkey])
            if (None in b or whole) and held:  # the output never shrinks, and its size is also an
                # attribute: the forward probably reads that (timm's attn_dim), not the
                # input's width (PVT-v2's C); the pruner freezes them if the cut fails
                graph.optional_freeze.extend(graph.groups[x].members[0] for x in a if x is not None)
                continue
            tie = None
            if len(set(a)) == 1 and len(set(b)) == 1 and None not in b:
                # indices per unit: heads x head_dim puts one unit at every head;
                # count(input) = k * count(output): kept_a * na = k * kept_b * nb
                na, nb = (Fraction(n, graph.groups[g[0]].size) for n, g in
                          ((src.size, a), (rec.dims[dkey].size, b)))
                # units of several indices (head-dim pairs) on either side: the ratio
                # kept_a / kept_b = k * nb / na must be a whole number one way round
                r = k * nb / na
                if whole:  # ``C // num_heads`` when whole heads go: the head dim keeps its
                    # size if the input keeps head_dim channels per head kept (one unit per
                    # head, num_heads updated as a stale size): kept_a * na = kept_b * D
                    r = Fraction(rec.dims[dkey].size) / na if graph.groups[b[0]].size == k else None
                if r is None:  # units that are not one per head: the input keeps head_size
                    tie = _whole_heads_tie(graph, src, rec.dims[dkey].size, a[0], b[0])
                elif r.denominator == 1:
                    tie = (a[0], b[0], int(r))
                elif r.numerator == 1:
                    tie = (b[0], a[0], r.denominator)
                else:  # e.g. units of 6 channels and heads of 32: 16 units per 3 heads
                    tie = (a[0], b[0], r)
            if tie is None:
                frozen.update(x for x in a + b if x is not None)
                why.update((x, f"width tie of {_call(rec)} has no whole-number ratio")
                           for x in a + b if x is not None)
            elif tie[:2] not in known and tie[1::-1] not in known:
                (graph.soft_ties if held else graph.ties).append(tie)
                known.add(tie[:2])
            elif not held and tie in graph.soft_ties:  # a guess confirmed by a computed size
                graph.soft_ties.remove(tie)
                graph.ties.append(tie)
    if frozen:
        _drop(graph, frozen, why)


def binding_ties(graph: DependencyGraph) -> list[tuple[int, int, int]]:
    """The ties the allocation must keep: every tie, and each soft tie that still lets
    its primary group shrink (kept counts a multiple of every factor, below its size);
    a soft tie that would freeze it conflicts with a computed tie, so it is a guess the
    forward does not need (CrossViT: heads of 32 read from ``self.head_dim`` beside a
    cross attention's ``C // 3``).

    Example:
        >>> g = DependencyGraph([], {}, ties=[(0, 1, 3)], soft_ties=[(0, 2, 32), (0, 3, 1)])
        >>> g.groups = [type("G", (), {"size": 96})()] * 4
        >>> binding_ties(g)
        [(0, 1, 3), (0, 3, 1)]
    """
    ties = list(graph.ties)
    multiple: dict[int, int] = {}
    for a, _, f in ties:  # a fractional factor p/q keeps the primary a multiple of p
        multiple[a] = math.lcm(multiple.get(a, 1), Fraction(f).numerator)
    for a, b, f in graph.soft_ties:
        m = math.lcm(multiple.get(a, 1), Fraction(f).numerator)
        if m < graph.groups[a].size:
            ties.append((a, b, f))
            multiple[a] = m
    return ties


def _call(rec) -> str:
    return f"{rec.name} in {(rec.stack[-1] if rec.stack else '') or '<model>'}"


def _whole_heads_tie(graph: DependencyGraph, src, head_size: int, a: int, b: int):
    """``reshape(B, N, self.num_heads, C // self.num_heads)`` whose split loses whole
    heads (one unit of group ``b`` per head): the head size stays, so the input's width
    ``C`` must keep ``head_size`` channels per kept head: kept_a * na = head_size * kept_b
    (``na``: input indices per unit of ``a``). None when the widths do not add up so."""
    units = graph.groups[b].size
    if src.size != head_size * units:
        return None
    r = Fraction(head_size) / Fraction(src.size, graph.groups[a].size)
    if r.denominator == 1:
        return (a, b, int(r))
    if r.numerator == 1:
        return (b, a, r.denominator)
    return (a, b, r)


def _spans_dim(src) -> bool:
    """Whether every unit along a recorded dim covers all of its indices (the head dim of
    a split that loses whole heads): removing units never shrinks that dim."""
    if src.index is None or src.atoms is None or src.size < 2:
        return False
    ok = src.atoms >= 0
    pairs = {(int(i), int(c)) for i, c in zip(src.index[ok], src.atoms[ok])}
    per: dict[int, int] = {}
    for _, c in pairs:
        per[c] = per.get(c, 0) + 1
    return bool(per) and all(n == src.size for n in per.values())


def _apply_module_rules(model: nn.Module, graph: DependencyGraph) -> None:
    frozen: set[int] = set()
    why: dict[int, str] = {}
    for name, module in model.named_modules():
        rule = rule_for(module)
        if rule is None:
            continue
        prefix = f"{name}." if name else ""
        if rule.protect is not None:
            for tensor, dim in rule.protect(module, prefix):
                g = graph.group_of(tensor, dim)
                if g is not None:
                    frozen.add(g.id)
                    why[g.id] = f"protected by the surgery rule of {name or '<model>'}"
        if rule.ties is not None:
            for tie in rule.ties(module, prefix):
                a, b = graph.group_of(*tie.primary), graph.group_of(*tie.dependent)
                if a is not None and b is not None and a.id == b.id and \
                        a.index[tie.primary].shape[1] == tie.factor * a.index[tie.dependent].shape[1]:
                    continue  # one group already removes factor x as many indices of primary
                if a is None or b is None or a.id == b.id:
                    frozen.update(x.id for x in (a, b) if x is not None)
                    why.update((x.id, f"count tie of the surgery rule of {name or '<model>'}")
                               for x in (a, b) if x is not None)
                else:
                    graph.ties.append((a.id, b.id, tie.factor))
    if frozen:
        _drop(graph, frozen, why)


def _drop(graph: DependencyGraph, frozen: set[int], why: dict[int, str] | None = None) -> None:
    """Remove frozen groups (and, through ties, everything tied to them); ``why`` (group
    id -> reason) is recorded in ``graph.drop_reasons`` for their members."""
    why = dict(why or {})
    changed = True
    while changed:
        changed = False
        for a, b, _ in graph.ties + graph.soft_ties:
            if (a in frozen) != (b in frozen):
                src, dst = (a, b) if a in frozen else (b, a)
                why.setdefault(dst, f"tied to a frozen group ({why.get(src, 'see there')})")
                frozen.update((a, b))
                changed = True
    for g in graph.groups:
        if g.id in frozen:
            for key in g.members:
                graph.drop_reasons.setdefault(key, []).append(why.get(g.id, "frozen"))
    keep = [g for g in graph.groups if g.id not in frozen]
    remap = {g.id: i for i, g in enumerate(keep)}
    graph.ties = [(remap[a], remap[b], f) for a, b, f in graph.ties if a in remap and b in remap]
    graph.soft_ties = [(remap[a], remap[b], f) for a, b, f in graph.soft_ties
                       if a in remap and b in remap]
    for g in keep:
        g.id = remap[g.id]
    graph.groups = keep
