"""A removal is kept only if the model still runs: otherwise it is undone and named.

Some attention modules hard-wire the head count in a way no tensor or attribute
carries (TrOCR reshapes its output to the *input* width, so heads x head_dim must equal
the hidden size). After slicing, :func:`checked_apply` runs one short forward (the
probe's 8 tokens); if it fails, every tensor and attribute is restored and an
:class:`~prunekit.errors.UnsupportedOpError` names the modules and the error, so the
caller never holds a half-pruned model.

Example:
    >>> # checked_apply(model, keep, attrs, what="model.layers.0.self_attn: heads")
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from prunekit.errors import UnsupportedOpError

CHECK_TOKENS = 8


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
        where = failing_module(model)
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
    stack: list[str] = []
    handles = []

    def leave(*_: object) -> None:  # returns None: the module's output is kept
        stack.pop()

    for name, module in model.named_modules():
        handles.append(module.register_forward_pre_hook(lambda _m, _a, n=name: stack.append(n)))
        handles.append(module.register_forward_hook(leave))
    try:
        run_check(model)
    except Exception:
        if stack and stack[-1]:
            return f"{stack[-1]} ({type(model.get_submodule(stack[-1])).__name__})"
        return None
    finally:
        for h in handles:
            h.remove()
    return None


def _takes_ids(model: nn.Module) -> bool:
    import inspect

    try:
        return "input_ids" in inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return False
