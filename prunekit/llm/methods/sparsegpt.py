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
    five times) if the factorisation fails. The three factorisations run in place on one
    float64 copy of ``hessian`` (each attempt starts from a fresh copy), so the peak beside
    the input is that copy and LAPACK's workspace: for a 5632-wide MLP input ~0.5 GB rather
    than ~1 GB of separate factors, which matters when pruning out of core.

    Example:
        >>> H = torch.tensor([[4.0, 2.0], [2.0, 3.0]])
        >>> U = inverse_hessian_cholesky(H, percdamp=0.0)
        >>> torch.allclose(U.T @ U, torch.linalg.inv(H))
        True
    """
    damp = mean_diag = None
    for _ in range(6):
        H = hessian.detach().double()
        if H.data_ptr() == hessian.data_ptr():  # a float64 input: never factor the caller's tensor
            H = H.clone()
        dead = torch.diag(H) == 0
        H[dead, dead] = 1.0
        if mean_diag is None:
            mean_diag = torch.mean(torch.diag(H)).item()
            damp = percdamp * mean_diag
        H.diagonal().add_(damp)
        try:
            torch.linalg.cholesky(H, out=H)
            torch.cholesky_inverse(H, out=H)
            torch.linalg.cholesky(H, upper=True, out=H)
            return H.float()
        except torch.linalg.LinAlgError:
            del H
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
        >>> _ = torch.manual_seed(0); x = torch.randn(64, 8); w = torch.randn(4, 8)
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
        W1 = W[:, i1:i2].clone()
        Hinv1 = Hinv[i1:i2, i1:i2]
        d1 = torch.diag(Hinv1)
        if pattern is None:
            saliency = W1**2 / d1.unsqueeze(0) ** 2
            n_drop = int(saliency.numel() * sparsity)
            mask1 = torch.zeros_like(W1, dtype=torch.bool)
            if n_drop:
                order = torch.sort(saliency.flatten(), stable=True).indices[:n_drop]
                mask1.view(-1)[order] = True
            Q1, Err1, mask1 = _block_updates(W1, Hinv1, mask1, None)
        else:
            Q1, Err1, mask1 = _block_updates(W1, Hinv1, None, pattern)
        W[:, i1:i2] = Q1
        pruned[:, i1:i2] = mask1
        W[:, i2:] -= Err1 @ Hinv[i1:i2, i2:]

    W[pruned] = 0
    return W.to(weight.dtype), ~pruned


def _block_updates(
    W1: torch.Tensor, U: torch.Tensor, pruned: torch.Tensor | None, pattern: NM | None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The sequential OBS updates inside one block of columns.

    ``pruned`` is the block's mask (unstructured), or None to choose it group by group
    (N:M) on the already-updated weights. Work is done on the transposed block so each
    column is contiguous. Returns ``(Q1, Err1, pruned)``: final weights (zeros where
    pruned), the scaled errors to propagate, and the mask.
    """
    Wt = W1.T.contiguous()
    Qt = torch.zeros_like(Wt)
    Et = torch.zeros_like(Wt)
    pruned_t = torch.zeros_like(Wt, dtype=torch.bool) if pruned is None else pruned.T.contiguous()
    d = torch.diag(U)
    for i in range(Wt.shape[0]):
        if pattern is not None and i % pattern.m == 0:
            group = Wt[i : i + pattern.m] ** 2 / d[i : i + pattern.m].unsqueeze(1) ** 2
            drop = torch.topk(group, pattern.m - pattern.n, dim=0, largest=False).indices
            pruned_t[i : i + pattern.m].scatter_(0, drop, True)
        w = Wt[i]
        q = w.masked_fill(pruned_t[i], 0.0)
        Qt[i] = q
        err = (w - q) / d[i]
        Wt[i:] -= U[i, i:].unsqueeze(1) * err.unsqueeze(0)
        Et[i] = err
    return Qt.T, Et.T, pruned_t.T
