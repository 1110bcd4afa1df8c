"""Sequential calibration gives every block its own call: a model whose layer types get
different rotary tables, masks or head widths (Gemma's sliding and global layers) calibrates
each block with what the model itself passes it."""

import pytest
import torch

from prunekit.llm import LLMPruneConfig, prune_llm
from prunekit.llm.blocks import find_blocks
from prunekit.llm.sequential import _same, block_output, capture_block_inputs, sequential_blocks

transformers = pytest.importorskip("transformers")


def _tiny_gemma3(seed: int = 0):
    torch.manual_seed(seed)
    cfg = transformers.Gemma3TextConfig(
        hidden_size=64, intermediate_size=96, num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=2,
        head_dim=16, vocab_size=128, max_position_embeddings=128, sliding_window=4,
        layer_types=["sliding_attention", "full_attention", "sliding_attention"])
    return transformers.Gemma3ForCausalLM(cfg).eval()


def _real_calls(model, blocks, ids):
    """Each block's keyword arguments in a real forward."""
    seen = {}
    handles = [b.register_forward_pre_hook(lambda _m, _a, kw, i=i: seen.setdefault(i, kw) and None, with_kwargs=True)
               for i, b in enumerate(blocks)]
    try:
        with torch.no_grad():
            model(input_ids=ids, use_cache=False)
    finally:
        for h in handles:
            h.remove()
    return seen


def test_each_block_gets_its_own_call():
    model = _tiny_gemma3()
    _, blocks = find_blocks(model)
    ids = torch.randint(3, 128, (2, 12), generator=torch.Generator().manual_seed(1))
    captured = capture_block_inputs(model, blocks, [{"input_ids": ids, "use_cache": False}], per_block=True)
    assert sorted(captured.calls) == [1]  # the global layer; the second sliding one matches block 0
    real = _real_calls(model, blocks, ids)
    for i in range(3):
        kw = captured.for_block(i).kwargs[0]
        cos, real_cos = kw["position_embeddings"][0], real[i]["position_embeddings"][0]
        assert torch.equal(cos, real_cos)
        assert _same(kw["attention_mask"], real[i]["attention_mask"]) or torch.equal(
            kw["attention_mask"], real[i]["attention_mask"])
    # the global layer's rotary table differs from the sliding layers' (another theta)
    assert (captured.for_block(1).kwargs[0]["position_embeddings"][0]
            - captured.kwargs[0]["position_embeddings"][0]).abs().max() > 1e-3
    assert all(type(b).__name__ == "Gemma3DecoderLayer" for b in blocks)  # the real blocks are back


def test_sequential_block_outputs_match_the_real_forward():
    """Walking the (unpruned) blocks one by one with the recorded calls reproduces every block's
    output in a real forward, the global layer's included (max |diff| <= 1e-5)."""
    model = _tiny_gemma3()
    _, blocks = find_blocks(model)
    ids = torch.randint(3, 128, (2, 12), generator=torch.Generator().manual_seed(3))
    real = {}
    handles = [b.register_forward_hook(lambda _m, _i, out, i=i: (real.setdefault(i, block_output(out)), None)[1])
               for i, b in enumerate(blocks)]
    with torch.no_grad():
        model(input_ids=ids, use_cache=False)
    for h in handles:
        h.remove()
    for i, _block, run in sequential_blocks(model, [{"input_ids": ids, "use_cache": False}]):
        out = run(keep_outputs=True)[0]
        assert (out - real[i]).abs().max().item() <= 1e-5, i


def test_wanda_runs_on_mixed_layer_types():
    model = _tiny_gemma3()
    calib = torch.randint(3, 128, (4, 16), generator=torch.Generator().manual_seed(2))
    prune_llm(model, calib, LLMPruneConfig(method="wanda", sparsity=0.5, batch_size=4), progress=False)
    weights = [p for n, p in model.named_parameters() if "layers" in n and p.dim() == 2]
    zeros = sum(int((p == 0).sum()) for p in weights) / sum(p.numel() for p in weights)
    assert abs(zeros - 0.5) < 0.01
    with torch.no_grad():
        assert torch.isfinite(model(input_ids=calib[:1], use_cache=False).logits).all()
