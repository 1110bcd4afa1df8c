"""Run a model whose blocks live on disk: each block is loaded just before it runs and
freed right after, by hooks that a context manager always removes.

Used for perplexity out of core: ``with streamed(model, reader, "cpu"): perplexity(model, ids)``
holds the embeddings, the head and one block at a time.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from prunekit.llm.blocks import find_blocks
from prunekit.llm.offload.shards import ShardReader
from prunekit.llm.offload.skeleton import materialize, release


def outside_blocks(model: nn.Module, *, head: bool) -> list[str]:
    """Names of the parameters outside the transformer blocks (without an untied LM head
    unless ``head``), as the checkpoint names them.

    Example:
        >>> from transformers import LlamaConfig, LlamaForCausalLM
        >>> m = LlamaForCausalLM(LlamaConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=1,
        ...     num_attention_heads=2, vocab_size=20, tie_word_embeddings=False))
        >>> outside_blocks(m, head=False)
        ['model.embed_tokens.weight', 'model.norm.weight']
    """
    path, _ = find_blocks(model)
    out_emb = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    in_emb = model.get_input_embeddings() if hasattr(model, "get_input_embeddings") else None
    skip: set[int] = set()
    if not head and out_emb is not None and (in_emb is None or out_emb.weight is not in_emb.weight):
        skip = {id(p) for p in out_emb.parameters()}
    return [name for name, p in model.named_parameters()
            if not name.startswith(path + ".") and id(p) not in skip]


@contextmanager
def streamed(model: nn.Module, reader: ShardReader, device: str | torch.device, *,
             dtype: torch.dtype = torch.float32, head: bool = True) -> Iterator[nn.Module]:
    """Load the parameters outside the blocks, and each block only while it runs.

    Everything is back on the meta device when the ``with`` block ends, also on error.
    """
    path, blocks = find_blocks(model)
    handles = []
    try:
        materialize(model, "", reader, dtype=dtype, device=device, only=outside_blocks(model, head=head))
        if head and hasattr(model, "tie_weights") and getattr(model.config, "tie_word_embeddings", False):
            out_emb, in_emb = model.get_output_embeddings(), model.get_input_embeddings()
            if out_emb is not None and in_emb is not None:
                out_emb.weight = in_emb.weight
        for i, block in enumerate(blocks):
            prefix = f"{path}.{i}."

            def load(module, _args, _prefix=prefix):
                materialize(module, _prefix, reader, dtype=dtype, device=device)

            def free(module, _args, _out):
                release(module)

            handles.append(block.register_forward_pre_hook(load))
            handles.append(block.register_forward_hook(free))
        yield model
    finally:
        for handle in handles:
            handle.remove()
        release(model)
