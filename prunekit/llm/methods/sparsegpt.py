"""SparseGPT (Frantar & Alistarh 2023): OBS-style mask selection and weight update.

Columns are processed left to right in blocks; inside a block every pruned weight's
error is propagated to the not-yet-processed columns with the inverse Hessian
(Cholesky factor), and the whole block's error is applied lazily to the columns to its
right. For N:M the ``m - n`` weights with the lowest OBS saliency ``w^2 / [H^-1]_jj^2``
are chosen jointly in each group of ``m`` columns, using the already-updated weights.
"""

from __future__ import annotations

import torch

from prunekit.patterns.nm import NM, check_nm_divides


def inverse_hessian_cholesky(hessian: torch.Tensor, percdamp: float = 0.01) -> torch.Tensor:
    """Upper Cholesky factor of ``(H + damp*I)^-1`` with ``damp = percdamp * mean(diag H)``.

    Dead inputs (zero diagonal) get a unit diagonal. Damping is raised tenfold (up to
    five times) if the factorisation fails.
    """
    H = hessian.detach().double().clone()
    dead = torch.diag(H) == 0
    H[dead, dead] = 1.0
    mean_diag = torch.mean(torch.diag(H)).item()
    idx = torch.arange(H.shape[0], device=H.device)
    damp = percdamp * mean_diag
    for _ in range(6):
        try:
            Hd = H.clone()
            Hd[idx, idx] += damp
            L = torch.linalg.cholesky(Hd)
            Hinv = torch.cholesky_inverse(L)
            return torch.linalg.cholesky(Hinv, upper=True).float()
        except torch.linalg.LinAlgError:
            damp = damp * 10 if damp > 0 else 1e-6 * max(mean_diag, 1e-12)
    raise torch.linalg.LinAlgError("SparseGPT: the Hessian stayed singular after damping")


def sparsegpt_prune(
    weight: torch.Tensor,
    hessian: torch.Tensor,
    sparsity: float,
    pattern: NM | None = None,
    *,
    blocksize: int = 128,
    percdamp: float = 0.01,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Prune a ``(out, in)`` weight with SparseGPT; return ``(new_weight, keep_mask)``.

    Args:
        weight: the layer weight, ``(out_features, in_features)``.
        hessian: ``X^T X`` (any positive scale) of the layer inputs, ``(in, in)``.
        sparsity: fraction removed (unstructured; ignored when ``pattern`` is given).
        pattern: N:M pattern (``n`` kept of every ``m`` consecutive inputs) or None.
        blocksize: columns per lazy-update block. percdamp: dampening, fraction of mean diag.

    Returns:
        The updated weight (zeros where pruned, same dtype) and its bool keep-mask.

    Example:
        >>> torch.manual_seed(0); x = torch.randn(64, 8); w = torch.randn(4, 8)
        >>> new_w, keep = sparsegpt_prune(w, x.T @ x, 0.5)
        >>> int(keep.sum()), bool((new_w[~keep] == 0).all())
        (16, True)
    """
    rows, cols = weight.shape
    if hessian.shape != (cols, cols):
        raise ValueError(f"sparsegpt: Hessian {tuple(hessian.shape)} does not match weight {tuple(weight.shape)}")
    if pattern is not None:
        check_nm_divides(cols, pattern.n, pattern.m)
        if blocksize % pattern.m:
            blocksize = max(pattern.m, blocksize - blocksize % pattern.m)
    W = weight.detach().float().contiguous().clone()
    dead = torch.diag(hessian) == 0
    W[:, dead] = 0
    Hinv = inverse_hessian_cholesky(hessian, percdamp)
    pruned = torch.zeros_like(W, dtype=torch.bool)

    for i1 in range(0, cols, blocksize):
        i2 = min(i1 + blocksize, cols)
        count = i2 - i1
        W1 = W[:, i1:i2].clone()
        Q1 = torch.zeros_like(W1)
        Err1 = torch.zeros_like(W1)
        Hinv1 = Hinv[i1:i2, i1:i2]
        d1 = torch.diag(Hinv1)
        if pattern is None:
            saliency = W1**2 / d1.unsqueeze(0) ** 2
            n_drop = int(saliency.numel() * sparsity)
            mask1 = torch.zeros_like(W1, dtype=torch.bool)
            if n_drop:
                order = torch.sort(saliency.flatten(), stable=True).indices[:n_drop]
                mask1.view(-1)[order] = True
        else:
            mask1 = torch.zeros_like(W1, dtype=torch.bool)
        for i in range(count):
            w = W1[:, i]
            d = Hinv1[i, i]
            if pattern is not None and i % pattern.m == 0:
                group = W1[:, i : i + pattern.m] ** 2 / d1[i : i + pattern.m].unsqueeze(0) ** 2
                drop = torch.topk(group, pattern.m - pattern.n, dim=1, largest=False).indices
                mask1.scatter_(1, i + drop, True)
            q = w.clone()
            q[mask1[:, i]] = 0
            Q1[:, i] = q
            err = (w - q) / d
            W1[:, i:] -= err.unsqueeze(1) @ Hinv1[i, i:].unsqueeze(0)
            Err1[:, i] = err
        W[:, i1:i2] = Q1
        pruned[:, i1:i2] = mask1
        W[:, i2:] -= Err1 @ Hinv[i1:i2, i2:]

    W[pruned] = 0
    return W.to(weight.dtype), ~pruned
