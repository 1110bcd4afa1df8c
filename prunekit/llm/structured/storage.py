"""Save a (pruned) transformers model as a normal Hugging Face folder, and load it back.

Saved: ``config.json``, ``generation_config.json`` (if any), the tokenizer files and
``model.safetensors`` (plain weights; unstructured / N:M sparsity is stored as zeros).
GGUF-loaded models are saved the same way and reload without GGUF.

Structured pruning whose shapes the standard config can express (uniform heads /
MLP width / fewer layers) reloads with ``AutoModel*.from_pretrained``. Per-layer widths
that the config cannot express are recorded in the config field
``prunekit_layer_shapes`` (a list, one dict per block: ``num_heads``, ``num_kv_heads``,
``head_dim``, ``intermediate_size``); :func:`load_pruned` rebuilds those shapes before
loading the weights.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from prunekit.errors import ModelError, require
from prunekit.io import atomic_write_text, save_tensors

LAYER_SHAPES_FIELD = "prunekit_layer_shapes"
WEIGHTS_NAME = "model.safetensors"


def save_pretrained_model(model: nn.Module, folder: str | os.PathLike[str], tokenizer: Any = None) -> Path:
    """Write config, tokenizer and safetensors weights to ``folder``; return the folder.

    Example:
        >>> import tempfile
        >>> from transformers import AutoModelForCausalLM, GPT2Config, GPT2LMHeadModel
        >>> m = GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=50))
        >>> folder = save_pretrained_model(m, tempfile.mkdtemp())
        >>> type(AutoModelForCausalLM.from_pretrained(folder)).__name__
        'GPT2LMHeadModel'
    """
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    config_dict = model.config.to_dict()
    config_dict.pop("quantization_config", None)
    config_dict.pop("_name_or_path", None)
    # like ``save_pretrained``: the class that wrote the weights, so a config that no auto class
    # maps (a multimodal model's text config) still names the model to rebuild
    config_dict["architectures"] = [type(model).__name__]
    atomic_write_text(out / "config.json", json.dumps(config_dict, indent=2, sort_keys=True) + "\n")
    gen = getattr(model, "generation_config", None)
    if gen is not None and getattr(model, "can_generate", lambda: False)():
        atomic_write_text(out / "generation_config.json", gen.to_json_string())
    state = {k: v for k, v in model.state_dict().items()}
    save_tensors(state, out / WEIGHTS_NAME, metadata={"format": "pt"})
    if tokenizer is not None:
        tokenizer.save_pretrained(str(out))
    return out


def load_pruned(
    folder: str | os.PathLike[str], auto_class: Any = None, *, dtype: torch.dtype = torch.float32
) -> nn.Module:
    """Load a folder written by :func:`save_pretrained_model`, with non-uniform shapes rebuilt.

    Args:
        folder: the saved folder. auto_class: e.g. ``transformers.AutoModelForCausalLM``
            (default ``AutoModel``). dtype: weight dtype.

    Returns:
        The model in eval mode; a normal transformers model.
    """
    transformers = require("transformers", extra="hf")
    auto_class = auto_class or transformers.AutoModel
    path = Path(folder)
    if not (path / "config.json").is_file():
        raise ModelError(f"{path} has no config.json; it is not a saved model folder")
    config = transformers.AutoConfig.from_pretrained(str(path))
    model_class = resolve_model_class(config, auto_class, transformers)
    shapes = getattr(config, LAYER_SHAPES_FIELD, None)
    if not shapes:
        model = model_class.from_pretrained(str(path), dtype=dtype)
        model.eval()
        return model
    from prunekit.llm.structured.shapes import apply_layer_shapes

    if model_class is auto_class:
        model = auto_class.from_config(config, dtype=dtype)
    else:
        model = model_class._from_config(config, dtype=dtype)
    apply_layer_shapes(model, shapes)
    weights = path / WEIGHTS_NAME
    if not weights.is_file():
        raise ModelError(f"{path} has no {WEIGHTS_NAME}")
    from prunekit.io import load_state_into, load_tensors

    state = load_tensors(weights)
    missing, unexpected = load_state_into(model, state, strict=False)
    tied = set(getattr(model, "all_tied_weights_keys", {}) or {})
    missing = [k for k in missing if k not in tied]
    if missing or unexpected:
        raise ModelError(
            f"{path}: weights do not match the recorded shapes (missing {missing[:3]}, "
            f"unexpected {unexpected[:3]})"
        )
    if hasattr(model, "tie_weights"):
        model.tie_weights()
    model.eval()
    return model


def resolve_model_class(config: Any, auto_class: Any, transformers: Any) -> Any:
    """The class to build ``config`` with: ``auto_class`` when it maps the config's class, else
    the first class named in ``config.architectures`` that transformers exports and whose
    ``config_class`` the config is (a text config such as ``Emu3TextConfig`` that
    ``AutoModelForCausalLM`` does not map, saved by ``Emu3ForCausalLM``).

    Example:
        >>> import transformers
        >>> cfg = transformers.GPT2Config()
        >>> resolve_model_class(cfg, transformers.AutoModelForCausalLM, transformers).__name__
        'AutoModelForCausalLM'
    """
    mapping = getattr(auto_class, "_model_mapping", None)
    if mapping is None or type(config) in mapping:
        return auto_class
    names = list(getattr(config, "architectures", None) or [])
    for name in names:
        cls = getattr(transformers, name, None)
        config_class = getattr(cls, "config_class", None)
        if isinstance(cls, type) and config_class is not None and isinstance(config, config_class):
            return cls
    raise ModelError(
        f"{auto_class.__name__} does not map {type(config).__name__} and the saved config's "
        f"architectures {names} name no transformers class built from it; save the model with "
        f"save_pretrained_model (it records the model class) or pass the model's own class as "
        f"auto_class"
    )
