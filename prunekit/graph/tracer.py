"""Trace a forward pass at the aten level and record which channels are coupled.

The model runs eagerly (any Python control flow works) under a ``TorchDispatchMode``
that sees every aten op after decomposition: convolutions, matmuls, norms, adds, cats,
views, permutes, chunks, index ops, attention kernels ... For each op a rule from
``prunekit.graph.rules`` / ``weights`` computes the output's per-element channel labels
and records couplings. An op that receives labelled data and has no rule raises
``UnsupportedOpError`` naming the op and the module path it ran in.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves
from torch.utils.weak import WeakIdKeyDictionary

from prunekit.errors import UnsupportedOpError
from prunekit.graph import contraction, derived_ops, dual, rules, weights
from prunekit.graph.atoms import FIXED, AtomTable
from prunekit.graph.derived import Derived, param_axes, try_derive
from prunekit.graph.guard import VIEWISH, traced_forward
from prunekit.graph.head_modes import SplitModes
from prunekit.graph.labels import ParamRef
from prunekit.graph.shapes import is_heavy, shape_only_call
from prunekit.graph.size_recorder import SizeRecorder

WEIGHT_RULES = {
    "convolution": weights.convolution,
    "_convolution": weights.convolution,
    "mm": contraction.matmul, "bmm": contraction.matmul, "addmm": contraction.matmul,
    "baddbmm": contraction.matmul,
    "native_batch_norm": weights.batch_norm,
    "_native_batch_norm_legit": weights.batch_norm,
    "_native_batch_norm_legit_no_training": weights.batch_norm,
    "_native_batch_norm_legit_functional": weights.batch_norm,
    "native_layer_norm": weights.layer_norm,
    "native_group_norm": weights.group_norm,
    "_prelu_kernel": weights.prelu,
    "embedding": weights.embedding,
    "_scaled_dot_product_flash_attention_for_cpu": weights.attention,
    "_scaled_dot_product_flash_attention": weights.attention,
    "_scaled_dot_product_efficient_attention": weights.attention,
    "_scaled_dot_product_cudnn_attention": weights.attention,
    "scaled_dot_product_attention": weights.attention,
}

# rules that read and write second labels themselves (the others: ``dual.carry``)
SECOND_AWARE = {contraction.matmul, rules.pointwise}


class TraceContext:
    """Holds labels of live tensors, the atom table and the current module path."""

    def __init__(self, model: nn.Module) -> None:
        self.table = AtomTable()
        self.labels: WeakIdKeyDictionary = WeakIdKeyDictionary()
        # second labels of tensors indexed by two channel sets (see prunekit.graph.dual)
        self.second: WeakIdKeyDictionary = WeakIdKeyDictionary()
        self.tensor_names: dict[int, str] = {}
        self.module_stack: list[str] = []
        self.modules_by_name = dict(model.named_modules())
        for n, p in model.named_parameters(remove_duplicate=False):
            self.tensor_names.setdefault(id(p), n)
        self.buffer_names: set[str] = set()
        for n, b in model.named_buffers(remove_duplicate=False):
            # integer buffers (position ids, indices) hold no channels; a parametrization's
            # bool buffer (a mask) is sliced with the parameter it masks
            if b.is_floating_point() or b.dtype == torch.bool and ".parametrizations." in f".{n}":
                self.tensor_names.setdefault(id(b), n)
                self.buffer_names.add(self.tensor_names[id(b)])
        self._tensors_alive = [p for p in model.parameters()] + [b for b in model.buffers()]
        self.ops_seen = 0
        self.view_counts: dict[str, int] = {}
        self.current_view: tuple[str, int] | None = None
        # (module path, k-th reshape) -> ((dim, count), ...) leading counts of channel splits
        self.splits: dict[tuple[str, int], tuple[tuple[int, int], ...]] = {}
        self.params_seen: set[str] = set()
        # (module path, k-th size-taking call) -> SizeRecord (see prunekit.graph.sizes)
        self.size_records: dict = {}
        self.busy = False  # inside an op's label rule: its own torch calls are not the model's
        # tensors computed from labelled data whose channel identity was lost (scores)
        self.lost: WeakIdKeyDictionary = WeakIdKeyDictionary()
        self._alias = torch.zeros(0, dtype=torch.int64)  # atom -> coupled atom (see alias)
        self.sizes_stored = False  # the running split takes its sizes from an attribute
        self.sum_reduced: set = set()  # parameter axes summed over (see graph.derived_ops)
        self.pending: list = []  # actions of the derivation being traced (graph.derived)
        self.axis_links: dict = {}  # parameter axes a derivation made one (graph.derived_ops)
        self.heads = SplitModes(self.table)  # head dims or whole heads (graph.head_modes)
        self.opaque = False  # inside a call traced as one op (attention_call)

    def lab(self, t: Any):
        if not isinstance(t, torch.Tensor):
            return None
        got = self.labels.get(t)
        if isinstance(got, Derived):  # computed from parameters: its ordinary label
            sec = got.second()  # a Dual from the ordinary rule: labels + second labels
            if sec is not None and t not in self.second:
                self.second[t] = sec
            return got.label()
        if got is not None:
            return got
        name = self.tensor_names.get(id(t))
        if name is not None:
            self.params_seen.add(name)
            shape = tuple(t.shape)
            return ParamRef(name, shape, shape, tuple(range(len(shape))),
                            axes=param_axes(name, shape))
        return None

    def set(self, t: Any, lab) -> None:
        if not isinstance(t, torch.Tensor):
            return
        if lab is None:
            if t in self.labels:
                del self.labels[t]
            return
        if isinstance(lab, Derived):
            self.labels[t] = lab
            return
        if isinstance(lab, torch.Tensor) and tuple(lab.shape) != tuple(t.shape):
            if lab.numel() == t.numel():
                lab = lab.reshape(t.shape)
            else:
                raise RuntimeError(f"label shape {tuple(lab.shape)} != {tuple(t.shape)}")
        self.labels[t] = lab

    def alias(self, labels: torch.Tensor, ref: torch.Tensor) -> None:
        """Record that ``labels[i]`` is coupled to ``ref[i]`` (a split's leading slices)."""
        a, b = labels.reshape(-1), ref.reshape(-1)
        keep = (a > 0) & (b > 0) & (a != b)
        if not bool(keep.any()):
            return
        a, b = a[keep], self.same_unit(b[keep])
        if self._alias.numel() <= int(a.max()):
            grown = torch.arange(int(a.max()) + 1, dtype=torch.int64)
            grown[: self._alias.numel()] = self._alias
            self._alias = grown
        self._alias[a] = b

    def same_unit(self, labels: torch.Tensor) -> torch.Tensor:
        """``labels`` with every atom recorded by ``alias`` replaced by its reference."""
        if self._alias.numel() == 0:
            return labels
        inside = (labels > 0) & (labels < self._alias.numel())
        if not bool(inside.any()):
            return labels
        return torch.where(inside, self._alias[labels.clamp(0, self._alias.numel() - 1)], labels)

    def keeps_attention_scale(self) -> bool:
        """Whether a running module (the innermost or one enclosing it, e.g. the
        ``nn.MultiheadAttention`` around ``F.multi_head_attention_forward``) has a rule
        that keeps its attention scale."""
        from prunekit.surgery.registry import rule_for

        for name in reversed(self.module_stack):
            module = self.modules_by_name.get(name)
            rule = rule_for(module) if module is not None else None
            if rule is not None and rule.keeps_attention_scale:
                return True
        return False

    def path(self) -> str:
        return (self.module_stack[-1] if self.module_stack else "") or "<model>"

    def unsupported(self, func, why: str) -> UnsupportedOpError:
        return UnsupportedOpError(
            f"structured pruning cannot follow channels through op '{func}' in module "
            f"'{self.path()}' ({why}); register a surgery rule for that module type or "
            f"list it in ignored_layers"
        )

    def has_labels(self, args, kwargs) -> bool:
        for a in tree_leaves((args, kwargs)):
            if isinstance(a, torch.Tensor):
                if a in self.labels or id(a) in self.tensor_names or a in self.second:
                    return True
        return False

    def attention_call(self, func, args, kwargs):
        """``F.scaled_dot_product_attention`` traced as one op, whichever kernel runs: the
        math fallback (inputs not contiguous) would show its default scale
        ``1/sqrt(head_dim)`` and its mask only as plain numbers and additions."""
        names = ("attn_mask", "dropout_p", "is_causal", "scale", "enable_gqa")
        named = {**dict(zip(names, args[3:])), **kwargs}
        self.opaque = True
        try:
            out = func(*args, **kwargs)
        finally:
            self.opaque = False
        self.ops_seen += 1
        self._assign(out, self.run_rule(weights.attention, func, tuple(args[:3]), named, out))
        return out

    def on_op(self, func, args, kwargs, out) -> None:
        self.ops_seen += 1
        name = func.__name__.split(".")[0]
        if name in VIEWISH and isinstance(out, torch.Tensor):  # numbered like guard's replay
            path = self.path()
            self.current_view = (path, self.view_counts.get(path, 0))
            self.view_counts[path] = self.current_view[1] + 1
        if self.opaque:
            return
        if name in rules.IGNORED:
            return
        self.table.where = f"{name} in {self.path()}"
        if name in rules.FRESH or not self.has_labels(args, kwargs):
            lost = name not in rules.FRESH and any(
                isinstance(a, torch.Tensor) and a in self.lost for a in tree_leaves(args))
            for o in tree_leaves(out):
                if isinstance(o, torch.Tensor):
                    self.set(o, None)
                    if o in self.second:
                        del self.second[o]
                    if lost:
                        self.lost[o] = True
            return
        rule = WEIGHT_RULES.get(name)
        if rule is not None and any(isinstance(a, torch.Tensor) and a.numel() == 0
                                    and self.lab(a) is not None for a in tree_leaves(args)):
            raise self.unsupported(
                func, "it ran on an empty tensor, so which channels it reads cannot be "
                "traced; give an example input on which this module sees data (for a "
                "detector: an image with detections)")
        if rule is None:
            rule = rules.family_rule(name, func)
        derived = try_derive(self, name, func, args, kwargs, out, rule)
        if derived is not None:  # a weight computed from parameters (graph.derived)
            self._drop_second(out)
            self._assign(out, derived)
            return
        if rule is None:
            raise self.unsupported(func, "no label rule for this op")
        result = self.run_rule(rule, func, args, kwargs, out)
        carried = [] if rule in SECOND_AWARE else self.run_rule(
            lambda ctx, f, a, kw, o: dual.carry(ctx, f, name, a, kw, o,
                                                (rules.SAME_SHAPE, rules.REDUCTIONS)),
            func, args, kwargs, out)
        self._drop_second(out)
        for o, sec in carried:
            self.second[o] = sec
        self._assign(out, result)
        main = out[0] if isinstance(out, (tuple, list)) and out else out
        if isinstance(main, torch.Tensor) and self.labels.get(main) is None:
            self.lost[main] = True  # computed from channels, identity lost (attention scores)

    def _drop_second(self, out) -> None:
        """Forget the second labels an output held before (an in-place op's result)."""
        for o in tree_leaves(out):
            if isinstance(o, torch.Tensor) and o in self.second:
                del self.second[o]

    def run_rule(self, rule, func, args, kwargs, out):
        """``rule``'s labels for ``out``; a rule failing is a tracer limitation: say where."""
        try:
            return rule(self, func, args, kwargs, out)
        except UnsupportedOpError:
            raise
        except Exception as exc:
            raise self.unsupported(func, f"label rule failed: {type(exc).__name__}: {exc}") from exc

    def _assign(self, out, result) -> None:
        if isinstance(result, dual.Dual):
            if isinstance(out, torch.Tensor):
                self.set(out, result.primary)
                self.second[out] = result.second
            return
        if isinstance(out, (tuple, list)):
            results = result if isinstance(result, (tuple, list)) else (result,) + (None,) * (
                len(out) - 1)
            for o, r in zip(out, results):
                self._assign(o, r)
        elif isinstance(out, torch.Tensor):
            self.set(out, result)


class _Mode(TorchDispatchMode):
    def __init__(self, ctx: TraceContext) -> None:
        super().__init__()
        self.ctx = ctx

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if self.ctx.busy:  # the size recorder's own label arithmetic, not the model's
            return func(*args, **kwargs)
        busy, self.ctx.busy = self.ctx.busy, True
        try:
            out = shape_only_call(func, args, kwargs) if is_heavy(func) else None
            if out is None:
                out = func(*args, **kwargs)
            self.ctx.on_op(func, args, kwargs, out)
        finally:
            self.ctx.busy = busy
        return out


def run_traced(model: nn.Module, example_input: Any) -> tuple[TraceContext, Any]:
    """Run ``model(example_input)`` under the tracer; inputs are FIXED, outputs too.

    Returns the trace context (atoms, couplings, recorded splits and size-taking calls)
    and the model output.
    """
    ctx = TraceContext(model)
    inputs = example_input if isinstance(example_input, (tuple, list)) else (example_input,)
    if isinstance(example_input, dict):
        inputs = tuple(example_input.values())
    for t in tree_leaves(inputs):
        if isinstance(t, torch.Tensor) and t.is_floating_point():
            ctx.set(t, torch.full((), FIXED, dtype=torch.int64).expand(t.shape))  # no copy
    with traced_forward(model) as stack, _Mode(ctx), SizeRecorder(ctx, stack, ctx.modules_by_name):
        ctx.module_stack = stack
        if isinstance(example_input, dict):
            out = model(**example_input)
        elif isinstance(example_input, (tuple, list)):
            out = model(*example_input)
        else:
            out = model(example_input)
    derived_ops.finish(ctx)
    ctx.table.where = "the model's output"
    for o in tree_leaves(out):
        if isinstance(o, torch.Tensor):
            lab = ctx.lab(o)
            if isinstance(lab, ParamRef):
                lab = lab.materialize(ctx.table)
            if lab is not None:
                ctx.table.couple(lab, torch.zeros_like(lab))
    return ctx, out
