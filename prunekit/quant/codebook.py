"""Weight sharing: a k-means codebook of a layer's non-zero weights (pure math).

Deep Compression (Han et al., 2016) clusters the surviving weights of each layer into
``2^bits`` shared values, initialising the centroids linearly between the smallest and
the largest weight. Zeros (pruned weights) are not clustered: they stay exactly zero and
are stored by position, not by code.
"""

from __future__ import annotations

import numpy as np
import torch

from prunekit.errors import ConfigError


def check_codebook_bits(bits: int) -> int:
    """Validate a codebook size in bits (1..8) and return it."""
    if isinstance(bits, bool) or not isinstance(bits, int) or not 1 <= bits <= 8:
        raise ConfigError(f"codebook bits must be an integer in 1..8, got {bits!r}")
    return bits


def kmeans_codebook(values: torch.Tensor, bits: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Cluster 1-D ``values`` into at most ``2^bits`` centroids.

    When there are no more distinct values than centroids, the codebook is exactly those
    values (so re-encoding already shared weights is lossless). Otherwise scikit-learn's
    ``KMeans`` runs once from linearly spaced centroids (deterministic).

    Args:
        values: 1-D float tensor (e.g. the non-zero weights of one layer).
        bits: codebook size in bits, 1..8.
        seed: random state passed to KMeans.

    Returns:
        ``(centroids fp32 (k,), codes uint8 (len(values),))`` with ``centroids[codes] ~ values``.

    Example:
        >>> c, codes = kmeans_codebook(torch.tensor([0.1, 0.1, -0.3]), bits=1)
        >>> c.tolist(), codes.tolist()
        ([-0.30000001192092896, 0.10000000149011612], [1, 1, 0])
    """
    check_codebook_bits(bits)
    flat = values.detach().float().reshape(-1).cpu()
    k = 2**bits
    if flat.numel() == 0:
        return torch.zeros(0), torch.zeros(0, dtype=torch.uint8)
    unique, inverse = torch.unique(flat, return_inverse=True)
    if unique.numel() <= k:
        return unique.clone(), inverse.to(torch.uint8)
    from sklearn.cluster import KMeans

    data = flat.numpy().astype(np.float64).reshape(-1, 1)
    init = np.linspace(data.min(), data.max(), k).reshape(-1, 1)
    km = KMeans(n_clusters=k, init=init, n_init=1, max_iter=100, random_state=seed)
    km.fit(data)
    centroids = torch.tensor(km.cluster_centers_.reshape(-1), dtype=torch.float32)
    order = torch.argsort(centroids)
    centroids = centroids[order]
    codes = nearest_codes(flat, centroids)
    return centroids, codes


def nearest_codes(values: torch.Tensor, centroids: torch.Tensor) -> torch.Tensor:
    """Code of the nearest centroid for every value (centroids sorted ascending).

    Example:
        >>> nearest_codes(torch.tensor([0.2, -1.0, 0.9]), torch.tensor([-1.0, 0.0, 1.0])).tolist()
        [1, 0, 2]
    """
    flat = values.detach().float().reshape(-1)
    # boundaries halfway between neighbours; searchsorted gives the nearest centroid
    mids = (centroids[1:] + centroids[:-1]) / 2
    return torch.searchsorted(mids, flat).to(torch.uint8)


def share_weights(weight: torch.Tensor, bits: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Replace every non-zero weight by its centroid; zeros stay exactly zero.

    Returns ``(shared weight, centroids)``.

    Example:
        >>> w, c = share_weights(torch.tensor([[0.0, 0.11, 0.09, -0.5]]), bits=1)
        >>> w[0, 0].item(), len(c), len(torch.unique(w[w != 0]))
        (0.0, 2, 2)
    """
    nonzero = weight != 0
    centroids, codes = kmeans_codebook(weight[nonzero], bits, seed)
    out = torch.zeros_like(weight)
    out[nonzero] = centroids[codes.long()].to(weight.dtype)
    return out, centroids
