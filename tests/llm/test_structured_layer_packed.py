"""Removing blocks of a model whose per-layer inputs are packed outside the blocks
(prunekit/llm/structured/layer_packed.py): Gemma 4 / Gemma 3n's ``embed_tokens_per_layer``
``[vocab, L * k]`` and ``per_layer_model_projection`` ``[L * k, hidden]`` lose the removed
layers' ``k``-wide chunks, the kept blocks get the per-layer inputs they got before, and the
model reloads in a fresh process with the same logits."""

import inspect
import sys
from pathlib import Path

import pytest
import torch

from prunekit.io import save_tensors
from prunekit.llm.blocks import find_blocks
from prunekit.llm.structured import remove_layers, save_pretrained_model
from prunekit.llm.structured.layer_packed import packed_alternatives, packed_dim, packed_indices
from tests.llm.conftest import fresh_reload_diff

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from llm_families_zoo import build, example_ids  # noqa: E402


def test_chunks_are_cut_per_layer_in_layer_order():
    # 4 layers of k = 3: layers 1 and 3 go, layers 0 and 2 keep their chunks in order
    assert packed_indices(12, 4, [1, 3]).tolist() == [0, 1, 2, 6, 7, 8]
    assert packed_alternatives((10, 12), 4, [1, 3]) == [(10, 6)]
    assert packed_dim((10, 12), (10, 6), 4, [1, 3]) == 1
    assert packed_dim((12, 10), (6, 10), 4, [1, 3]) == 0
    assert packed_dim((10, 12), (10, 9), 4, [1, 3]) is None  # not two layers' chunks
    assert packed_dim((12, 12), (6, 6), 4, [1, 3]) is None  # two dimensions changed
    assert packed_alternatives((10, 12), 4, [0, 1, 2, 3]) == []  # every layer: nothing to keep


def _per_layer_inputs(model, ids):
    """The ``per_layer_input`` each block receives, in block order."""
    seen = []
    _, blocks = find_blocks(model)

    def grab(module, args, kwargs):
        bound = inspect.signature(module.forward).bind(*args, **kwargs)
        seen.append(bound.arguments["per_layer_input"].clone())

    hooks = [b.register_forward_pre_hook(grab, with_kwargs=True) for b in blocks]
    with torch.no_grad():
        logits = model(input_ids=ids).logits
    for h in hooks:
        h.remove()
    return seen, logits


@pytest.mark.parametrize("family", ["gemma4_text", "gemma3n_text"])
def test_removing_a_block_cuts_its_per_layer_chunk_and_reloads(family, tmp_path):
    model = build(family)
    ids = example_ids()
    before, _ = _per_layer_inputs(model, ids)
    path, blocks = find_blocks(model)
    prefix = path.rpartition(".")[0] + "." if "." in path else ""
    embed = model.get_submodule(prefix + "embed_tokens_per_layer").weight
    k = model.config.hidden_size_per_layer_input
    assert tuple(embed.shape) == (128, 2 * k)
    kept_chunk = embed[:, k:].detach().clone()

    remove_layers(model, [0])

    assert len(find_blocks(model)[1]) == 1 and model.config.num_hidden_layers == 1
    embed = model.get_submodule(prefix + "embed_tokens_per_layer").weight
    proj = model.get_submodule(prefix + "per_layer_model_projection").weight
    assert tuple(embed.shape) == (128, k) and tuple(proj.shape) == (k, model.config.hidden_size)
    assert torch.equal(embed, kept_chunk)  # layer 1's chunk, not layer 0's
    after, logits = _per_layer_inputs(model, ids)
    assert (after[0] - before[1]).abs().max().item() <= 1e-6  # the kept block's input is unchanged
    assert (after[0] - before[0]).abs().max().item() > 1e-3  # and differs from the removed one's

    save_pretrained_model(model, tmp_path)
    save_tensors({"logits": logits.contiguous(), "input_ids": ids}, tmp_path / "expected.safetensors")
    assert fresh_reload_diff(tmp_path, plain=True) <= 1e-4


def test_two_of_four_blocks_keep_the_other_chunks_in_order(tmp_path):
    """Gemma 3n's tiny config made 4 layers deep (its per-layer lists repeated from the first
    entry): removing blocks 0 and 2 keeps chunks 1 and 3, in that order."""
    from llm_families_zoo import tiny_config
    from transformers import AutoModelForCausalLM

    values = tiny_config("gemma3n_text").to_dict()
    for key, value in list(values.items()):
        if isinstance(value, list) and len(value) == 2:
            values[key] = [value[0], value[0], value[0], value[1]]
    values["num_hidden_layers"] = 4
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(type(tiny_config("gemma3n_text")).from_dict(values)).eval()
    ids = example_ids()
    before, _ = _per_layer_inputs(model, ids)
    k = model.config.hidden_size_per_layer_input
    proj = model.model.per_layer_model_projection.weight.detach().clone()

    remove_layers(model, [0, 2])

    assert torch.equal(model.model.per_layer_model_projection.weight, torch.cat([proj[k:2 * k], proj[3 * k:]]))
    after, logits = _per_layer_inputs(model, ids)
    assert max((a - b).abs().max().item() for a, b in zip(after, [before[1], before[3]])) <= 1e-6
    save_pretrained_model(model, tmp_path)
    save_tensors({"logits": logits.contiguous(), "input_ids": ids}, tmp_path / "expected.safetensors")
    assert fresh_reload_diff(tmp_path, plain=True) <= 1e-4
