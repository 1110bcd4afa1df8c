"""Weight reconstruction after masking: re-fit the kept weights so the layer's output moves least.

With the calibration inputs' Gram matrix ``H = X^T X`` and the dense weight ``W0``, the
kept weights minimise ``||X (W0 - W)^T||^2 = trace((W0 - W) H (W0 - W)^T)`` subject to
``W`` being zero off the mask. That is a least-squares problem per row with a different
support in every row; ADMM (as in Boža 2024, "Fast and Effective Weight Update for Pruned
Large Language Models") solves all rows at once with one matrix inverse per penalty:

    W  = (H + rho I)^-1 (H W0^T + rho (Z - U)^T), transposed
    Z  = (W + U) * mask
    U += W - Z

with ``rho`` raised geometrically so that ``W`` and ``Z`` meet. Pure tensors in and out;
the mask never changes.
"""

from __future__ import annotations

import torch


def reconstruct_masked(
    dense: torch.Tensor,
    keep: torch.Tensor,
    gram: torch.Tensor,
    *,
    iterations: int = 30,
    percdamp: float = 0.01,
) -> torch.Tensor:
    """Kept weights re-fitted to the dense layer's outputs on the calibration inputs.

    Args:
        dense: the weight before masking, ``[out, in]``.
        keep: bool mask of the weights that stay, same shape.
        gram: ``X^T X`` of the calibration inputs (any positive scale), ``[in, in]``.
        iterations: ADMM steps (the penalty grows from ``0.1`` to ``10`` times the mean of
            ``diag(H)`` over them).
        percdamp: dampening added to ``H``'s diagonal, as in SparseGPT.

    Returns:
        The new weight: zero wherever ``keep`` is False, and never a worse reconstruction
        error than ``dense * keep`` (the better of the two is returned).

    Example:
        >>> _ = torch.manual_seed(0)
        >>> x = torch.randn(256, 6) @ torch.randn(6, 16)  # correlated inputs, as activations are
        >>> w = torch.randn(8, 16); keep = torch.rand(8, 16) > 0.5
        >>> err = lambda v: float(((x @ (w - v).T) ** 2).sum())
        >>> new = reconstruct_masked(w, keep, x.T @ x)
        >>> bool((new[~keep] == 0).all()), err(new) < 0.5 * err(w * keep)
        (True, True)
    """
    w0 = dense.detach().double()
    mask = keep.to(torch.bool)
    H = gram.detach().double().clone()
    dead = torch.diag(H) == 0
    H[dead, dead] = 1.0
    mean_diag = float(torch.diag(H).mean())
    H.diagonal().add_(percdamp * mean_diag)
    # (H + rho I)^-1 for every rho from one eigendecomposition H = Q diag(lam) Q^T: each step
    # is then two float32 products with Q instead of a fresh Cholesky factorisation
    lam, q = torch.linalg.eigh(H)
    q32 = q.float()
    hw_e = (q.T @ (H @ w0.T)).float()  # Q^T H W0^T, [in, out]
    lam32 = lam.float().unsqueeze(1)
    mask32 = mask.float()
    z = (w0 * mask).float()
    u = torch.zeros_like(z)
    for step in range(iterations):
        rho = mean_diag * 0.1 * (100.0 ** (step / max(iterations - 1, 1)))
        w = (q32 @ ((hw_e + rho * (q32.T @ (z - u).T)) / (lam32 + rho))).T
        z = (w + u) * mask32
        u = u + w - z
    z = z.double()
    candidate = z
    masked = w0 * mask

    def error(v: torch.Tensor) -> float:
        d = w0 - v
        return float((d @ H * d).sum())

    best = candidate if error(candidate) <= error(masked) else masked
    return best.to(dense.dtype)
