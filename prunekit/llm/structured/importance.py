"""Scores for structured units (pure functions of weights and calibration statistics).

* head groups and MLP neurons are scored by the one engine's ``"activation"`` importance
  over their :mod:`~prunekit.llm.structured.groups` (``sum_j ||W_o[:, j]||_2 * ||X_j||_2``
  over the output-projection input columns ``j`` of a unit: Wanda's metric summed over a
  head; ``||W_down[:, j]||_2 * ||X_j||_2`` for neuron ``j``):
  :func:`prunekit.structured.activation.activation_scores`.
* block: ``1 - mean_t cos(h_in_t, h_out_t)``; a block that barely changes its input
  (ShortGPT's "block influence") is the cheapest to drop.
Without calibration the input norms are taken as ones (pure weight magnitude).
"""

from __future__ import annotations

import torch


def block_influence(h_in: torch.Tensor, h_out: torch.Tensor) -> torch.Tensor:
    """``1 - cos(h_in, h_out)`` summed over tokens, and the token count, as a 2-vector.

    Example:
        >>> [round(v, 4) for v in block_influence(torch.ones(1, 2, 3), -torch.ones(1, 2, 3)).tolist()]
        [4.0, 2.0]
    """
    a = h_in.detach().reshape(-1, h_in.shape[-1]).float()
    b = h_out.detach().reshape(-1, h_out.shape[-1]).float()
    cos = torch.nn.functional.cosine_similarity(a, b, dim=-1)
    return torch.stack([(1 - cos).sum(), torch.tensor(float(a.shape[0]))])


def expert_neuron_scores(params: dict[str, torch.Tensor], layout: dict[str, tuple[int, int, int]],
                         size: int) -> torch.Tensor:
    """Per expert and intermediate neuron ``[E, size]``: the product of the neuron's weight norms.

    ``layout[name] = (expert_dim, neuron_dim, copies)`` as in
    :class:`~prunekit.llm.structured.layout.ExpertsLayout`; a neuron owning ``copies`` rows
    (fused gate/up) contributes each copy's norm.

    Example:
        >>> up = torch.tensor([[[1.0, 0.0], [0.0, 2.0]]])          # [E=1, I=2, H=2]
        >>> down = torch.tensor([[[3.0, 1.0], [4.0, 1.0]]])        # [E=1, H=2, I=2]
        >>> expert_neuron_scores({"up": up, "down": down}, {"up": (0, 1, 1), "down": (0, 2, 1)}, 2).tolist()
        [[5.0, 2.8284270763397217]]
    """
    score = None
    for name, (_, dim, copies) in layout.items():
        if dim < 0:
            continue
        p = params[name].detach().float()
        other = [d for d in range(1, p.dim()) if d != dim]
        norms = p.pow(2).sum(dim=other).sqrt() if other else p.abs()   # [E, copies * size]
        per = norms.reshape(norms.shape[0], copies, size).sum(1)
        score = per if score is None else score * per
    if score is None:
        raise ValueError("no expert parameter is indexed by intermediate neuron")
    return score
