"""Fold an N:M channel permutation into a transformer block without changing what it computes.

Permuting the input channels of a linear layer ``C`` changes nothing if the layer ``P``
that produces those channels has its output rows permuted the same way (and anything in
between acts channel by channel). In a decoder block two such pairs exist:

* MLP: ``down_proj`` reads ``act(gate_proj(x)) * up_proj(x)`` (Llama, Qwen2, Mistral) or
  ``act(fc1(x))`` (OPT ``fc2``); one free permutation of the intermediate channels;
* attention: ``o_proj`` reads the heads' value mixtures, head by head. Inside one
  key/value head the value channels may be permuted (with grouped-query attention the
  same permutation applies to every query head that shares it), so there is one
  permutation of ``head_dim`` channels per KV head.

q/k/v, gate/up read the residual stream through a norm: their input order is fixed by
the residual stream, so they are not permuted.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from prunekit.llm.blocks import find_linears, set_weight_2d, weight_2d
from prunekit.llm.hooks import InputStats
from prunekit.llm.methods.permute import balanced_permutation
from prunekit.llm.methods.wanda import wanda_scores

#: (consumer, producers) of channel-wise MLPs, by path inside the block
MLP_PAIRS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("mlp.down_proj", ("mlp.gate_proj", "mlp.up_proj")),
    ("fc2", ("fc1",)),
)
#: (consumer, value producer) of attention, by path inside the block
ATTENTION_PAIRS: tuple[tuple[str, str], ...] = (
    ("self_attn.o_proj", "self_attn.v_proj"),
    ("self_attn.out_proj", "self_attn.v_proj"),
)


@dataclass
class FoldPair:
    """A consumer linear whose input channels may be permuted, and the producers that absorb it.

    ``head_dim`` is None for a free permutation, else the per-KV-head channel count
    (``n_rep`` query heads share each KV head).
    """

    consumer: str
    producers: tuple[str, ...]
    head_dim: int | None = None
    n_rep: int = 1


def foldable_pairs(block: nn.Module) -> list[FoldPair]:
    """The permutable (consumer, producers) pairs of a Llama/Qwen2/Mistral/OPT style block."""
    linears = find_linears(block)
    pairs = [FoldPair(c, p) for c, p in MLP_PAIRS if c in linears and all(x in linears for x in p)]
    for cons, prod in ATTENTION_PAIRS:
        if cons not in linears or prod not in linears:
            continue
        attn = block.get_submodule(cons.rsplit(".", 1)[0])
        head_dim = getattr(attn, "head_dim", None)
        if not isinstance(head_dim, int) or head_dim <= 0:
            continue
        q_heads = weight_2d(linears[cons]).shape[1] // head_dim
        kv_heads = weight_2d(linears[prod]).shape[0] // head_dim
        if kv_heads and q_heads % kv_heads == 0 and q_heads * head_dim == weight_2d(linears[cons]).shape[1]:
            pairs.append(FoldPair(cons, (prod,), head_dim, q_heads // kv_heads))
    return pairs


def pair_permutation(pair: FoldPair, scores: torch.Tensor, n: int, m: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(consumer_perm, producer_perm)`` for one pair from the consumer's weight scores.

    For attention, a permutation of ``head_dim`` is found per KV head from the stacked
    scores of the query heads that share it, and expanded to full index vectors.
    """
    if pair.head_dim is None:
        perm = balanced_permutation(scores, n, m)
        return perm, perm
    hd, rep = pair.head_dim, pair.n_rep
    rows, cols = scores.shape
    kv_heads = cols // hd // rep
    consumer = torch.arange(cols)
    producer = torch.arange(kv_heads * hd)
    for j in range(kv_heads):
        heads = range(j * rep, (j + 1) * rep)
        stacked = torch.cat([scores[:, h * hd : (h + 1) * hd] for h in heads], dim=0)
        perm = balanced_permutation(stacked, n, m)
        producer[j * hd : (j + 1) * hd] = j * hd + perm
        for h in heads:
            consumer[h * hd : (h + 1) * hd] = h * hd + perm
    return consumer, producer


def apply_fold_(block: nn.Module, pair: FoldPair, consumer_perm: torch.Tensor,
                producer_perm: torch.Tensor) -> None:
    """Permute the consumer's input channels and the producers' output rows (and biases), in place.

    Example:
        >>> from torch import nn
        >>> block = nn.Module(); block.fc1, block.fc2 = nn.Linear(3, 4), nn.Linear(4, 2)
        >>> x = torch.randn(5, 3); y = block.fc2(torch.relu(block.fc1(x)))
        >>> perm = torch.tensor([2, 0, 3, 1])
        >>> apply_fold_(block, FoldPair("fc2", ("fc1",)), perm, perm)
        >>> torch.allclose(block.fc2(torch.relu(block.fc1(x))), y, atol=1e-6)
        True
    """
    linears = find_linears(block)
    cons = linears[pair.consumer]
    set_weight_2d(cons, weight_2d(cons)[:, consumer_perm].clone())
    for name in pair.producers:
        prod = linears[name]
        set_weight_2d(prod, weight_2d(prod)[producer_perm].clone())
        bias = getattr(prod, "bias", None)
        if bias is not None:
            with torch.no_grad():
                bias.copy_(bias[producer_perm].clone())


def consumer_scores(weight: torch.Tensor, stats: InputStats | None, method: str,
                    percdamp: float = 0.01) -> torch.Tensor:
    """Importance of each weight for the permutation: the method's own notion of it.

    magnitude ``|W|``; Wanda ``|W| * ||x||``; SparseGPT the OBS saliency's square root
    ``|W| / sqrt([H^-1]_jj)`` (order-free: the diagonal of the damped inverse Hessian).
    """
    w = weight.detach().float().abs()
    if method == "magnitude" or stats is None:
        return w
    if method == "wanda" or stats.gram is None:
        return wanda_scores(weight, stats.sq_norm)
    h = stats.gram.double().clone()
    diag = h.diagonal()
    diag[diag == 0] = 1.0
    diag += percdamp * float(diag.mean())
    inv_diag = torch.linalg.inv(h).diagonal().clamp_min(1e-30).float()
    return w / inv_diag.sqrt().unsqueeze(0)


def permute_pair_(block: nn.Module, pair: FoldPair, stats: InputStats | None, method: str, n: int, m: int,
                  percdamp: float = 0.01) -> torch.Tensor | None:
    """Choose one pair's permutation from the consumer's scores, fold it, permute ``stats``; in place.

    Returns the consumer's input permutation (new channel ``j`` is old channel ``perm[j]``),
    or None when the consumer's width is not a multiple of ``m``.
    """
    lin = find_linears(block)[pair.consumer]
    if weight_2d(lin).shape[1] % m:
        return None
    scores = consumer_scores(weight_2d(lin), stats, method, percdamp)
    cperm, pperm = pair_permutation(pair, scores, n, m)
    apply_fold_(block, pair, cperm, pperm)
    if stats is not None:
        stats.sq_norm = stats.sq_norm[cperm]
        if stats.gram is not None:
            stats.gram = stats.gram[cperm][:, cperm]
    return cperm


def permute_block_(block: nn.Module, stats: dict[str, InputStats], method: str, n: int, m: int,
                   percdamp: float = 0.01) -> list[str]:
    """Choose and fold the N:M permutations of one block; permute the consumers' statistics too.

    Returns the consumers permuted. The block computes the same function afterwards (up
    to float rounding), so pruning it with ``stats`` picks groups in the permuted order.
    """
    done = []
    for pair in foldable_pairs(block):
        if permute_pair_(block, pair, stats.get(pair.consumer), method, n, m, percdamp) is not None:
            done.append(pair.consumer)
    return done
