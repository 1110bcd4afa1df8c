"""Which probed projections of an attention module are indexed by head, and how wide a head is.

Inside attention, a linear is *head-indexed* when some of its output rows feed some
heads and not others (q/k/v, fused ``query_key_value``, MLA's ``q_b_proj`` /
``kv_b_proj``), or when all its rows feed every head (multi-query attention's one
key/value head). It is *internal* and stays whole when no row reaches a head of the
output projection directly (MLA's low-rank ``q_a_proj`` / ``kv_a_proj``, whose outputs
feed another linear; a router scoring heads), or when the rows that do reach one reach
every head and the rest none (the shared rotary key of ``kv_a_proj_with_mqa``). A
projection with rows that feed some heads and rows the probe leaves unused (ProphetNet's
relative-position buckets) is left to :mod:`.heads_followers`, which places the unused
rows by the order of the others.

Example:
    >>> import torch
    >>> t, f = True, False
    >>> rows = [[torch.tensor([t, f]), torch.tensor([f, f])], [torch.tensor([f, t]), torch.tensor([f, f])]]
    >>> head_indexed(rows)
    [0]
    >>> shared_rope = [[torch.tensor([t, f])], [torch.tensor([t, f])]]
    >>> head_indexed(shared_rope)
    []
"""

from __future__ import annotations

from typing import Any

import torch


def head_indexed(head_rows: list[list[torch.Tensor]]) -> list[int]:
    """Indices of the projections that are head-indexed (``head_rows[head][proj]`` = rows reached)."""
    n_heads = len(head_rows)
    out = []
    for j in range(len(head_rows[0]) if head_rows else 0):
        hits = torch.stack([head_rows[h][j] for h in range(n_heads)])   # [heads, rows]
        reached = hits.any(0)
        if not bool(reached.any()):
            continue                                                     # internal: feeds another linear
        everyone = hits.all(0)
        if n_heads > 1 and bool((reached == everyone).all()) and not bool(reached.all()):
            continue                                                     # shared by every head, rest internal
        if not bool(reached.all()):
            continue  # rows the short probe leaves unused (relative-position buckets): a follower, placed by order
        out.append(j)
    return out


def heads_and_width(attention: Any, config: Any, width: int, head_dim: int) -> int:
    """Channels per head at the output projection's input (MLA: ``v_head_dim``, not the query's).

    Example:
        >>> class A: num_heads = 4
        >>> heads_and_width(A(), None, 32, 12)
        8
    """
    counts = _head_counts(attention, config)
    if width % head_dim == 0 and (not counts or width // head_dim in counts):
        return head_dim
    for n in sorted(counts):
        if width % n == 0:
            return width // n
    return head_dim


def _head_counts(attention: Any, config: Any) -> set[int]:
    names = ("num_heads", "num_attention_heads", "n_head", "n_heads")
    found = {getattr(attention, a, None) for a in names}  # the module's own (kept current); not the config's
    return {v for v in found if isinstance(v, int) and v > 0}
