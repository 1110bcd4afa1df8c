"""Hard-concrete distribution (Louizos et al. 2018): pure tensor functions.

A gate ``z`` in [0, 1] per unit, with learnable ``log_alpha``: during training
``u ~ U(0, 1)``, ``s = sigmoid((log u - log(1 - u) + log_alpha) / beta)``, stretched to
``(gamma, zeta)`` and clipped to [0, 1], so exact zeros and ones occur and the expected
number of non-zero gates is differentiable.
"""

from __future__ import annotations

import math

import torch

BETA, GAMMA, ZETA = 2.0 / 3.0, -0.1, 1.1


def sample_gates(log_alpha: torch.Tensor, generator: torch.Generator | None = None,
                 beta: float = BETA) -> torch.Tensor:
    """A training-time sample of the gates (differentiable in ``log_alpha``).

    Example:
        >>> z = sample_gates(torch.zeros(1000), torch.Generator().manual_seed(0))
        >>> bool(((z >= 0) & (z <= 1)).all()), bool((z == 0).any()), bool((z == 1).any())
        (True, True, True)
    """
    u = torch.rand(log_alpha.shape, generator=generator, dtype=log_alpha.dtype).clamp(1e-6, 1 - 1e-6)
    s = torch.sigmoid((torch.log(u) - torch.log1p(-u) + log_alpha) / beta)
    return (s * (ZETA - GAMMA) + GAMMA).clamp(0.0, 1.0)


def deterministic_gates(log_alpha: torch.Tensor) -> torch.Tensor:
    """The test-time gates: ``clip(sigmoid(log_alpha) * (zeta - gamma) + gamma, 0, 1)``.

    Example:
        >>> deterministic_gates(torch.tensor([-10.0, 10.0])).tolist()
        [0.0, 1.0]
    """
    return (torch.sigmoid(log_alpha) * (ZETA - GAMMA) + GAMMA).clamp(0.0, 1.0)


def prob_nonzero(log_alpha: torch.Tensor, beta: float = BETA) -> torch.Tensor:
    """P(gate > 0) per unit: ``sigmoid(log_alpha - beta * log(-gamma / zeta))`` (the expected L0).

    Example:
        >>> round(float(prob_nonzero(torch.tensor(0.0))), 4)
        0.8318
    """
    return torch.sigmoid(log_alpha - beta * math.log(-GAMMA / ZETA))


def log_alpha_for(keep_probability: float) -> float:
    """The ``log_alpha`` at which a gate is non-zero with probability ``keep_probability``
    (the inverse of ``prob_nonzero``).

    Example:
        >>> round(float(prob_nonzero(torch.tensor(log_alpha_for(0.9)))), 4)
        0.9
    """
    p = min(max(keep_probability, 1e-4), 1 - 1e-4)
    return math.log(p / (1 - p)) + BETA * math.log(-GAMMA / ZETA)
