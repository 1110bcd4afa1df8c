"""A model whose parameters live on the meta device until a part of it is needed.

:func:`empty_model` builds the architecture from ``config.json`` without allocating a
single weight (buffers such as rotary frequencies are computed as usual, they are
small). :func:`materialize` loads one module's parameters from the checkpoint onto a
device; :func:`release` puts them back on the meta device, freeing the memory.
"""

from __future__ import annotations

import os
from typing import Any

import torch
from torch import nn

from prunekit.errors import require
from prunekit.llm.offload.shards import ShardReader


def empty_model(folder: str | os.PathLike[str], *, dtype: torch.dtype = torch.float32) -> Any:
    """The causal LM of a Hugging Face folder with every parameter on the meta device.

    Example:
        >>> import tempfile
        >>> from transformers import LlamaConfig
        >>> d = tempfile.mkdtemp(); LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        ...     num_attention_heads=4, vocab_size=50).save_pretrained(d)
        >>> m = empty_model(d)
        >>> m.model.layers[0].mlp.up_proj.weight.device.type, m.model.rotary_emb.inv_freq.device.type
        ('meta', 'cpu')
    """
    transformers = require("transformers", extra="hf")
    accelerate = require("accelerate", extra="hf")
    config = transformers.AutoConfig.from_pretrained(str(folder))
    with accelerate.init_empty_weights(include_buffers=False):
        model = transformers.AutoModelForCausalLM.from_config(config, dtype=dtype)
    model.eval()
    return model


def materialize(module: nn.Module, prefix: str, reader: ShardReader, *, dtype: torch.dtype,
                device: str | torch.device, only: list[str] | None = None) -> None:
    """Load ``module``'s parameters (checkpoint names ``prefix + name``) onto ``device``.

    ``only``: just these parameter names (default all). Buffers found in the checkpoint
    are loaded too; the others keep the values computed when the model was built (moved
    to ``device``).
    """
    params = list(only) if only is not None else [name for name, _ in module.named_parameters()]
    buffers = [name for name, _ in module.named_buffers()]
    wanted = [prefix + name for name in params]
    wanted += [prefix + name for name in buffers if prefix + name in reader.files]
    tensors = reader.read(wanted, dtype=dtype, device=device)
    for name in params:
        _set(module, name, nn.Parameter(tensors.pop(prefix + name), requires_grad=False), param=True)
    for name in buffers:
        value = tensors.pop(prefix + name, None)
        _set(module, name, value if value is not None else module.get_buffer(name).to(device), param=False)


def release(module: nn.Module) -> None:
    """Move ``module``'s parameters back to the meta device (their memory is freed)."""
    for name, p in list(module.named_parameters()):
        _set(module, name, nn.Parameter(torch.empty_like(p, device="meta"), requires_grad=False), param=True)


def _set(root: nn.Module, name: str, value: Any, *, param: bool) -> None:
    owner_path, _, leaf = name.rpartition(".")
    owner = root.get_submodule(owner_path) if owner_path else root
    if param:
        owner._parameters[leaf] = value
    else:
        owner._buffers[leaf] = value
