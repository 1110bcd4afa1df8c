"""Surgery rules for Hugging Face attention modules, recognised by their attributes.

transformers copies each attention class per model (``BertSelfAttention``,
``RobertaSelfAttention``, ``ViTSelfAttention`` ...), so these rules match the shape of a
module rather than its type:

* BERT-like: ``num_attention_heads``, ``attention_head_size``, ``all_head_size`` and
  ``query`` / ``key`` / ``value`` linears. The forward reshapes to
  ``(-1, attention_head_size)``, so that attribute must follow the pruned head dims, and
  query/key and value must keep the same head size.
* Llama-style (also ViT in transformers 5): ``head_dim``, ``num_attention_heads`` /
  ``num_heads`` and ``q_proj`` / ``k_proj`` / ``v_proj`` linears; the forward reshapes
  to ``(-1, head_dim)``.
* transformers ``Conv1D`` (GPT-2's linear with an ``(in, out)`` weight): ``nf``.
* GPT-2-like: ``num_heads``, ``head_dim``, ``split_size`` and a fused ``c_attn``
  (transformers ``Conv1D``: weight is ``(in, out)``) split into q, k, v by ``split_size``.

The attention scale (``scaling``) is stored at construction and deliberately not
changed: it is part of what the model learned.

Example:
    >>> import torch.nn as nn
    >>> class SelfAttention(nn.Module):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.num_attention_heads, self.attention_head_size, self.all_head_size = 2, 4, 8
    ...         self.query, self.key, self.value = nn.Linear(8, 8), nn.Linear(8, 8), nn.Linear(8, 8)
    >>> m = SelfAttention()
    >>> m.query = nn.Linear(8, 6); m.key = nn.Linear(8, 6); m.value = nn.Linear(8, 6)
    >>> attention_rule_for(m).sync(m); (m.attention_head_size, m.all_head_size)
    (3, 6)
"""

from __future__ import annotations

from torch import nn

from prunekit.surgery.registry import SurgeryRule, Tie


def _is_bert_like(m: nn.Module) -> bool:
    return all(hasattr(m, a) for a in ("num_attention_heads", "attention_head_size", "all_head_size")) \
        and all(isinstance(getattr(m, n, None), nn.Linear) for n in ("query", "key", "value"))


def _bert_sync(m: nn.Module) -> None:
    inner = m.query.out_features
    m.all_head_size = inner
    m.attention_head_size = inner // m.num_attention_heads


def _bert_ties(m: nn.Module, prefix: str) -> list[Tie]:
    q, v = f"{prefix}query.weight", f"{prefix}value.weight"
    return [Tie((q, 0), (v, 0), 1)]  # one head size for query/key and value


def _heads_attr(m: nn.Module) -> str | None:
    for name in ("num_attention_heads", "num_heads"):
        if isinstance(getattr(m, name, None), int):
            return name
    return None


def _is_proj_like(m: nn.Module) -> bool:
    return isinstance(getattr(m, "head_dim", None), int) and _heads_attr(m) is not None and \
        all(isinstance(getattr(m, n, None), nn.Linear) for n in ("q_proj", "k_proj", "v_proj"))


def _proj_sync(m: nn.Module) -> None:
    m.head_dim = m.q_proj.out_features // getattr(m, _heads_attr(m))


def _proj_ties(m: nn.Module, prefix: str) -> list[Tie]:
    return [Tie((f"{prefix}q_proj.weight", 0), (f"{prefix}v_proj.weight", 0), 1)]


def _is_gpt2_like(m: nn.Module) -> bool:
    c_attn = getattr(m, "c_attn", None)
    return all(hasattr(m, a) for a in ("num_heads", "head_dim", "split_size")) and \
        c_attn is not None and type(c_attn).__name__ == "Conv1D" and not getattr(m, "is_cross_attention", False)


def _is_hf_conv1d(m: nn.Module) -> bool:
    return type(m).__name__ == "Conv1D" and hasattr(m, "nf") and hasattr(m, "weight")


def _conv1d_sync(m: nn.Module) -> None:
    m.nf = m.weight.shape[1]  # its forward views the output to (..., nf)


def _gpt2_sync(m: nn.Module) -> None:
    inner = m.c_attn.weight.shape[1] // 3
    m.split_size = inner
    m.head_dim = inner // m.num_heads


def _gpt2_protect(m: nn.Module, prefix: str) -> list[tuple[str, int]]:
    # q, k, v are cut apart by ``split_size``: a head dim removed from one of them must
    # be removed from all three, which the fused layout cannot express; keep c_attn's
    # outputs (the residual stream and the MLP stay prunable)
    return [(f"{prefix}c_attn.weight", 1), (f"{prefix}c_attn.bias", 0)]


def attention_rule_for(module: nn.Module) -> SurgeryRule | None:
    """The rule for a transformers attention lookalike, or None."""
    if _is_bert_like(module):
        return SurgeryRule(sync=_bert_sync, ties=_bert_ties)
    if _is_proj_like(module):
        return SurgeryRule(sync=_proj_sync, ties=_proj_ties)
    if _is_gpt2_like(module):
        return SurgeryRule(sync=_gpt2_sync, protect=_gpt2_protect)
    if _is_hf_conv1d(module):
        return SurgeryRule(sync=_conv1d_sync)
    return None
