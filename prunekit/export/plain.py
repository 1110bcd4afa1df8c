"""A plain (mask-free) copy of a model, leaving the original and its masks untouched.

``copy.deepcopy`` of a parametrized module shares torch's generated class
(``ParametrizedLinear``) with the original, and removing the parametrization from the
copy deletes the property from that shared class, which breaks the original. So each
copied parametrized module gets its own clone of the class before the masks are baked in.
"""

from __future__ import annotations

import copy

from torch import nn
from torch.nn.utils import parametrize

from prunekit.masks.parametrize import make_permanent


def plain_copy(model: nn.Module) -> nn.Module:
    """Return a deep copy of ``model`` with every mask baked in (a plain ``nn.Module``).

    Example:
        >>> import torch
        >>> from prunekit.masks import apply_mask, is_masked
        >>> lin = nn.Linear(2, 1)
        >>> apply_mask(lin, "weight", torch.tensor([[True, False]]))
        >>> plain = plain_copy(lin)
        >>> is_masked(plain), is_masked(lin), float(plain.weight[0, 1])
        (False, True, 0.0)
    """
    out = copy.deepcopy(model)
    for module in out.modules():
        if parametrize.is_parametrized(module):
            cls = type(module)
            module.__class__ = type(cls.__name__, cls.__bases__, dict(cls.__dict__))
    return make_permanent(out)
