"""The mask mechanism: a parametrization that multiplies a tensor by a fixed bool mask."""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import nn
from torch.nn.utils import parametrize

from prunekit.errors import ModelError


class MaskParametrization(nn.Module):
    """``forward(x) = x * mask``; the mask is a bool buffer saved with the state.

    Example:
        >>> p = MaskParametrization(torch.tensor([True, False]))
        >>> p(torch.tensor([3.0, 4.0]))
        tensor([3., 0.])
    """

    def __init__(self, mask: torch.Tensor, param_order: tuple[str, ...] = ()) -> None:
        super().__init__()
        self.register_buffer("mask", mask.to(torch.bool))
        #: the owner's parameter names in registration order, restored by make_permanent
        self.param_order = param_order

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.mask


def _our_parametrization(module: nn.Module, name: str) -> MaskParametrization | None:
    if not parametrize.is_parametrized(module, name):
        return None
    for p in module.parametrizations[name]:
        if isinstance(p, MaskParametrization):
            return p
    return None


def is_masked(module: nn.Module, name: str = "weight") -> bool:
    """True when ``module.<name>`` carries a prunekit mask."""
    return _our_parametrization(module, name) is not None


def get_mask(module: nn.Module, name: str = "weight") -> torch.Tensor | None:
    """Return the bool mask on ``module.<name>``, or None when it has none."""
    p = _our_parametrization(module, name)
    return None if p is None else p.mask


def apply_mask(module: nn.Module, name: str, mask: torch.Tensor) -> None:
    """Mask ``module.<name>`` with ``mask`` (True = keep); replaces an existing mask.

    The stored original is zeroed where the mask is False as well, so optimizer state
    built from it starts clean.

    Example:
        >>> lin = nn.Linear(2, 1, bias=False)
        >>> apply_mask(lin, "weight", torch.tensor([[True, False]]))
        >>> float(lin.weight[0, 1]) == 0.0
        True
    """
    tensor = getattr(module, name)
    if tuple(mask.shape) != tuple(tensor.shape):
        raise ModelError(
            f"mask shape {tuple(mask.shape)} does not match {type(module).__name__}.{name} "
            f"shape {tuple(tensor.shape)}"
        )
    mask = mask.to(device=tensor.device, dtype=torch.bool)
    existing = _our_parametrization(module, name)
    if existing is not None:
        existing.mask.copy_(mask)
        original = module.parametrizations[name].original
    else:
        order = tuple(module._parameters)
        parametrize.register_parametrization(module, name, MaskParametrization(mask, order))
        original = module.parametrizations[name].original
    with torch.no_grad():
        original.mul_(mask)


def masked_tensors(model: nn.Module) -> Iterator[tuple[str, nn.Module, str, torch.Tensor]]:
    """Yield ``(qualified_name, module, tensor_name, mask)`` for every masked tensor."""
    for mod_name, module in model.named_modules():
        if not parametrize.is_parametrized(module):
            continue
        for tname in list(module.parametrizations.keys()):
            p = _our_parametrization(module, tname)
            if p is not None:
                qual = f"{mod_name}.{tname}" if mod_name else tname
                yield qual, module, tname, p.mask


def make_permanent(model: nn.Module) -> nn.Module:
    """Bake every mask into its weight and remove the parametrizations, in place.

    Afterwards the model is a plain module: no hooks, no extra parameters or buffers,
    and ``state_dict`` keys as before masking. Returns the model.

    Example:
        >>> lin = nn.Linear(2, 1)
        >>> apply_mask(lin, "weight", torch.tensor([[True, False]]))
        >>> sorted(make_permanent(lin).state_dict())
        ['bias', 'weight']
    """
    for _, module, tname, _ in list(masked_tensors(model)):
        plist = module.parametrizations[tname]
        if any(not isinstance(p, MaskParametrization) for p in plist):
            raise ModelError(
                f"{type(module).__name__}.{tname} has other parametrizations besides the "
                "prunekit mask; remove them first (torch.nn.utils.parametrize)"
            )
        order = plist[0].param_order
        _own_class(module)
        parametrize.remove_parametrizations(module, tname, leave_parametrized=True)
        params = module._parameters
        ranked = sorted(params, key=lambda k: order.index(k) if k in order else len(order))
        module._parameters = {k: params[k] for k in ranked}
    return model


def _own_class(module: nn.Module) -> None:
    """Give a parametrized module its own copy of torch's generated class.

    ``copy.deepcopy`` shares the generated ``Parametrized<Layer>`` class between the copy
    and the original; removing a parametrization deletes a property from that class,
    which would break the other module. A private class makes removal local.
    """
    cls = type(module)
    module.__class__ = type(cls.__name__, cls.__bases__, dict(cls.__dict__))


def plain_copy(model: nn.Module) -> nn.Module:
    """Return a deep copy of ``model`` with every mask baked in; the original keeps its masks.

    Example:
        >>> lin = nn.Linear(2, 1)
        >>> apply_mask(lin, "weight", torch.tensor([[True, False]]))
        >>> plain = plain_copy(lin)
        >>> is_masked(plain), is_masked(lin), float(plain.weight[0, 1]) == 0.0
        (False, True, True)
    """
    import copy

    return make_permanent(copy.deepcopy(model))


def _canonical_items(model: nn.Module, include_buffers: bool) -> Iterator[tuple[str, torch.Tensor]]:
    """Effective tensors under the names they have without masks."""
    for mod_name, module in model.named_modules():
        if isinstance(module, parametrize.ParametrizationList) or (
            mod_name.split(".")[-1] == "parametrizations" and isinstance(module, nn.ModuleDict)
        ):
            continue
        if ".parametrizations." in f".{mod_name}.":
            continue
        prefix = f"{mod_name}." if mod_name else ""
        for pname, p in module._parameters.items():
            if p is not None:
                yield prefix + pname, p
        if parametrize.is_parametrized(module):
            for tname in module.parametrizations.keys():
                yield prefix + tname, getattr(module, tname)
        if include_buffers:
            for bname, b in module._buffers.items():
                if b is not None and bname not in module._non_persistent_buffers_set:
                    yield prefix + bname, b


def effective_parameters(model: nn.Module) -> dict[str, torch.Tensor]:
    """Parameters as the forward pass sees them (masks applied), by unmasked names."""
    return {k: v.detach() for k, v in _canonical_items(model, include_buffers=False)}


def effective_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The state a plain (unmasked) copy of the model would have: params with masks applied
    plus persistent buffers, under the original keys. Tied tensors appear once per name."""
    return {k: v.detach() for k, v in _canonical_items(model, include_buffers=True)}
