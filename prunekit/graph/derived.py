"""Weights computed from parameters inside the forward, traced back to those parameters.

Weight standardisation (timm ``StdConv2d`` / ``ScaledStdConv2d``), ``torch.nn.utils``
parametrizations (``weight_norm``, ``spectral_norm``, prunekit's own masks) and LoRA-style
wrappers (``W + B @ A * s``) hand a convolution or a linear layer a tensor that is not a
parameter. While an op reads parameters only, the tracer labels its result with
*axes*: for every dim, the parameter dims (``(name, dim, size)``) it is the row-major
product of. Views regroup and permute axes; pointwise ops couple the axes they align
(``g`` with ``v``'s output dim, ``gain`` with the weight's rows, ``B``'s rows with ``W``'s);
reductions, batch statistics and contractions keep the remaining axes and mark the
reduced ones inexact (removing a channel there changes the normaliser). A weight op then
reads its output / input dims from the axes and slices the owning parameters.

A derived tensor that reaches an op outside this family (or whose axes do not fit) is
labelled exactly as before: the op's ordinary rule runs then, lazily (``Derived.label``).

Example:
    >>> import torch
    >>> from torch import nn
    >>> from prunekit.graph import build_dependency_graph
    >>> m = nn.Sequential(nn.utils.parametrizations.weight_norm(nn.Conv2d(3, 8, 1)),
    ...                   nn.ReLU(), nn.Conv2d(8, 2, 1))
    >>> g = build_dependency_graph(m, torch.zeros(1, 3, 4, 4))
    >>> sorted(t for t, _ in g.groups[0].members)  # doctest: +NORMALIZE_WHITESPACE
    ['0.bias', '0.parametrizations.weight.original0', '0.parametrizations.weight.original1',
     '2.weight']
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.utils._pytree import tree_leaves

from prunekit.graph.dual import Dual
from prunekit.graph.labels import ParamRef

Axis = tuple[str, int, int]  # (parameter name, parameter dim, size); name "" = no identity
Axes = tuple[tuple[Axis, ...], ...]  # per tensor dim: the axes it flattens (size-1: ())

PARAM_OPS = {"t", "transpose", "permute", "expand", "_to_copy", "clone", "contiguous", "alias",
             "detach", "lift_fresh", "view", "_unsafe_view", "reshape", "_reshape_alias",
             "squeeze", "unsqueeze", "flatten", "unflatten", "view_as", "reshape_as"}
_SAME = {"_to_copy", "clone", "contiguous", "alias", "detach", "lift_fresh"}
NORM_REDUCTIONS = {"sum", "mean", "var", "std", "norm", "linalg_vector_norm", "var_mean",
                   "std_mean", "amax", "amin", "prod", "logsumexp"}
BATCH_NORMS = {"native_batch_norm", "_native_batch_norm_legit",
               "_native_batch_norm_legit_no_training", "_native_batch_norm_legit_functional"}
CONTRACTIONS = {"mm", "mv", "dot", "vdot", "addmm", "bmm"}


def param_axes(name: str, shape: tuple[int, ...]) -> Axes:
    """The axes of parameter ``name`` itself."""
    return tuple(((name, d, s),) if s > 1 else () for d, s in enumerate(shape))


def regroup(axes: Axes, shape: tuple[int, ...]) -> Axes | None:
    """Axes after a reshape to ``shape``, or None when it splits an axis.

    Example:
        >>> regroup(param_axes("w", (4, 3, 2)), (1, 4, 6))
        ((), (('w', 0, 4),), (('w', 1, 3), ('w', 2, 2)))
    """
    flat = [a for dim in axes for a in dim]
    out, i = [], 0
    for s in shape:
        group, p = [], 1
        while p < s and i < len(flat):
            group.append(flat[i])
            p *= flat[i][2]
            i += 1
        if p != s:
            return None
        out.append(tuple(group))
    return tuple(out) if i == len(flat) else None


def view_axes(name: str, args, axes: Axes, shape: tuple[int, ...]) -> Axes | None:
    """Axes of the result of view op ``name`` (arguments ``args``) with output ``shape``."""
    nd = len(axes)
    if name in _SAME:
        return axes
    if name == "t":
        return tuple(reversed(axes))
    if name == "transpose":
        a, b = args[1] % max(nd, 1), args[2] % max(nd, 1)
        out = list(axes)
        out[a], out[b] = out[b], out[a]
        return tuple(out)
    if name == "permute":
        return tuple(axes[p % nd] for p in args[1])
    if name == "expand":
        lead = len(shape) - nd
        return tuple(
            (("", -1, s),) if s > 1 and (i < lead or not axes[i - lead]) else
            (() if i < lead else axes[i - lead]) for i, s in enumerate(shape))
    if name in PARAM_OPS:
        return regroup(axes, shape)
    return None


@dataclass(frozen=True)
class Derived:
    """Label of a tensor computed from parameters alone (see the module docstring).

    ``label()`` is the label the op's ordinary rule gives it, computed on first use.
    """

    shape: tuple[int, ...]
    axes: Axes
    lazy: Callable[[], Any]
    index: int = 0
    actions: tuple[Callable[[], None], ...] = ()  # couplings / marks of the derivation
    parents: tuple[Derived, ...] = ()  # the derived tensors it was computed from
    _memo: list = field(default_factory=list, compare=False, repr=False)
    _done: list = field(default_factory=list, compare=False, repr=False)

    def commit(self) -> None:
        """Carry out the couplings of this derivation and of those it came from (once);
        called when a weight op reads this tensor as its weight."""
        todo = [self]
        while todo:
            d = todo.pop()
            if d._done:
                continue
            d._done.append(True)
            for act in d.actions:
                act()
            todo.extend(d.parents)

    def label(self):
        """The ordinary label: a label tensor / ``ParamRef`` / None (the primary labels
        when the rule gave second labels too, see :meth:`second`)."""
        got = self._result()
        return got.primary if isinstance(got, Dual) else got

    def second(self) -> torch.Tensor | None:
        """The second labels the ordinary rule gave (``prunekit.graph.dual``), or None."""
        got = self._result()
        return got.second if isinstance(got, Dual) else None

    def _result(self):
        if not self._memo:
            res = self.lazy()
            self._memo.append(res[self.index] if isinstance(res, (tuple, list)) else (
                res if self.index == 0 else None))
        return self._memo[0]


def axes_of(ctx, t) -> Axes | None:
    """Axes of a parameter-derived tensor (a parameter, a view of one, or ``Derived``)."""
    if not isinstance(t, torch.Tensor):
        return None
    got = ctx.labels.get(t)
    if isinstance(got, Derived):
        return got.axes
    if got is None and id(t) in ctx.tensor_names:
        name = ctx.tensor_names[id(t)]
        ctx.params_seen.add(name)
        return param_axes(name, tuple(t.shape))
    if isinstance(got, ParamRef):
        return got.axes
    return None


class WeightDims:
    """Atoms of each dim of a weight that is a parameter or derived from parameters."""

    def __init__(self, ctx, t: torch.Tensor) -> None:
        self.ctx, self.shape = ctx, tuple(t.shape)
        got = ctx.labels.get(t)
        if isinstance(got, Derived):
            got.commit()  # a weight op reads it: its derivation's couplings hold
        self.plain = None if isinstance(got, Derived) else _plain(ctx, t)
        self.axes = None if self.plain is not None else axes_of(ctx, t)

    @property
    def ok(self) -> bool:
        return self.plain is not None or self.axes is not None

    @property
    def name(self) -> str:
        """The parameter owning dim 0 (for messages)."""
        if self.plain is not None:
            return self.plain.name
        return next((a[0] for dim in self.axes or () for a in dim if a[0]), "")

    def has(self, dim: int) -> bool:
        if self.plain is not None:
            return True
        if self.axes is None:
            return False
        ax = self.axes[dim]
        return len(ax) == 0 or (len(ax) == 1 and ax[0][0] != "")

    def atoms(self, dim: int, producer: bool = False) -> torch.Tensor:
        table = self.ctx.table
        if self.plain is not None:
            return table.dim_atoms(self.plain.name, dim, self.shape[dim], producer=producer)
        ax = self.axes[dim] if self.axes is not None else ()
        if len(ax) != 1 or ax[0][0] == "":
            if self.shape[dim] == 1:
                return table.virtual_atoms(1)
            raise KeyError(dim)
        name, d, size = ax[0]
        return table.dim_atoms(name, d, size, producer=producer)


def _plain(ctx, t):
    ref = ctx.lab(t) if isinstance(t, torch.Tensor) else None
    if isinstance(ref, ParamRef) and ref.dims is not None and list(ref.dims) == list(
            range(len(ref.base_shape))):
        return ref
    return None


def derived_dims(ctx, t) -> WeightDims | None:
    """``WeightDims`` of a ``Derived`` tensor, else None (plain parameters and activations
    keep their rules)."""
    if isinstance(t, torch.Tensor) and isinstance(ctx.labels.get(t), Derived):
        return WeightDims(ctx, t)
    return None


# -- derivation: which ops, and their axes ------------------------------------------------
def try_derive(ctx, name: str, func, args, kwargs, out, rule: Callable | None):
    """Axes-labelled outputs of an op that reads parameter-derived tensors only, or None
    (the op then runs its ordinary rule now). ``rule`` is that ordinary rule, kept for
    ``Derived.label``."""
    tensors = [a for a in tree_leaves((args, kwargs)) if isinstance(a, torch.Tensor)]
    labelled = [a for a in tensors if a in ctx.labels or id(a) in ctx.tensor_names]
    if not labelled:
        return None
    if name in PARAM_OPS and not isinstance(ctx.labels.get(args[0]), Derived):
        return None  # a view of a parameter: ParamRef follows it (with its axes)
    axes = [axes_of(ctx, a) for a in labelled]
    if any(a is None for a in axes):
        return None
    if name.endswith("_") and name != "_":
        return None  # in place: the input's label is replaced, the ordinary rule runs
    from prunekit.graph import derived_ops

    ctx.pending = []
    result = derived_ops.derive(ctx, name, func, args, kwargs, out)
    actions, ctx.pending = tuple(ctx.pending), []
    if result is None:
        return None
    lazy = _lazy(ctx, func, args, kwargs, out, rule)
    parents = tuple(ctx.labels[a] for a in labelled if isinstance(ctx.labels.get(a), Derived))
    outs = out if isinstance(out, (tuple, list)) else (out,)
    res = result if isinstance(out, (tuple, list)) else (result,)
    labels = tuple(
        Derived(tuple(o.shape), r, lazy, i, actions, parents)
        if r is not None and isinstance(o, torch.Tensor)
        else None for i, (o, r) in enumerate(zip(outs, res)))
    return labels if isinstance(out, (tuple, list)) else labels[0]


def _lazy(ctx, func, args, kwargs, out, rule):
    """The ordinary rule of this op, run later with the trace state of now."""
    stack, view, stored = list(ctx.module_stack), ctx.current_view, ctx.sizes_stored
    done: list = []

    def run():
        if done:
            return done[0]
        saved = (list(ctx.module_stack), ctx.current_view, ctx.sizes_stored)
        ctx.module_stack[:] = stack
        ctx.current_view, ctx.sizes_stored = view, stored
        try:
            if rule is None:
                raise ctx.unsupported(func, "no label rule for this op")
            done.append(ctx.run_rule(rule, func, args, kwargs, out))
        finally:
            ctx.module_stack[:] = saved[0]
            ctx.current_view, ctx.sizes_stored = saved[1], saved[2]
        return done[0]

    return run
