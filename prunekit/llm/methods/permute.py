"""Channel permutation for N:M sparsity: spread the important input channels over the groups.

N:M keeps the ``n`` best of every ``m`` consecutive input weights of a row. When two
important input channels sit in the same group, one of them is lost in every row. A
permutation of the input channels chosen before the groups are formed moves them into
different groups. The heuristic here (pure tensors in, a permutation out):

1. balanced start: channels sorted by total importance are dealt to the groups in a
   snake order, so every group gets one channel from each of the ``m`` importance tiers;
2. refinement: for one tier at a time, the tier's channels are re-assigned to the groups
   by a linear assignment (Hungarian, ``scipy.optimize.linear_sum_assignment``) that
   maximises the N:M-retained score with the group's other channels held; sweeps repeat
   while the retained score rises.

Each assignment step can keep the current assignment, so the retained score never falls.
"""

from __future__ import annotations

import torch

from prunekit.errors import ConfigError


def nm_retained(scores: torch.Tensor, n: int, m: int) -> float:
    """Sum of the scores an N:M mask keeps (the ``n`` largest of every ``m`` consecutive columns).

    Example:
        >>> nm_retained(torch.tensor([[1.0, 2.0, 3.0, 4.0]]), 2, 4)
        7.0
    """
    rows, cols = scores.shape
    groups = scores.reshape(rows, cols // m, m)
    return float(torch.topk(groups, n, dim=-1).values.sum())


def _gain_matrix(tier_scores: torch.Tensor, others: torch.Tensor, n: int) -> torch.Tensor:
    """``gain[g, c]``: retained score of group ``g`` when tier channel ``c`` joins its ``others``.

    ``others`` is ``[rows, groups, m-1]``; with ``t`` the n-th largest of the others in a
    row, adding a value ``v`` keeps ``top_n(others) - t + max(t, v)``, and
    ``max(t, v) = (t + v + |t - v|) / 2`` turns the sum over rows into an L1 distance.
    """
    top = torch.topk(others, n, dim=-1).values  # [rows, groups, n]
    t = top[..., -1]  # [rows, groups]
    const = (top.sum(-1) - 0.5 * t).sum(0)  # [groups]
    v = tier_scores  # [rows, candidates]
    dist = torch.cdist(t.T.unsqueeze(0), v.T.unsqueeze(0), p=1).squeeze(0)  # [groups, candidates]
    return const[:, None] + 0.5 * (v.sum(0)[None, :] + dist)


def balanced_permutation(scores: torch.Tensor, n: int, m: int, *, sweeps: int = 4) -> torch.Tensor:
    """A permutation ``perm`` of the columns so that ``scores[:, perm]`` keeps more under N:M.

    Args:
        scores: importance of every weight, ``[rows, cols]`` (e.g. Wanda ``|W| * ||x||``),
            ``cols`` divisible by ``m``.
        n, m: the pattern, ``n`` kept of every ``m`` consecutive columns.
        sweeps: refinement sweeps over the ``m`` tiers (stops early when nothing improves).

    Returns:
        LongTensor ``perm`` of length ``cols``: new column ``j`` is old column ``perm[j]``.
        ``nm_retained(scores[:, perm])`` is never below ``nm_retained(scores)``.

    Example:
        >>> s = torch.tensor([[9.0, 8.0, 1.0, 1.0, 1.0, 1.0, 7.0, 6.0]])
        >>> nm_retained(s, 2, 4), nm_retained(s[:, balanced_permutation(s, 2, 4)], 2, 4)
        (30.0, 30.0)
        >>> s = torch.tensor([[9.0, 8.0, 7.0, 1.0, 1.0, 1.0, 1.0, 6.0]])
        >>> nm_retained(s, 2, 4), nm_retained(s[:, balanced_permutation(s, 2, 4)], 2, 4)
        (24.0, 30.0)
    """
    from scipy.optimize import linear_sum_assignment

    rows, cols = scores.shape
    if m <= 0 or cols % m:
        raise ConfigError(f"permutation: {cols} input channels are not a multiple of m={m}")
    identity = torch.arange(cols)
    if n >= m or cols == m:
        return identity
    s = scores.detach().float().cpu()
    groups = cols // m
    order = torch.argsort(s.sum(0), descending=True, stable=True)
    # layout[g, k]: the channel in slot k of group g; tier k deals its channels in a snake
    layout = torch.empty(groups, m, dtype=torch.long)
    for k in range(m):
        tier = order[k * groups : (k + 1) * groups]
        layout[:, k] = tier if k % 2 == 0 else tier.flip(0)
    for _ in range(sweeps):
        improved = False
        for k in range(m):
            other_slots = [j for j in range(m) if j != k]
            others = s[:, layout[:, other_slots]]  # [rows, groups, m-1]
            tier = layout[:, k]
            gain = _gain_matrix(s[:, tier], others, n).double()  # [group, candidate]
            current = float(gain.diagonal().sum())
            g_idx, c_idx = linear_sum_assignment(gain.numpy(), maximize=True)
            best = float(gain[torch.as_tensor(g_idx), torch.as_tensor(c_idx)].sum())
            if best > current * (1 + 1e-9) + 1e-12:
                new_tier = tier.clone()
                new_tier[torch.as_tensor(g_idx)] = tier[torch.as_tensor(c_idx)]
                layout[:, k] = new_tier
                improved = True
        if not improved:
            break
    perm = layout.reshape(-1)
    if nm_retained(s[:, perm], n, m) < nm_retained(s, n, m):
        return identity
    return perm
