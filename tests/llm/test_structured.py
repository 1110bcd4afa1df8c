import pytest
import torch

from prunekit.errors import ModelError
from prunekit.llm.blocks import find_blocks
from prunekit.llm.structured import (
    LAYER_SHAPES_FIELD,
    StructuredConfig,
    layer_shapes,
    load_pruned,
    prune_heads,
    prune_mlp_neurons,
    remove_layers,
    save_pretrained_model,
    structured_prune,
)
from prunekit.llm.structured.families import block_layout, head_counts, head_dim
from tests.llm.conftest import CAUSAL, ENCODERS, example_inputs, main_output, transformers

FAMILIES = {**CAUSAL, **ENCODERS}


def _auto(family):
    return transformers.AutoModelForCausalLM if family in CAUSAL else transformers.AutoModel


def _zero_head_group(model, layer, group):
    """Zero the output-projection columns of one head group (so it contributes nothing)."""
    from prunekit.llm.blocks import weight_2d

    block = find_blocks(model)[1][layer]
    lay = block_layout(block)
    hd = head_dim(block, lay)
    heads, kv = head_counts(block, lay)
    per = heads // kv
    with torch.no_grad():
        weight_2d(block.get_submodule(lay.o))[:, group * per * hd : (group + 1) * per * hd] = 0


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_removing_heads_whose_output_projection_is_zero_keeps_outputs(family):
    model = FAMILIES[family]().eval()
    x = example_inputs(family)
    _zero_head_group(model, 0, 1)
    before = main_output(model, x)
    prune_heads(model, {0: [1]})
    heads, kv = head_counts(find_blocks(model)[1][0], block_layout(find_blocks(model)[1][0]))
    assert kv == (1 if family in ("llama", "qwen2", "mistral") else 3)
    assert heads == (2 if family in ("llama", "qwen2", "mistral") else 3)  # GQA: 2 query heads per group
    assert torch.allclose(main_output(model, x), before, atol=1e-5)


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_removing_mlp_neurons_with_zero_output_weights_keeps_outputs(family):
    from prunekit.llm.blocks import weight_2d

    model = FAMILIES[family]().eval()
    x = example_inputs(family)
    block = find_blocks(model)[1][1]
    with torch.no_grad():
        weight_2d(block.get_submodule(block_layout(block).mlp_in))[:, [0, 7, 9]] = 0
    before = main_output(model, x)
    prune_mlp_neurons(model, {1: [0, 7, 9]})
    assert layer_shapes(model)[1]["intermediate_size"] == layer_shapes(model)[0]["intermediate_size"] - 3
    assert torch.allclose(main_output(model, x), before, atol=1e-5)


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_structured_round_trip_non_uniform_and_layers(family, tmp_path):
    model = FAMILIES[family]().eval()
    x = example_inputs(family)
    prune_heads(model, {0: [1]})
    prune_mlp_neurons(model, {1: [0, 3, 5]})
    assert getattr(model.config, LAYER_SHAPES_FIELD)
    expected = main_output(model, x)
    save_pretrained_model(model, tmp_path / "a")
    again = load_pruned(tmp_path / "a", _auto(family))
    assert type(again) is type(model)
    assert layer_shapes(again) == layer_shapes(model)
    assert torch.allclose(main_output(again, x), expected, atol=1e-5)
    remove_layers(again, [0])
    expected = main_output(again, x)
    save_pretrained_model(again, tmp_path / "b")
    third = load_pruned(tmp_path / "b", _auto(family))
    assert third.config.num_hidden_layers == 1
    assert torch.allclose(main_output(third, x), expected, atol=1e-5)


@pytest.mark.parametrize("family", ["llama", "qwen2", "mistral"])
def test_uniform_structured_llama_family_reloads_with_plain_from_pretrained(family, tmp_path):
    model = FAMILIES[family]().eval()
    x = example_inputs(family)
    batches = [x]
    plan = structured_prune(model, batches, StructuredConfig(heads=0.5, mlp=0.25, layers=1))
    assert len(plan["layers"]) == 1 and all(len(v) == 1 for v in plan["heads"].values())
    assert not hasattr(model.config, LAYER_SHAPES_FIELD)
    assert model.config.num_key_value_heads == 1 and model.config.intermediate_size == 96
    expected = main_output(model, x)
    save_pretrained_model(model, tmp_path)
    plain = transformers.AutoModelForCausalLM.from_pretrained(str(tmp_path)).eval()
    assert torch.allclose(main_output(plain, x), expected, atol=1e-5)
    # generation with a KV cache still works after removing a layer and a KV group
    out = plain.generate(input_ids=x["input_ids"][:1, :5], max_new_tokens=3, do_sample=False)
    assert out.shape == (1, 8)


def test_global_scope_gives_non_uniform_widths():
    model = CAUSAL["gpt2"]().eval()
    structured_prune(model, [example_inputs("gpt2")], StructuredConfig(mlp=0.5, scope="global"))
    widths = [s["intermediate_size"] for s in layer_shapes(model)]
    assert sum(widths) == 256  # half of the 2 x 256 neurons, ranked across blocks


def test_bad_structured_requests_are_model_errors_and_change_nothing():
    model = CAUSAL["llama"]()
    before = layer_shapes(model)
    with pytest.raises(ModelError, match="cannot remove all"):
        prune_heads(model, {0: [0, 1]})
    with pytest.raises(ModelError, match="out of range"):
        prune_mlp_neurons(model, {0: [1000]})
    with pytest.raises(ModelError, match="block index 5"):
        prune_heads(model, {5: [0]})
    assert layer_shapes(model) == before
