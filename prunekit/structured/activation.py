"""The ``"activation"`` importance: calibration statistics as a score of the one engine.

A unit's score is Wanda's metric summed over the columns that *read* it: for every
consumer member ``(weight, in_dim)`` of its group (a linear / convolution / GPT-2
``Conv1D`` fed by the unit's channels), ``sum_j ||W[:, j]||_2 * ||X_j||_2`` over the
unit's input channels ``j``, with ``X`` the consumer's input on the calibration data
(``||X_j||^2`` summed over batch, tokens and pixels). Per-consumer scores combine with
the config's ``aggregation``. Consumers come from ``Group.consumers`` where the group says
(the LLM head / neuron groups of :mod:`prunekit.llm.structured.groups`), else from the
module types (:func:`consumer_members`); the LLM path and ``StructuredPruner`` call the
same :func:`activation_scores`.

A consumer that never ran as a module during calibration (a weight used functionally,
as ``nn.MultiheadAttention``'s ``out_proj``) counts with ``||X_j|| = 1`` (its column norms);
a group with no consumer at all (its channels only feed normalisations or the output)
falls back to the L2 norm of its weights, so every group still gets a score.

Example:
    >>> m = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    >>> sq = input_sq_norms(m, {"2": m[2]}, [torch.ones(5, 3)])
    >>> sq["2"].shape
    torch.Size([4])
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import torch
from torch import nn

from prunekit.errors import ConfigError
from prunekit.graph.groups import Group
from prunekit.importance import group as gi

_CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_CONV_T = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)


def _is_conv1d_t(module: nn.Module) -> bool:
    """transformers' GPT-2 style ``Conv1D``: a linear with the weight stored ``[in, out]``."""
    return type(module).__name__ == "Conv1D" and hasattr(module, "nf")


def input_dim(module: nn.Module) -> int | None:
    """The weight dim indexed by ``module``'s input channels (None: not a plain projection).

    Example:
        >>> input_dim(nn.Linear(2, 3)), input_dim(nn.Conv2d(2, 3, 1)), input_dim(nn.LayerNorm(2))
        (1, 1, None)
    """
    if isinstance(module, nn.Linear):
        return 1
    if isinstance(module, _CONV) and module.groups == 1:
        return 1
    if isinstance(module, _CONV_T) and module.groups == 1:
        return 0
    if _is_conv1d_t(module):
        return 0
    return None


def _channel_dim(module: nn.Module) -> int:
    """The dim of the module's input holding its channels (last for linears, 1 for convolutions)."""
    return 1 if isinstance(module, _CONV + _CONV_T) else -1


def consumer_members(group: Group, modules: Mapping[str, nn.Module]) -> list[tuple[str, int]]:
    """The members of ``group`` that read its units: ``Group.consumers``, else each
    ``<module>.weight`` sliced along that module's :func:`input_dim`."""
    if group.consumers is not None:
        return list(group.consumers)
    out = []
    for tensor, dim in group.members:
        owner, _, attr = tensor.rpartition(".")
        module = modules.get(owner)
        if attr == "weight" and module is not None and input_dim(module) == dim:
            out.append((tensor, dim))
    return out


def input_sq_norms(model: nn.Module, modules: Mapping[str, nn.Module], data: Iterable[Any]) -> dict[str, torch.Tensor]:
    """Per module name: ``sum x_j^2`` of its input channels over the ``data`` forwards.

    A batch is passed as ``model(**batch)`` for a dict, ``model(batch[0])`` for a tuple /
    list (``(inputs, target)``, as the gradient importances take it), else ``model(batch)``.
    Hooks are removed and the training mode restored afterwards; modules that never ran
    are absent.
    """
    sums: dict[str, torch.Tensor] = {}
    handles = []
    for name, module in modules.items():
        def hook(m, args, _name=name):
            if not args or not isinstance(args[0], torch.Tensor):
                return
            x = args[0].detach()
            x = x.movedim(_channel_dim(m), -1).reshape(-1, x.shape[_channel_dim(m)]).float()
            sq = x.square().sum(0)
            sums[_name] = sums[_name] + sq if _name in sums else sq
        handles.append(module.register_forward_pre_hook(hook))
    was = model.training
    model.eval()
    batches = 0
    try:
        with torch.no_grad():
            for batch in data:
                if isinstance(batch, dict):
                    model(**batch)
                elif isinstance(batch, (tuple, list)):
                    model(batch[0])
                else:
                    model(batch)
                batches += 1
    finally:
        model.train(was)
        for h in handles:
            h.remove()
    if batches == 0:
        raise ConfigError("importance 'activation' needs at least one calibration batch in `data`")
    return sums


def _tensor(model: nn.Module, name: str) -> torch.Tensor:
    owner, _, attr = name.rpartition(".")
    return getattr(model.get_submodule(owner) if owner else model, attr)


def _unit_sq(tensor: torch.Tensor, dim: int, index: torch.Tensor) -> torch.Tensor:
    """Per unit, the sum of squares of its slices of ``tensor`` along ``dim``."""
    w = tensor.detach().double().movedim(dim, 0)
    return w.reshape(w.shape[0], -1).square().sum(1).cpu()[index].sum(1)


def activation_scores(model: nn.Module, groups: list[Group], sq_norms: Mapping[str, torch.Tensor],
                      aggregation: str = "sum") -> list[torch.Tensor]:
    """One score ``[group.size]`` per group (float64, higher = keep); ``sq_norms`` per
    consumer module name as from :func:`input_sq_norms` (missing: ``||X_j|| = 1``)."""
    modules = dict(model.named_modules())
    out = []
    for g in groups:
        consumers = consumer_members(g, modules)
        if not consumers:  # nothing reads the units through a weight: their own weights' L2
            out.append(gi.aggregate([_unit_sq(_tensor(model, t), d, g.index[(t, d)]) for t, d in g.members],
                                    aggregation))
            continue
        cols = []
        for t, d in consumers:
            norm = sq_norms.get(t.rpartition(".")[0])
            cols.append((gi.column_scores(_tensor(model, t), d, norm), g.index[(t, d)]))
        out.append(gi.activation_unit_scores(cols, aggregation))
    return out


def group_activation_scores(model: nn.Module, groups: list[Group], data: Iterable[Any] | None,
                            aggregation: str = "sum") -> list[torch.Tensor]:
    """Collect the consumers' input statistics on ``data``, then :func:`activation_scores`."""
    if data is None:
        raise ConfigError("importance 'activation' needs calibration `data` (batches the model is run on, "
                          "e.g. data=[example_input])")
    modules = dict(model.named_modules())
    watched = {t.rpartition(".")[0]: model.get_submodule(t.rpartition(".")[0])
               for g in groups for t, _ in consumer_members(g, modules)}
    return activation_scores(model, groups, input_sq_norms(model, watched, data), aggregation)
