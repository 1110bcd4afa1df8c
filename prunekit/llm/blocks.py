"""Find the repeated transformer blocks of a model and the linear layers inside them.

Works on any model whose blocks sit in an ``nn.ModuleList`` of same-class modules
(Llama/Qwen2/Mistral ``model.layers``, GPT-2 ``transformer.h``, OPT
``model.decoder.layers``, BERT/ViT ``encoder.layer``): the longest such list is taken,
preferring one outside sub-models with a config of their own (GIT's vision encoder) and
one as long as ``config.num_hidden_layers``; a list of that length may mix block classes
(hybrids).
GPT-2's ``Conv1D`` stores its weight transposed; :func:`weight_2d` and
:func:`set_weight_2d` hide that so every method sees ``(out_features, in_features)``.
"""

from __future__ import annotations

import torch
from torch import nn

from prunekit.errors import ModelError


def _is_conv1d(module: nn.Module) -> bool:
    return type(module).__name__ == "Conv1D" and hasattr(module, "nf")


def is_prunable_linear(module: nn.Module) -> bool:
    """True for ``nn.Linear`` and transformers' GPT-2 style ``Conv1D``."""
    return isinstance(module, nn.Linear) or _is_conv1d(module)


def find_blocks(model: nn.Module) -> tuple[str, nn.ModuleList]:
    """Return ``(path, module_list)`` of the model's transformer blocks.

    Raises:
        ModelError: when the model has no list of repeated blocks holding linear layers.

    Example:
        >>> from torch import nn
        >>> m = nn.Sequential(nn.ModuleList([nn.Sequential(nn.Linear(2, 2)) for _ in range(3)]))
        >>> find_blocks(m)[0]
        '0'
    """
    best: tuple[str, nn.ModuleList] | None = None
    best_rank: tuple[bool, bool, int] = (False, False, 0)
    config = getattr(model, "config", None)
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    depth = getattr(text, "num_hidden_layers", None)
    own = {id(config), id(text)}
    modules = dict(model.named_modules())
    for name, module in modules.items():
        if not isinstance(module, nn.ModuleList) or len(module) == 0:
            continue
        kinds = {type(child) for child in module}
        has_linears = [any(is_prunable_linear(m) for m in child.modules()) for child in module]
        if not has_linears[0] or (len(kinds) != 1 and not (len(module) == depth and all(has_linears))):
            continue  # mixed block classes only as the config's layers (Jamba's Mamba / attention blocks)
        parts = name.split(".")
        foreign = any(id(getattr(modules[".".join(parts[:i])], "config", config)) not in own
                      for i in range(1, len(parts)))  # inside a sub-model with its own config (a vision tower)
        rank = (not foreign, len(module) == depth, len(module))
        if best is None or rank > best_rank:
            best, best_rank = (name, module), rank
    if best is None:
        raise ModelError(
            f"{type(model).__name__}: found no list of repeated transformer blocks with linear "
            "layers; prunekit.llm supports Llama/Qwen2/Mistral, GPT-2, OPT, BERT, ViT style models"
        )
    return best


def find_linears(block: nn.Module) -> dict[str, nn.Module]:
    """The prunable linear layers of one block, by their path inside the block."""
    return {name: m for name, m in block.named_modules() if name and is_prunable_linear(m)}


def weight_2d(module: nn.Module) -> torch.Tensor:
    """The weight as ``(out_features, in_features)`` (a transposed view for ``Conv1D``)."""
    return module.weight.T if _is_conv1d(module) else module.weight


def set_weight_2d(module: nn.Module, value: torch.Tensor) -> None:
    """Write an ``(out_features, in_features)`` tensor into the module's weight, in place."""
    with torch.no_grad():
        target = module.weight.T if _is_conv1d(module) else module.weight
        target.copy_(value.to(target.dtype))
