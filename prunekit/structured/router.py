"""The ``"router"`` importance: routing statistics as the score of an expert group.

An expert is a :class:`prunekit.graph.Group` unit (every expert-indexed tensor's slice and
its router row: :func:`prunekit.llm.structured.groups.experts_group`). Calibration forwards
give per router, per expert (:func:`prunekit.llm.structured.experts.expert_statistics`):

* ``frequency``: how many (token, top-k slot) picks chose the expert,
* ``mass``: the routing weights it received, summed over tokens,
* ``contribution``: ``sum_t ||w_t,e * expert_e(x_t)||_2`` over the tokens routed to it, the
  norm of what it adds to the residual stream (zero for an expert never picked).

The score of an expert is one of these parts (``contribution`` by default: an expert the
router rarely picks, or picks with a small weight, or whose output is small, scores low).
This is the same interface as the ``"activation"`` importance
(:func:`prunekit.structured.activation.activation_scores`): groups plus collected
statistics in, one ``[group.size]`` float64 score per group out (higher = keep), so the
engine's allocation (:mod:`prunekit.structured.allocate`) chooses experts as it chooses
channels, heads and neurons.

Example:
    >>> from prunekit.llm.structured.groups import experts_group
    >>> g = experts_group({"moe.experts.down_proj": 0, "moe.gate.weight": 0}, 3)
    >>> stats = {"moe.gate.weight": {"frequency": torch.tensor([4., 0., 2.]),
    ...                              "mass": torch.tensor([2., 0., 1.]),
    ...                              "contribution": torch.tensor([5., 0., 7.])}}
    >>> router_scores([g], stats)[0].tolist(), router_scores([g], stats, "frequency")[0].tolist()
    ([5.0, 0.0, 7.0], [4.0, 0.0, 2.0])
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from prunekit.errors import ConfigError
from prunekit.graph.groups import Group

ROUTER_PARTS = ("frequency", "mass", "contribution")


def router_unit_scores(stats: Mapping[str, torch.Tensor], part: str = "contribution") -> torch.Tensor:
    """One router's per-expert score (float64): its statistic ``part``.

    Example:
        >>> router_unit_scores({"frequency": torch.tensor([3, 1]), "mass": torch.tensor([1.5, .5]),
        ...                     "contribution": torch.tensor([.2, .9])}, "mass").tolist()
        [1.5, 0.5]
    """
    if part not in ROUTER_PARTS:
        raise ConfigError(f"router importance: part must be one of {ROUTER_PARTS}, got {part!r}")
    if part not in stats:
        raise ConfigError(f"router importance: the statistics have no {part!r} (have {sorted(stats)})")
    return stats[part].detach().double().cpu()


def router_scores(groups: list[Group], stats: Mapping[str, Mapping[str, torch.Tensor]],
                  part: str = "contribution") -> list[torch.Tensor]:
    """One score ``[group.size]`` per expert group: the statistics of the router whose weight
    is one of the group's members (``stats`` keyed by that tensor's name)."""
    out = []
    for g in groups:
        routers = [t for t, _ in g.members if t in stats]
        if len(routers) != 1:
            raise ConfigError(f"router importance: a group of {g.size} units (members "
                              f"{[t for t, _ in g.members][:4]}...) has {len(routers)} routers with "
                              f"statistics (need exactly one; statistics are for {sorted(stats)[:4]})")
        s = router_unit_scores(stats[routers[0]], part)
        if s.numel() != g.size:
            raise ConfigError(f"router importance: {routers[0]} has statistics for {s.numel()} experts, "
                              f"its group has {g.size}")
        out.append(s)
    return out
