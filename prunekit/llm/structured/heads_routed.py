"""Attention heads whose query / output projections are routed experts (3-D parameters).

In a *mixture of attention heads* (JetMoE's ``JetMoeMoA``) each token's queries come from
the ``top_k`` experts a router picks: one 3-D parameter ``[experts, width, hidden]`` writes
the queries, another ``[experts, hidden, width]`` reads the attention output back, and an
ordinary linear (``kv_proj``) writes the keys and values every expert shares. Head ``h`` of
every expert attends with key/value head ``h``, so a removable *unit* is key/value head
``h`` with its query rows in every expert, its key and value rows, and its input columns
of the reading experts; it holds ``top_k`` query heads per token.

Nothing here is read from names: the two 3-D parameters are found inside the attention
module, and one probe forward (the writer's output made a leaf, the reader's input kept)
says by autograd which writer rows and which key/value rows feed each head's columns of
the reader, exactly as :mod:`.discover` does for linear projections. Because the modules
carry their widths as plain attributes (``kv_projection_size``, the experts'
``hidden_size`` / ``input_size`` / ``output_size``) whose names alone do not tell the model
width from the attention width when they are equal, :func:`routed_size_attributes` builds
the attention module again from a config with the new head counts on the meta device and
takes the integer attributes that build holds.

Example:
    >>> # lay = routed_layout(model, block, "self_attention", "model.layers.0")
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from prunekit.errors import UnsupportedOpError
from prunekit.llm.structured.heads_attrs import HeadCounts, config_copy, new_value
from prunekit.llm.structured.layout import AttentionLayout
from prunekit.llm.structured.mixers import rows_reached


def expert_modules(attention: nn.Module) -> dict[str, nn.Module]:
    """Submodules of ``attention`` (path -> module) owning a 3-D ``weight`` (routed experts)."""
    out = {}
    for path, sub in attention.named_modules():
        w = sub._parameters.get("weight")
        if path and w is not None and w.dim() == 3 and not isinstance(sub, nn.modules.conv._ConvNd):
            out[path] = sub  # (a convolution's kernel is 3-D too: not experts)
    return out


def _weight_dim(weight: torch.Tensor, width: int, prefer: int) -> int:
    """The non-expert dim of a ``[experts, out, in]`` weight that has ``width`` (``prefer`` on a tie)."""
    dims = [d for d in (1, 2) if weight.shape[d] == width]
    if not dims:
        raise UnsupportedOpError(f"routed experts weight {tuple(weight.shape)} has no dim of width {width}")
    return prefer if prefer in dims else dims[0]


def routed_layout(model: nn.Module, block: nn.Module, attn_path: str, where: str,
                  head_dim: int) -> AttentionLayout:
    """The units of an attention module whose query / output projections are routed experts.

    Raises :class:`UnsupportedOpError` (naming the module) when the probe does not find one
    expert module writing the heads and one reading them, or rows shared across heads.
    """
    from prunekit.llm.structured.discover import probe_block

    attention = block.get_submodule(attn_path)
    experts = expert_modules(attention)
    got: dict[str, Any] = {}
    handles = []
    for path, module in experts.items():
        def hook(_m, args, out, _path=path):
            if isinstance(out, torch.Tensor) and args and isinstance(args[0], torch.Tensor):
                got.setdefault(_path, {"in": args[0]})
                leaf = out.detach().requires_grad_(True)
                got[_path]["leaf"] = leaf
                return leaf.clone()
            return None
        handles.append(module.register_forward_hook(hook))
    try:
        rec = probe_block(model, block)
    finally:
        for h in handles:
            h.remove()
    hidden = rec["hidden"]
    writers = [p for p in got if got[p]["in"].shape[-1] == hidden and got[p]["leaf"].shape[-1] != hidden]
    readers = [p for p in got if got[p]["leaf"].shape[-1] == hidden and got[p]["in"].shape[-1] != hidden]
    if len(writers) != 1 or len(readers) != 1:
        raise UnsupportedOpError(f"{where}.{attn_path}: expected one routed expert module writing the heads and "
                                 f"one reading them back to the hidden size {hidden}; found writers {writers}, "
                                 f"readers {readers}")
    writer, reader = writers[0], readers[0]
    x = got[reader]["in"]
    width = int(x.shape[-1])
    if not x.requires_grad or width % head_dim:
        raise UnsupportedOpError(f"{where}.{attn_path}.{reader}: its {width} inputs are not heads of "
                                 f"{head_dim} channels computed in this block")
    linears = [p for p in rec["order"] if p.startswith(attn_path + ".")]
    leaves = [got[writer]["leaf"]] + [rec["leaves"][p] for p in linears]
    n_units = width // head_dim
    reached = [rows_reached(x[..., u * head_dim:(u + 1) * head_dim], leaves) for u in range(n_units)]
    names = [writer] + [p[len(attn_path) + 1:] for p in linears]
    rows: dict[str, tuple[tuple[int, ...], ...]] = {}
    for j, name in enumerate(names):
        per = [tuple(r[j].nonzero().flatten().tolist()) for r in reached]
        if not any(per):
            continue  # a router: it does not feed the heads
        owned = [i for u in per for i in u]
        if len(owned) != len(set(owned)) or len(owned) != leaves[j].shape[-1]:
            raise UnsupportedOpError(f"{where}.{attn_path}.{name}: its rows are shared by several heads or feed "
                                     "none; cannot split it by head")
        rows[name] = tuple(per)
    if writer not in rows:
        raise UnsupportedOpError(f"{where}.{attn_path}.{writer}: its rows feed no head of {reader}")
    w_weight = experts[writer].weight
    r_weight = experts[reader].weight
    cols = tuple(tuple(range(u * head_dim, (u + 1) * head_dim)) for u in range(n_units))
    params = {f"{attn_path}.{writer}.weight": (_weight_dim(w_weight, width, 1), rows.pop(writer)),
              f"{attn_path}.{reader}.weight": (_weight_dim(r_weight, width, 2), cols)}
    heads = next((v for a in ("num_heads", "num_attention_heads") if isinstance(v := getattr(attention, a, None), int)
                  and v > 0), n_units)
    per_unit = heads // n_units if heads % n_units == 0 else 1
    return AttentionLayout(attn_path, "", {f"{attn_path}.{p}": r for p, r in rows.items()}, cols, per_unit,
                           head_dim, params=params, reader=f"{attn_path}.{reader}.weight")


def routed_size_attributes(model: nn.Module, module: nn.Module, old: HeadCounts,
                           new: HeadCounts) -> list[tuple[Any, str, Any]]:
    """``(owner, name, value)`` giving ``module`` and its submodules the sizes of ``new``.

    The config ``module`` holds is copied with its head-count fields changed (by name and
    value, :func:`~prunekit.llm.structured.heads_attrs.new_value`); the module's class is
    built from that copy on the meta device (``cls(config, layer_idx)``), and every integer
    attribute that build holds differently is taken. Raises :class:`UnsupportedOpError`
    when the class cannot be built that way.
    """
    config = getattr(module, "config", None) or model.config
    changes = {k: v for k in config.to_dict() if (v := new_value(k, getattr(config, k, None), old, new)) is not None}
    cfg = config_copy(config, changes)
    try:
        with torch.device("meta"):
            fresh = type(module)(cfg, getattr(module, "layer_idx", 0))
    except Exception as e:
        raise UnsupportedOpError(f"{type(module).__name__}: cannot rebuild it from a config with "
                                 f"{changes} to learn its new sizes ({type(e).__name__}: {e})") from e
    out: list[tuple[Any, str, Any]] = []
    built = dict(fresh.named_modules())
    for path, sub in module.named_modules():
        twin = built.get(path)
        if twin is None:
            continue
        for name, value in vars(sub).items():
            if name.startswith("_"):
                continue
            if name == "config" and value is config:
                out.append((sub, name, cfg))
                continue
            v2 = getattr(twin, name, None)
            if isinstance(value, int) and not isinstance(value, bool) and isinstance(v2, int) and v2 != value:
                out.append((sub, name, v2))
    return out
