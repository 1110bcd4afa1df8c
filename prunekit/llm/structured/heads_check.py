"""A removal is kept only if the model still runs: otherwise it is undone and named.

Some attention modules hard-wire the head count in a way no tensor or attribute
carries (TrOCR reshapes its output to the *input* width, so heads x head_dim must equal
the hidden size). After slicing, :func:`checked_apply` runs one short forward (the
probe's 8 tokens); if it fails, every tensor and attribute is restored and an
:class:`~prunekit.errors.UnsupportedOpError` names the modules and the error, so the
caller never holds a half-pruned model.

When the failing operation is a reshape / view whose target holds the width of the
failing module's *input* (its first tensor argument's last dim) while the data would fit
that shape with another width there, the forward provably ties the attention width to the
hidden size: :class:`TiedWidthError` (an ``UnsupportedOpError``) says so, and
``structured_prune`` reports heads as not applicable with that reason. When the trial fails
elsewhere first (ProphetNet's predict stream fails before its main stream's reshape to the
input width), the unpruned forward of the sliced modules is traced
(:func:`~prunekit.llm.structured.width_tie.tied_width`): a reshape that merges heads x head_dim
into the width *read from the input's shape* proves the same tie, whatever fails first. Any
other failure stays a plain ``UnsupportedOpError``.

Example:
    >>> # checked_apply(model, keep, attrs, what="model.layers.0.self_attn: heads")
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from prunekit.errors import UnsupportedOpError
from prunekit.llm.structured.width_tie import tied_width

CHECK_TOKENS = 8
_RESHAPES = (torch.Tensor.reshape, torch.Tensor.view, torch.reshape)


class TiedWidthError(UnsupportedOpError):
    """The removal failed in a reshape that forces the attention output to the module's input
    width: this module's heads x head_dim must equal the hidden size. ``reason`` says where."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class Failure:
    """Where :func:`run_check` fails: the innermost module (``"path (Class)"``), the width of
    that module's input, and the first reshape / view that raised (``(shape, target)``)."""

    module: str | None
    input_width: int | None
    reshape: tuple[tuple[int, ...], tuple[int, ...]] | None

    def ties_input_width(self) -> bool:
        """True when the failing reshape's target holds the input width and the data would fit
        it with a different width in that place (every other target dim is satisfied).

        Example:
            >>> Failure("attn (A)", 64, ((1, 8, 6, 8), (1, 8, 64))).ties_input_width()
            True
            >>> Failure("attn (A)", 64, ((1, 8, 6, 8), (1, 8, 7, 8))).ties_input_width()
            False
        """
        if self.input_width is None or self.reshape is None:
            return False
        shape, target = self.reshape
        width = self.input_width
        if width not in target or any(t < 0 for t in target):
            return False
        numel = 1
        for n in shape:
            numel *= n
        rest = 1
        for t in target:
            rest *= t
        rest //= width
        return rest > 0 and numel % rest == 0 and numel // rest != width


class _ReshapeWatch(TorchFunctionMode):
    """Records the first reshape / view that raises (its input shape and target)."""

    def __init__(self) -> None:
        super().__init__()
        self.failed: tuple[tuple[int, ...], tuple[int, ...]] | None = None

    def __torch_function__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        try:
            return func(*args, **kwargs)
        except RuntimeError:
            if self.failed is None and func in _RESHAPES and args and isinstance(args[0], torch.Tensor):
                self.failed = (tuple(args[0].shape), _target(args[1:], kwargs))
            raise


def _target(args: tuple, kwargs: dict) -> tuple[int, ...]:
    """The target shape of ``reshape(*args)`` / ``view(*args)`` (ints or one sequence)."""
    shape = args[0] if len(args) == 1 and not isinstance(args[0], int) else (args or kwargs.get("shape", ()))
    try:
        return tuple(int(n) for n in shape)
    except (TypeError, ValueError):
        return ()


def _input_width(args: tuple, kwargs: dict) -> int | None:
    """Last dim of a module call's first tensor argument (positional, else keyword)."""
    for value in (*args, *kwargs.values()):
        if isinstance(value, torch.Tensor) and value.dim() >= 1:
            return int(value.shape[-1])
    return None


def run_check(model: nn.Module) -> None:
    """One forward of ``CHECK_TOKENS`` token ids, as the probe runs it."""
    vocab = int(getattr(model.config, "vocab_size", 100) or 100)
    ids = torch.randint(min(3, vocab - 1), vocab, (1, CHECK_TOKENS), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        model(input_ids=ids.to(next(model.parameters()).device), use_cache=False)


def checked_apply(model: nn.Module, keep: dict, attrs: list[tuple[nn.Module, str, object]], what: str,
                  then: Callable[[], Callable[[], None]] | None = None) -> None:
    """Set ``attrs``, slice ``keep`` (:func:`prunekit.surgery.apply.apply_keep`), then check a forward.

    ``then`` runs after the slicing and before the check (ALiBi slopes) and returns its undo.
    """
    from prunekit.surgery.apply import apply_keep

    saved = [(m, name, getattr(m, name)) for m, name, _ in attrs]

    def undo() -> None:
        for m, name, value in reversed(saved):
            setattr(m, name, value)

    def do() -> tuple[object, Callable[[], None] | None]:
        try:
            for m, name, value in attrs:
                setattr(m, name, value)
            snap = apply_keep(model, keep)
        except BaseException:
            undo()
            raise
        return snap, then() if then is not None else None

    snap, undo_then = do()
    if not _takes_ids(model):
        return
    try:
        run_check(model)
    except Exception as e:
        failure = diagnose(model)
        where = failure.module
        if undo_then is not None:
            undo_then()
        snap.restore()
        undo()
        try:
            run_check(model)
        except Exception:  # the check does not apply to this model (it needs other inputs): keep the removal
            do()
            return
        first = str(e).splitlines()[0] if str(e) else ""
        at = f" in {where}" if where else ""
        reason = None
        if failure.ties_input_width():
            shape, target = failure.reshape or ((), ())
            reason = (f"{where} reshapes its attention output {list(shape)} to {list(target)}, which holds the "
                      f"width of its input ({failure.input_width}): its forward ties heads x head_dim to the "
                      "hidden size, so heads cannot be removed without changing the model's code")
        else:  # it failed elsewhere first: is the width tied anyway? (traced on the unpruned model)
            tie = tied_width(model, _owners_and_parents(keep), run_check)
            reason = tie.reason() if tie is not None else None
        if reason is not None:
            raise TiedWidthError(f"{what}: the model no longer runs after the removal ({type(e).__name__}{at}: "
                                 f"{first[:200]}); {reason}. The model is unchanged; prune the other structures "
                                 "(mlp, layers, experts) instead", reason) from None
        raise UnsupportedOpError(
            f"{what}: the model no longer runs after the removal ({type(e).__name__}{at}: {first[:200]}); "
            "its forward fixes a size no tensor or attribute carries. The model is unchanged; "
            "prune the other structures (mlp, layers, experts) instead"
        ) from None


def failing_module(model: nn.Module) -> str | None:
    """``"path (Class)"`` of the innermost module whose forward raises in :func:`run_check`, or None.

    Example:
        >>> class Bad(nn.Module):
        ...     def forward(self, x):
        ...         return x.view(3)
        >>> class M(nn.Module):
        ...     config = None
        ...     def __init__(self):
        ...         super().__init__(); self.emb = nn.Embedding(100, 4); self.bad = Bad()
        ...     def forward(self, input_ids, use_cache=False):
        ...         return self.bad(self.emb(input_ids))
        >>> failing_module(M())
        'bad (Bad)'
    """
    return diagnose(model).module


def diagnose(model: nn.Module) -> Failure:
    """Run :func:`run_check` with every module's entry recorded and reshapes watched.

    Returns the :class:`Failure` (all ``None`` when the forward runs).
    """
    stack: list[tuple[str, int | None]] = []
    handles = []

    def enter(name: str, args: tuple, kwargs: dict) -> None:
        stack.append((name, _input_width(args, kwargs)))

    def leave(*_: object) -> None:  # returns None: the module's output is kept
        stack.pop()

    for name, module in model.named_modules():
        handles.append(module.register_forward_pre_hook(
            lambda _m, a, k, n=name: enter(n, a, k), with_kwargs=True))
        handles.append(module.register_forward_hook(leave))
    watch = _ReshapeWatch()
    try:
        with watch:
            run_check(model)
    except Exception:
        if stack and stack[-1][0]:
            name, width = stack[-1]
            return Failure(f"{name} ({type(model.get_submodule(name)).__name__})", width, watch.failed)
        return Failure(None, None, watch.failed)
    finally:
        for h in handles:
            h.remove()
    return Failure(None, None, None)


def _owners_and_parents(keep: dict) -> list[str]:
    """The modules owning the sliced tensors (``keep``'s names) and their parents (the attention
    modules whose forward :func:`~prunekit.llm.structured.width_tie.tied_width` traces)."""
    out: dict[str, None] = {}
    for name in keep:
        owner = name.rpartition(".")[0]
        out.setdefault(owner.rpartition(".")[0], None)
        out.setdefault(owner, None)
    return [m for m in out if m]


def _takes_ids(model: nn.Module) -> bool:
    import inspect

    try:
        return "input_ids" in inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return False
