"""Structured pruning of Hugging Face encoders / decoders through the generic tracer:
BERT-like attention (attention_head_size), GPT-2 (Conv1D, fused c_attn) and HF ViT."""

import pytest
import torch
from torch import nn

transformers = pytest.importorskip("transformers")
from structured_helpers import check_equivalence  # noqa: E402

from prunekit.structured import StructuredConfig, prune_channels_  # noqa: E402


class MainOutput(nn.Module):
    """The model's first output as a plain tensor (what the equivalence check compares)."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model(x)[0]


def _bert():
    return transformers.BertModel(transformers.BertConfig(
        hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128,
        vocab_size=100, max_position_embeddings=64)), torch.randint(0, 100, (2, 12))


def _gpt2():
    return transformers.GPT2LMHeadModel(transformers.GPT2Config(
        n_layer=2, n_embd=64, n_head=4, vocab_size=100, n_positions=64)), torch.randint(0, 100, (2, 12))


def _vit():
    return transformers.ViTModel(transformers.ViTConfig(
        hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128,
        image_size=32, patch_size=8)), torch.randn(2, 3, 32, 32)


CASES = {"bert": _bert, "gpt2": _gpt2, "vit": _vit}


@pytest.mark.parametrize("name", sorted(CASES))
def test_dead_units_prune_to_identical_outputs(name):
    torch.manual_seed(0)
    model, x = CASES[name]()
    stats = check_equivalence(MainOutput(model.eval()), x)
    assert stats["groups"] >= 2
    assert stats["params_after"] < stats["params_before"]


def test_bert_head_size_follows_pruned_head_dims_and_value_matches_query():
    torch.manual_seed(0)
    model, x = _bert()
    prune_channels_(model.eval(), x, StructuredConfig(ratio=0.5))
    for layer in model.encoder.layer:
        att = layer.attention.self
        assert att.query.out_features == att.key.out_features == att.value.out_features
        assert att.attention_head_size * att.num_attention_heads == att.all_head_size == att.query.out_features
        assert att.attention_head_size == 8  # 16 -> 8 per head, 4 heads kept
        assert layer.intermediate.dense.out_features == 64
    assert model(x)[0].shape == (2, 12, 64)


def test_gpt2_prunes_mlp_and_keeps_fused_qkv():
    torch.manual_seed(0)
    model, x = _gpt2()
    prune_channels_(model.eval(), x, StructuredConfig(ratio=0.5))
    block = model.transformer.h[0]
    assert block.mlp.c_fc.nf == block.mlp.c_fc.weight.shape[1] == 128
    assert block.attn.c_attn.weight.shape[1] == 3 * block.attn.split_size
    assert model(x).logits.shape == (2, 12, 100)
