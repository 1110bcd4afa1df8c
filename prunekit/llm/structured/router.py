"""The router of a mixture-of-experts layer: where its per-expert logits come from.

A router is the module, or chain of modules, whose *final linear* emits one logit per
expert, possibly followed by a few extra outputs that are not experts (shared experts
that Inkling's router also scores, ZAYA's "skip" slot, picked to compute nothing). Found
from structure, never from a family's names, nearest the experts first:

1. a weight ``[n, hidden]`` (Mixtral's ``gate``, Llama 4's ``router``, JetMoE's
   ``router.layer``);
2. else a *routing module*: a module outside the experts (and outside any attention) that
   declares ``n`` experts (``num_experts`` / ``num_local_experts`` / ``n_routed_experts``)
   and holds, itself or below it, a linear with ``n + extra`` output rows (``0 <= extra <
   n``; ``n`` exactly first, else the last such linear): Inkling's ``[n + shared, hidden]``
   gate, ZAYA's MLP router (``down_proj`` -> ``router_mlp`` (``fc1``, ``fc2``) ->
   ``out_proj [n + 1, router_hidden]``).

The extra outputs are taken to be the *trailing* rows (index ``n`` and up, as both
families lay them out); removing experts keeps them, in order, after the kept experts' rows.

:func:`router_vectors` lists the per-output vectors beside the router (a per-class bias or
buffer of length ``n + extra`` on the routing chain: ZAYA's ``balancing_biases``), sliced
with its rows; :func:`count_attributes` the integer attributes that carry the counts
(``num_experts``; ``n + extra`` as ZAYA's ``num_router_classes``).

Example:
    >>> block = nn.Module(); block.moe = nn.Module(); block.moe.experts = nn.Module()
    >>> block.moe.gate = nn.Module(); block.moe.gate.num_experts = 4
    >>> block.moe.gate.inner = nn.Linear(8, 16); block.moe.gate.out = nn.Linear(16, 5)
    >>> find_router(block, "moe.experts", 4, 32)
    'moe.gate.out'
    >>> router_extra(block, "moe.gate.out", 4)
    1
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import torch
from torch import nn

from prunekit.llm.structured.layer_index import _LAYER_INDEX_ATTR

EXPERT_COUNT = re.compile(r"^(num_local_experts|num_experts|n_routed_experts)$")
_OUTPUT_COUNT = re.compile(r"^(n|num)_|(classes|outputs|choices)$")


def _weight(module: nn.Module) -> torch.Tensor | None:
    w = getattr(module, "weight", None)
    return w if isinstance(w, torch.Tensor) and w.dim() == 2 else None


def declares_experts(module: nn.Module, n: int) -> bool:
    """True when ``module`` has an expert-count attribute equal to ``n``.

    Example:
        >>> m = nn.Module(); m.num_local_experts = 4
        >>> declares_experts(m, 4), declares_experts(m, 3)
        (True, False)
    """
    return any(EXPERT_COUNT.match(k) and v == n and not isinstance(v, bool) for k, v in vars(module).items())


def _outside(name: str, experts: str) -> bool:
    """Neither the experts module, nor inside it, nor one of its ancestors."""
    return not (name == experts or name.startswith(experts + ".") or experts.startswith(name + ".")
                or name == "")


def _chain_routers(block: nn.Module, experts: str, n: int) -> list[str]:
    """Final linears (``n`` to ``2n - 1`` output rows) of routing modules that declare ``n`` experts."""
    from prunekit.llm.structured.mixers import inside_attention

    found: list[str] = []
    for name, module in block.named_modules():
        if not _outside(name, experts) or not declares_experts(module, n) or inside_attention(block, name):
            continue
        rows = [(f"{name}.{q}".rstrip("."), w.shape[0]) for q, m in module.named_modules()
                if (w := _weight(m)) is not None and n <= w.shape[0] < 2 * n]
        exact = [p for p, r in rows if r == n]
        if exact or rows:
            found.append((exact or [p for p, _ in rows])[-1])
    return found


def find_router(block: nn.Module, experts: str, n: int, hidden: int) -> str | None:
    """The path (in ``block``) of the linear whose rows are the router's logits for ``n``
    experts, or None: a ``[n, hidden]`` weight first, else a routing module's final linear
    (see the module docstring); among several, the one inside the experts module, then
    the one beside it (same parent), then the first."""
    found = [name for name, module in block.named_modules() if name != experts
             and (w := _weight(module)) is not None and tuple(w.shape) == (n, hidden)]
    if not found:
        found = _chain_routers(block, experts, n)
    parent = experts.rpartition(".")[0]
    inside = [name for name in found if name.startswith(experts + ".")]  # JetMoE: the MoE module holds it
    near = [name for name in found if not parent or name.startswith(parent + ".")]
    return (inside or near or found or [None])[0]


def router_extra(block: nn.Module, router: str, n: int) -> int:
    """How many outputs past the ``n`` experts the router emits (trailing rows, kept)."""
    w = _weight(block.get_submodule(router))
    return max(int(w.shape[0]) - n, 0) if w is not None else 0


def router_chain(block: nn.Module, router: str, experts: str) -> list[str]:
    """The router and its ancestors in ``block`` up to the experts' parent (excluded): the
    modules a routing decision runs through (ZAYA: ``mlp.gate.router_mlp.out_proj``,
    ``mlp.gate.router_mlp``, ``mlp.gate``)."""
    parent = experts.rpartition(".")[0]
    parts = router.split(".")
    chain = [".".join(parts[:i]) for i in range(len(parts), 0, -1)]
    return [p for p in chain if _outside(p, experts) and (not parent or p.startswith(parent + "."))]


def router_vectors(block: nn.Module, router: str, experts: str, n: int) -> Iterator[str]:
    """Tensors (``"module.attr"`` paths in ``block``) indexed by router output on the routing
    chain: the router's bias and 1-D vectors of length ``n + extra`` (a per-class balancing
    bias); only when the router has extra outputs (plain ``[n]`` vectors are found by length)."""
    extra = router_extra(block, router, n)
    if not extra:
        return
    for path in router_chain(block, router, experts):
        module = block.get_submodule(path)
        for k, t in list(module.named_parameters(recurse=False)) + list(module.named_buffers(recurse=False)):
            if path == router and k == "weight":
                continue
            if t is not None and t.dim() == 1 and t.shape[0] == n + extra:
                yield f"{path}.{k}"


def count_attributes(module: nn.Module, n: int, new: int, extra: int, chain: bool) -> dict[str, int]:
    """The integer attributes of ``module`` that change when ``n`` experts become ``new``:
    expert counts equal to ``n``, and on the routing chain (``chain``) output counts equal to
    ``n + extra`` (ZAYA's ``num_router_classes``; a layer index is never one).

    Example:
        >>> m = nn.Module(); m.num_experts, m.num_router_classes, m.layer_idx, m.top_k = 8, 9, 9, 2
        >>> count_attributes(m, 8, 6, 1, chain=True)
        {'num_experts': 6, 'num_router_classes': 7}
    """
    out: dict[str, int] = {}
    for k, v in vars(module).items():
        if k.startswith("_") or not isinstance(v, int) or isinstance(v, bool):
            continue
        if EXPERT_COUNT.match(k) and v == n:
            out[k] = new
        elif (chain and extra > 0 and v == n + extra and _OUTPUT_COUNT.search(k)
              and not _LAYER_INDEX_ATTR.match(k) and not EXPERT_COUNT.match(k)):
            out[k] = new + extra
    return out

