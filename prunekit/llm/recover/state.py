"""Gather and restore the training state (trainable weights + optimiser) for checkpoints.

Works the same on a plain module, under DDP and on FSDP2-sharded modules: the tensors are
gathered as full, unsharded CPU tensors keyed by canonical parameter names (collective under
FSDP: every process calls it, rank 0 receives the tensors).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from prunekit.llm.recover.checkpoint import flatten_optimizer_state, unflatten_optimizer_state


def _options(**kw: Any) -> Any:
    from torch.distributed.checkpoint.state_dict import StateDictOptions

    return StateDictOptions(full_state_dict=True, **kw)


def trainable_names(model: nn.Module) -> list[str]:
    """Names of the parameters that train, as ``named_parameters()`` gives them."""
    return [n for n, p in model.named_parameters() if p.requires_grad]


def gather_state(model: nn.Module, optimizer: torch.optim.Optimizer) -> tuple[
        dict[str, torch.Tensor], dict[str, torch.Tensor], list[dict[str, Any]]]:
    """``(weights, optimiser tensors, param groups)`` of the trainable parameters, full tensors."""
    from torch.distributed.checkpoint.state_dict import get_model_state_dict, get_optimizer_state_dict

    names = set(trainable_names(model))
    from prunekit.train.distributed import is_distributed

    opts = _options(cpu_offload=is_distributed())
    weights = {k: v.detach().cpu() for k, v in get_model_state_dict(model, options=opts).items() if k in names}
    osd = get_optimizer_state_dict(model, optimizer, options=opts)
    if not osd:
        return weights, {}, []
    tensors, groups = flatten_optimizer_state(osd)
    return weights, {k: v.detach().cpu() for k, v in tensors.items()}, groups


def restore_state(model: nn.Module, optimizer: torch.optim.Optimizer, weights: dict[str, torch.Tensor],
                  optim_tensors: dict[str, torch.Tensor], groups: list[dict[str, Any]]) -> None:
    """Load what :func:`gather_state` returned (every process passes the full tensors)."""
    from torch.distributed.checkpoint.state_dict import set_model_state_dict, set_optimizer_state_dict

    set_model_state_dict(model, weights, options=_options(strict=False))
    set_optimizer_state_dict(model, optimizer, unflatten_optimizer_state(optim_tensors, groups),
                             options=_options())
