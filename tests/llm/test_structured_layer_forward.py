"""The forward check of a block removal: the pruned model against the model its config rebuilds."""

import copy

import torch

from prunekit.llm.structured.layer_forward import removal_logits_gap
from tests.llm.conftest import tiny_llama, transformers


def test_a_config_that_rebuilds_the_pruned_model_has_no_logit_gap():
    model = tiny_llama()
    config = copy.deepcopy(model.config)
    config.num_hidden_layers = 1
    before = {k: v.clone() for k, v in model.state_dict().items()}
    for drop in ([0], [1]):
        assert removal_logits_gap(model, "model.layers", drop, config) <= 1e-6
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # nothing changed


def test_a_config_that_rebuilds_another_model_shows_a_gap_and_one_that_cannot_run_none():
    model = tiny_llama()
    wrong = copy.deepcopy(model.config)
    wrong.num_hidden_layers, wrong.rms_norm_eps = 1, 10.0  # same shapes, other numbers
    assert removal_logits_gap(model, "model.layers", [1], wrong) > 1e-3
    deeper = copy.deepcopy(model.config)  # a rebuild with a block the pruned model does not hold
    assert removal_logits_gap(model, "model.layers", [1], deeper) is None


def test_a_reading_whose_kept_block_fails_is_not_comparable():
    torch.manual_seed(0)
    cfg = transformers.Mamba2Config(hidden_size=32, num_hidden_layers=2, num_heads=4, head_dim=16, state_size=8,
                                    n_groups=1, chunk_size=8, vocab_size=64, time_step_limit=(0.0, float("inf")))
    model = transformers.Mamba2ForCausalLM(cfg)
    whole, cut = copy.deepcopy(model.config), copy.deepcopy(model.config)
    whole.num_hidden_layers = cut.num_hidden_layers = 1
    cut.time_step_limit = (float("inf"),)
    assert removal_logits_gap(model, "backbone.layers", [0], whole) <= 1e-6
    assert removal_logits_gap(model, "backbone.layers", [0], cut) is None
