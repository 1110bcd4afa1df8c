import pytest
import torch

from prunekit.errors import ConfigError
from prunekit.llm.blocks import find_blocks, find_linears, weight_2d
from prunekit.llm.calibration import calibration_windows
from prunekit.llm.config import LLMPruneConfig
from prunekit.llm.hooks import collect_input_stats
from prunekit.llm.prune import block_sparsity, prune_llm
from prunekit.llm.sequential import block_output, sequential_blocks
from tests.llm.conftest import CAUSAL, ENCODERS, example_inputs, tiny_llama


@pytest.mark.parametrize("family", sorted(CAUSAL))
@pytest.mark.parametrize("method,pattern", [("magnitude", None), ("wanda", "2:4"), ("sparsegpt", None)])
def test_prune_llm_hits_sparsity_and_leaves_embeddings_and_head(family, method, pattern):
    model = CAUSAL[family]()
    emb_before = model.get_input_embeddings().weight.clone()
    head_before = model.get_output_embeddings().weight.clone()
    windows = torch.randint(0, 128, (4, 32), generator=torch.Generator().manual_seed(0))
    result = prune_llm(model, windows, LLMPruneConfig(method, 0.5, pattern=pattern), progress=False)
    assert result.measured_sparsity == pytest.approx(0.5, abs=0.01)
    assert torch.equal(model.get_input_embeddings().weight, emb_before)
    assert torch.equal(model.get_output_embeddings().weight, head_before)
    if pattern:
        for block in find_blocks(model)[1]:
            for lin in find_linears(block).values():
                w = weight_2d(lin)
                assert ((w.reshape(w.shape[0], -1, 4) != 0).sum(-1) <= 2).all()


@pytest.mark.parametrize("family", sorted(ENCODERS))
def test_prune_encoders_with_batches(family):
    model = ENCODERS[family]()
    batches = [example_inputs(family, seed) for seed in range(2)]
    r = prune_llm(model, batches, LLMPruneConfig("sparsegpt", 0.5), progress=False)
    assert r.measured_sparsity == pytest.approx(0.5, abs=0.01)


def test_calibration_is_sequential_pruned_outputs_feed_the_next_block():
    model = tiny_llama()
    windows = torch.randint(0, 128, (2, 16), generator=torch.Generator().manual_seed(0))
    batches = [{"input_ids": windows, "use_cache": False}]
    seen_inputs = []
    for index, block, run in sequential_blocks(model, batches):
        grabbed = []
        handle = block.register_forward_pre_hook(lambda m, a, kw: grabbed.append(a[0] if a else kw["hidden_states"]), with_kwargs=True)
        run()
        handle.remove()
        seen_inputs.append(grabbed[0])
        with torch.no_grad():
            for lin in find_linears(block).values():
                lin.weight.mul_(0.5)  # "prune" the block
    # block 1 must have seen the output of the modified block 0
    _, blocks = find_blocks(model)
    kwargs = {}
    captured = {}

    def grab(m, a, kw):
        captured.update(kw)

    h = blocks[0].register_forward_pre_hook(grab, with_kwargs=True)
    with torch.no_grad():
        model(input_ids=windows, use_cache=False)
    h.remove()
    kwargs = {k: v for k, v in captured.items() if k in ("position_embeddings", "attention_mask", "position_ids")}
    with torch.no_grad():
        expected = block_output(blocks[0](seen_inputs[0], **kwargs))
    assert torch.allclose(seen_inputs[1], expected, atol=1e-5)


def test_hooks_are_removed_even_on_error():
    model = tiny_llama()
    linears = find_linears(find_blocks(model)[1][0])
    with pytest.raises(RuntimeError, match="boom"):
        with collect_input_stats(linears, gram=True):
            raise RuntimeError("boom")
    assert all(not m._forward_hooks for m in linears.values())


def test_bad_config_and_bad_pattern_leave_model_untouched():
    with pytest.raises(ConfigError, match="sparsity"):
        LLMPruneConfig("wanda", 1.5)
    with pytest.raises(ConfigError, match="5:4"):
        LLMPruneConfig("wanda", pattern="5:4")
    with pytest.raises(ConfigError, match="method"):
        LLMPruneConfig("obs")
    model = tiny_llama()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ConfigError, match="multiple of m=48"):
        prune_llm(model, torch.zeros(1, 8, dtype=torch.long), LLMPruneConfig("wanda", pattern="1:48"), progress=False)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert block_sparsity(model) == 0.0


def test_owl_gives_non_uniform_layers_averaging_the_target():
    model = tiny_llama()
    windows = torch.randint(0, 128, (2, 32), generator=torch.Generator().manual_seed(0))
    r = prune_llm(model, windows, LLMPruneConfig("wanda", 0.5, owl=True, owl_lambda=0.1), progress=False)
    assert sum(r.layer_sparsity) / len(r.layer_sparsity) == pytest.approx(0.5)
    assert max(r.layer_sparsity) - min(r.layer_sparsity) == pytest.approx(0.2)


def test_calibration_windows_errors_and_shape():
    from prunekit.errors import DatasetError

    with pytest.raises(DatasetError, match="fewer than one window"):
        calibration_windows(torch.arange(10), nsamples=2, seqlen=16)
    w = calibration_windows(torch.arange(1000), nsamples=3, seqlen=16, seed=5)
    assert w.shape == (3, 16) and torch.equal(w, calibration_windows(torch.arange(1000), 3, 16, 5))


def test_layers_fed_the_same_input_share_identical_statistics():
    model = tiny_llama()
    block = find_blocks(model)[1][0]
    linears = find_linears(block)
    windows = torch.randint(0, 128, (2, 16), generator=torch.Generator().manual_seed(0))
    for _i, blk, run in sequential_blocks(model, [{"input_ids": windows, "use_cache": False}]):
        with collect_input_stats(linears, gram=True) as stats:
            run()
        break
    assert stats["self_attn.q_proj"] is stats["self_attn.k_proj"] is stats["self_attn.v_proj"]
    assert stats["mlp.gate_proj"] is stats["mlp.up_proj"]
    assert stats["self_attn.o_proj"] is not stats["self_attn.q_proj"]
    # shared statistics equal separately gathered ones
    with collect_input_stats({"k": linears["self_attn.k_proj"]}, gram=True) as alone:
        run()
    assert torch.allclose(alone["k"].gram, stats["self_attn.k_proj"].gram, rtol=1e-5, atol=1e-4)
    assert alone["k"].tokens == stats["self_attn.q_proj"].tokens == 32
