"""Record, during the trace, the size-taking calls a forward makes (``prunekit.graph.sizes``).

``SizeRecorder`` is a ``TorchFunctionMode`` entered with the tracer's dispatch mode: it
sees ``view`` / ``reshape`` / ``expand`` / ``split`` / ``narrow`` / slicing as written in
Python, numbers them per module path (the replay after the cut numbers them the same
way) and keeps, for each explicit integer that an attribute of the running modules could
explain, the channel labels of the dim it measures.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import torch
from torch.overrides import TorchFunctionMode

from prunekit.graph.derived import Derived
from prunekit.graph.labels import ParamRef, per_index_pairs
from prunekit.graph.sizes import DimSource, SizeRecord, is_int, parse_call, size_call_name


def _dim_source(ctx, t: torch.Tensor, dim: int) -> DimSource | None:
    lab = ctx.labels.get(t)
    if isinstance(lab, Derived):  # computed from parameters: the dim's one parameter dim
        ax = lab.axes[dim] if dim < len(lab.axes) else ()
        if len(ax) != 1 or not ax[0][0] or ax[0][2] != int(t.shape[dim]):
            return None
        return DimSource(int(t.shape[dim]), param=ax[0][0], pdim=ax[0][1])
    if lab is None and id(t) in ctx.tensor_names:
        shape = tuple(t.shape)
        lab = ParamRef(ctx.tensor_names[id(t)], shape, shape, tuple(range(len(shape))))
    if lab is None or dim >= t.dim():
        return None
    size = int(t.shape[dim])
    if isinstance(lab, ParamRef):
        pdim = lab.dims[dim] if lab.dims is not None else None
        if pdim is None or lab.base_shape[pdim] != size:
            return None
        return DimSource(size, param=lab.name, pdim=pdim)
    if lab.numel() == 0 or not bool((lab > 0).any()):
        return None
    if size > 1 and lab.stride(dim) == 0:  # broadcast (tokens of a linear layer): every
        # index has the same labels, so no cut changes this size; recorded as such (FIXED)
        # without pairing every index with every label
        return DimSource(size, index=np.arange(size), atoms=np.zeros(size, dtype=np.int64))
    index, atoms = per_index_pairs(lab, dim)
    return DimSource(size, index=index.numpy(), atoms=atoms.numpy())


def _per_channel(src: DimSource) -> bool:
    """Every index of the dim carries labels of its own, no label at two indices (a
    channel dim, not tokens)."""
    if src.index is None:
        return False
    keep = src.atoms > 0
    if int(keep.sum()) < src.size:  # some index without a label
        return False
    index, atoms = src.index[keep], src.atoms[keep]
    return len(np.unique(index)) == src.size and len(np.unique(atoms)) == len(atoms)


def _plausible_values(modules) -> set[int]:
    """Integers that a stored attribute of these modules could explain (see
    ``prunekit.surgery.stale_sizes``): ints, elements of int sequences, their halves,
    doubles ..."""
    found: set[int] = set()
    for m in modules:
        for k, v in vars(m).items():
            if k.startswith("_"):
                continue
            items = [v] if is_int(v) else list(v) if isinstance(v, (tuple, list)) and all(
                is_int(x) for x in v) else []
            for x in items:
                found.update((x, x // 2, x // 3, x // 4, 2 * x, 3 * x, 4 * x))
    return found


def _held(module) -> set[int]:
    """The integers a module holds as attributes (ints and elements of int sequences)."""
    found: set[int] = set()
    for k, v in vars(module).items() if module is not None else ():
        if k.startswith("_"):
            continue
        if is_int(v):
            found.add(v)
        elif isinstance(v, (tuple, list)) and all(is_int(x) for x in v):
            found.update(v)
    return found


class SizeRecorder(TorchFunctionMode):
    """During a trace: record the size-taking calls (see the module docstring)."""

    def __init__(self, ctx, stack: list[str], modules: dict[str, torch.nn.Module]) -> None:
        super().__init__()
        self.ctx, self.stack, self.modules = ctx, stack, modules
        self.counts: dict[str, int] = defaultdict(int)
        self._plausible: dict[tuple[str, ...], set[int]] = {}
        self._fixed_sections: dict[str, set[int]] = defaultdict(set)  # sizes of fixed splits
        self._inputs: dict[int, tuple] = {}  # id(module) -> the inputs of its running forward
        self._hooks: list = []

    def __enter__(self):
        def remember(module, inputs):
            self._inputs[id(module)] = inputs

        def forget(module, inputs, output):
            # only running modules' inputs are kept: a finished module's would keep its
            # activations (and their labels) alive to the end of the trace (GBs for a
            # 400M-parameter ViT)
            self._inputs.pop(id(module), None)

        hooks = torch.nn.modules.module
        self._hooks = [hooks.register_module_forward_pre_hook(remember),
                       hooks.register_module_forward_hook(forget, always_call=True)]
        return super().__enter__()

    def __exit__(self, *exc):
        for hook in self._hooks:
            hook.remove()
        self._hooks = []
        self._inputs.clear()
        return super().__exit__(*exc)

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = size_call_name(func)
        if getattr(func, "__name__", None) == "scaled_dot_product_attention" and \
                not self.ctx.busy and not self.ctx.opaque and self.ctx.has_labels(args, kwargs):
            return self.ctx.attention_call(func, args, kwargs)
        stored = name == "split" and not self.ctx.busy and self._stored_sections(args, kwargs)
        if stored:
            self.ctx.sizes_stored = True  # unequal pieces may then shrink independently
        try:
            out = func(*args, **kwargs)
        finally:
            if stored:
                self.ctx.sizes_stored = False
        if name is None or self.ctx.busy:
            return out
        path = (self.stack[-1] if self.stack else "") or "<model>"
        key = (path, self.counts[path])
        self.counts[path] += 1
        self.ctx.busy = True  # the tracer must not follow the recorder's own ops
        try:
            rec = self._record(name, args, kwargs, out)
        except Exception:  # noqa: BLE001 - best effort: a miss leaves the integer to the guard
            rec = None
        finally:
            self.ctx.busy = False
        if rec is not None:
            self.ctx.size_records[key] = rec
        return out

    def _stored_sections(self, args, kwargs) -> bool:
        """Whether a split's section sizes are a sequence attribute of the module making
        the call (``torch.split(x, self.split_indexes)``), one that can be updated."""
        from prunekit.surgery.registry import rule_for

        call = parse_call("split", args, kwargs)
        module = self.modules.get(self.stack[-1]) if self.stack else None
        if call is None or module is None or len(call.values) < 2:
            return False
        rule = rule_for(module)
        if rule is not None and rule.sync is not None:
            return False
        attrs = {k: v for k, v in vars(module).items() if not k.startswith("_")}
        if any(isinstance(v, (tuple, list)) and list(v) == call.values for v in attrs.values()):
            return True
        # sections written from integer attributes (``[self.key_dim, self.key_dim,
        # self.val_dim]``): every distinct size is one attribute's value, and none of them
        # also sizes a split of this module that cannot follow the cut (SHViT's
        # ``split(x, [self.pdim, self.dim - self.pdim])``: updating ``pdim`` would break it)
        ints = [v for v in attrs.values() if is_int(v)]
        fixed = self._fixed_sections[self.stack[-1]]
        if all(is_int(v) and ints.count(v) == 1 for v in set(call.values)) and not fixed & set(call.values):
            return True
        fixed.update(v for v in call.values if is_int(v))
        return False

    def _record(self, name, args, kwargs, out) -> SizeRecord | None:
        call = parse_call(name, args, kwargs)
        if call is None:
            return None
        if name.startswith("conv") and not (len(args) > 1 and isinstance(args[1], torch.Tensor)
                                            and args[1].shape[0] == call.values[0]):
            return None  # groups count output channels only in a depthwise conv
        stack = tuple(self.stack)
        if stack not in self._plausible:
            self._plausible[stack] = _plausible_values(
                self.modules[p] for p in stack if p in self.modules)
        plausible = self._plausible[stack]
        rec = SizeRecord(name, stack, list(call.values), [])
        for slot in call.slots:
            t = out if slot.side == "out" else call.tensor
            if not isinstance(t, torch.Tensor):
                continue
            factors = _leading_products(call.values, slot.where) if slot.side == "out" else []
            tie = bool(factors) and self._input_fits(slot.old, factors, t, slot.dim)
            if slot.old not in plausible and not tie:
                continue
            key = (slot.side, slot.dim)
            if key not in rec.dims:
                src = _dim_source(self.ctx, t, slot.dim)
                if src is None:
                    continue
                rec.dims[key] = src
            if slot.hi > rec.dims[key].size:
                continue
            if slot.old in plausible:
                rec.slots.append(slot)
            if tie:  # also a size computed at run time (C // self.num_heads)
                self._width_ties(rec, key, slot.old, factors)
        return rec if rec.slots or rec.ties else None

    def _module_inputs(self) -> tuple:
        module = self.modules.get(self.stack[-1]) if self.stack else None
        return self._inputs.get(id(module), ()) if module is not None else ()

    def _input_fits(self, value: int, factors: list[int], out: torch.Tensor, dim: int) -> bool:
        """Whether an input of the running module has a dim of ``k * value`` that is not
        the output's dim itself (same labels: a window partition keeps the channels)."""
        mine = _first_slice(self.ctx.labels.get(out), dim)
        for t in self._module_inputs():
            if not isinstance(t, torch.Tensor):
                continue
            for d, size in enumerate(t.shape):
                if not any(f * value == size for f in factors):
                    continue
                theirs = _first_slice(self.ctx.labels.get(t), d)
                if mine is None or theirs is None or not torch.equal(mine, theirs):
                    return True
        return False

    def _width_ties(self, rec: SizeRecord, key: tuple[str, int], value: int,
                    factors: list[int]) -> None:
        """An output dim sized like a channel dim of the module's input (``B, N, C =
        x.shape`` then ``reshape(B, N, C)``), or a ``k``-th of it where the ``k`` slices
        come just before (``reshape(B, N, self.num_heads, C // self.num_heads)``), must
        keep that many channels of the input: ``count(input) == k * count(output)``.
        Only a channel dim of the output counts (not a spatial dim sized alike)."""
        if not _per_channel(rec.dims[key]):
            return
        # several inputs of that width (CoaT's parallel block takes four scales): one tie
        # per input; graph.dependency drops them all if one input is the output's group
        for t in self._module_inputs():
            if not isinstance(t, torch.Tensor):
                continue
            for d in range(t.dim()):
                k = next((f for f in factors if t.shape[d] == f * value), None)
                if k is None:
                    continue
                src = _dim_source(self.ctx, t, d)
                if src is not None and src.index is not None and _per_channel(src):
                    rec.ties.append((src, key, k, value in _held(self.modules.get(self.stack[-1]))))
                    break


def _first_slice(lab, dim: int) -> torch.Tensor | None:
    """The labels along ``dim`` at index 0 of every other dim (None for a parameter)."""
    if not isinstance(lab, torch.Tensor) or dim >= lab.dim():
        return None
    for d in range(lab.dim()):
        if d != dim:
            lab = lab.narrow(d, 0, 1)
    return lab.reshape(-1)


def _leading_products(values: list, where: int) -> list[int]:
    """1, then the products of the integers just before ``values[where]`` (1, a, a*b ...
    for ``(..., b, a, values[where])``), while they are positive."""
    out, prod = [1], 1
    for v in reversed(values[:where]):
        if not is_int(v) or v < 1:
            break
        prod *= v
        if v > 1:
            out.append(prod)
    return out
