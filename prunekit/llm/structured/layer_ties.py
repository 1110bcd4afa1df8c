"""Block lists whose depth is tied: several lists built from one layer count.

HRM's ``L_module.layers`` and ``H_module.layers`` are both built from ``num_layers_per_stack``:
a config with one layer less shortens both, so a block of one list cannot be removed alone.
:func:`tied_lists` recognises this from where the closest rebuild differs (only blocks of
sibling lists as long as the pruned one, of the same block classes), not from names;
:func:`~prunekit.llm.structured.layer_fields.removable_layers` then reports layer removal as
not applicable when no single block can go.

Example:
    >>> from torch import nn
    >>> m = nn.Module(); m.a = nn.ModuleList([nn.Linear(2, 2)] * 2); m.b = nn.ModuleList([nn.Linear(2, 2)] * 2)
    >>> tied_lists(m, "a", ["b.1.weight", "b.1.bias"])
    ['b']
    >>> tied_lists(m, "a", ["b.1.weight", "lm_head.weight"])
    []
"""

from __future__ import annotations

from torch import nn


def sibling_lists(model: nn.Module, path: str) -> list[str]:
    """Paths of the other ``nn.ModuleList``s of ``model`` as long as the one at ``path`` and
    holding the same block classes (neither inside the other)."""
    blocks = model.get_submodule(path)
    kinds = [type(b) for b in blocks]
    out = []
    for name, module in model.named_modules():
        if (not isinstance(module, nn.ModuleList) or name == path or name.startswith(path + ".")
                or path.startswith(name + ".") or len(module) != len(blocks)):
            continue
        if [type(b) for b in module] == kinds:
            out.append(name)
    return out


def tied_lists(model: nn.Module, path: str, differences: list[str], among: list[str] | None = None) -> list[str]:
    """The lists of ``among`` (default: the sibling lists, :func:`sibling_lists`) that all of
    ``differences`` (parameter and attribute keys where the closest rebuild of the shallower
    model differs) fall in; empty when any difference lies elsewhere, i.e. when the
    difference is not a tie."""
    if not differences:
        return []
    siblings = sibling_lists(model, path) if among is None else among
    hit = set()
    for key in differences:
        owner = next((s for s in siblings if key.startswith(s + ".")), None)
        if owner is None:
            return []
        hit.add(owner)
    return sorted(hit)
