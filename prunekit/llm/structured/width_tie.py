"""Prove that an attention module's forward merges its heads into its *input's* width.

TrOCR and ProphetNet read ``embed_dim`` / ``hidden_size`` off ``hidden_states.size()`` and
reshape the attention output (heads x head_dim) to that width. Whatever else a head removal
breaks first, that reshape can never run with fewer heads, so heads are not removable without
changing the model's code. :func:`tied_width` proves it on the *unpruned* model, independent of
the order in which a removal trial fails:

- the module's first tensor argument is replaced by a view (:class:`_Tagged`) whose
  ``size()`` / ``shape`` report its last dim as a :class:`_Width` (an ``int`` that remembers where
  it came from; arithmetic on it gives plain ints, so only the width *as read* is tagged);
- every reshape / view inside the forward is watched; one whose target holds that tagged width
  at a position that merges two or more dims of the reshaped tensor (``[b, t, H, d] -> [b, t, W]``,
  :func:`merged_dims`) is the proof.

The pure shape arithmetic (:func:`merged_dims`) is separate from the tracing.

Example:
    >>> merged_dims((1, 8, 8, 8), (1, 8, 64), 2)
    (2, 4)
    >>> merged_dims((1, 8, 64), (1, 8, 64), 2) is None
    True
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

_RESHAPES = (torch.Tensor.reshape, torch.Tensor.view, torch.reshape)


class _Width(int):
    """An input's last dim as read from its shape (a plain ``int`` otherwise)."""


class _Shape(tuple):
    """A shape tuple whose last entry is a :class:`_Width`; ``numel()`` as ``torch.Size`` has."""

    def numel(self) -> int:
        n = 1
        for d in self:
            n *= int(d)
        return n


class _Tagged(torch.Tensor):
    """A view whose ``size()`` / ``shape`` tag the last dim; every op on it returns plain tensors."""

    __torch_function__ = torch._C._disabled_torch_function_impl

    def size(self, dim: int | None = None) -> Any:  # type: ignore[override]
        s = torch.Tensor.size(self)
        out = _Shape((*s[:-1], _Width(s[-1]))) if len(s) else _Shape(())
        return out if dim is None else out[dim]

    @property
    def shape(self) -> Any:  # type: ignore[override]
        return self.size()


@dataclass(frozen=True)
class WidthTie:
    """``module`` (``"path (Class)"``) reshapes ``shape`` to ``target``, whose dim ``position``
    is the width of its input (``width``) read from the input's shape."""

    module: str
    shape: tuple[int, ...]
    target: tuple[int, ...]
    position: int
    width: int

    def reason(self) -> str:
        """The sentence ``structured_prune`` reports as the heads' n/a reason."""
        i, j = merged_dims(self.shape, self.target, self.position) or (0, 0)
        return (f"{self.module} reshapes its attention output {list(self.shape)} to {list(self.target)}, "
                f"merging dims {list(self.shape[i:j])} into the width of its input ({self.width}) read from "
                "the input's shape: its forward ties heads x head_dim to the hidden size, so heads cannot be "
                "removed without changing the model's code")


def merged_dims(shape: Iterable[int], target: Iterable[int], position: int) -> tuple[int, int] | None:
    """``(i, j)`` when reshaping ``shape`` to ``target`` merges ``shape[i:j]`` (two or more dims)
    into ``target[position]`` exactly (the dims before and after match by product; a ``-1`` in
    the target is inferred), else None.

    Example:
        >>> merged_dims((2, 5, 4, 16), (2, 1, 5, 64), 3)   # [b, t, H, d] -> [b, 1, t, W]
        (2, 4)
        >>> merged_dims((2, 4, 5, 16), (2, 5, 64), 2) is None   # heads not next to each other
        True
    """
    shape, target = tuple(int(n) for n in shape), [int(n) for n in target]
    numel = _prod(shape)
    if target.count(-1) > 1 or not 0 <= position < len(target):
        return None
    if -1 in target:
        rest = _prod(t for t in target if t != -1)
        if rest == 0 or numel % rest:
            return None
        target[target.index(-1)] = numel // rest
    if _prod(target) != numel:
        return None
    before, width = _prod(target[:position]), target[position]
    for i in range(len(shape) + 1):
        if _prod(shape[:i]) != before:
            continue
        for j in range(i + 2, len(shape) + 1):
            if _prod(shape[i:j]) == width and _prod(shape[j:]) == _prod(target[position + 1:]):
                return i, j
    return None


def _prod(values: Iterable[int]) -> int:
    n = 1
    for v in values:
        n *= int(v)
    return n


class _Watch(TorchFunctionMode):
    """Records the first reshape / view whose target merges dims into a tagged width."""

    def __init__(self, current: list[str]) -> None:
        super().__init__()
        self.current = current
        self.found: WidthTie | None = None

    def __torch_function__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        if self.found is None and self.current and func in _RESHAPES and args and isinstance(args[0], torch.Tensor):
            target = _raw_target(args[1:], kwargs)
            for p, t in enumerate(target):
                if isinstance(t, _Width) and merged_dims(args[0].shape, target, p) is not None:
                    self.found = WidthTie(self.current[-1], tuple(args[0].shape), tuple(int(n) for n in target),
                                          p, int(t))
                    break
        return func(*args, **kwargs)


def _raw_target(args: tuple, kwargs: dict) -> tuple:
    """The target of ``reshape(*args)`` / ``view(*args)`` with its entries as passed (tags kept)."""
    shape = args[0] if len(args) == 1 and not isinstance(args[0], int) else (args or kwargs.get("shape", ()))
    try:
        return tuple(shape) if all(isinstance(n, int) for n in shape) else ()
    except TypeError:
        return ()


def tied_width(model: nn.Module, modules: Iterable[str], run: Any) -> WidthTie | None:
    """The first of ``modules`` (paths in ``model``) whose forward, in ``run(model)``, merges
    heads into its input's width read from the input's shape; None when none does or the run
    fails (then nothing is proven).

    Example:
        >>> class Attn(nn.Module):
        ...     def __init__(self):
        ...         super().__init__(); self.q = nn.Linear(8, 8)
        ...     def forward(self, x):
        ...         b, t, width = x.size()
        ...         return self.q(x).view(b, t, 2, 4).reshape(b, t, width)
        >>> m = nn.Sequential(Attn())
        >>> tied_width(m, ["0"], lambda m: m(torch.zeros(1, 3, 8))).target
        (1, 3, 8)
    """
    current: list[str] = []
    handles = []
    for path in dict.fromkeys(modules):
        module = model.get_submodule(path)
        label = f"{path} ({type(module).__name__})"
        handles.append(module.register_forward_pre_hook(
            lambda _m, a, k, n=label: _enter(current, n, a, k), with_kwargs=True))
        handles.append(module.register_forward_hook(lambda *_: _leave(current)))
    watch = _Watch(current)
    try:
        with watch, torch.no_grad():
            run(model)
    except Exception:
        return None
    finally:
        for h in handles:
            h.remove()
    return watch.found


def _leave(current: list[str]) -> None:
    """Pop the module left (returns None, so the module's output is kept)."""
    current.pop()


def _enter(current: list[str], label: str, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
    """Push ``label``; tag the first tensor argument (positional, else keyword)."""
    current.append(label)
    args = list(args)
    for i, value in enumerate(args):
        if isinstance(value, torch.Tensor) and value.dim() >= 1 and value.is_floating_point():
            args[i] = value.as_subclass(_Tagged)
            return tuple(args), kwargs
    for name, value in kwargs.items():
        if isinstance(value, torch.Tensor) and value.dim() >= 1 and value.is_floating_point():
            return tuple(args), {**kwargs, name: value.as_subclass(_Tagged)}
    return tuple(args), kwargs
