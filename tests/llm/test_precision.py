"""Calibration precision: bf16 autocast of the block forwards, float32 statistics."""

import pytest
import torch

from prunekit.errors import ConfigError
from prunekit.llm.blocks import find_blocks, find_linears
from prunekit.llm.config import LLMPruneConfig
from prunekit.llm.hooks import InputStats
from prunekit.llm.precision import calibration_autocast, fast_bf16, resolve_calib_dtype
from prunekit.llm.prune import prune_llm
from prunekit.llm.sequential import BlockInputs, BlockRun
from tests.llm.conftest import tiny_llama


def test_resolve_calib_dtype_follows_the_choice_the_device_and_the_model_dtype():
    assert resolve_calib_dtype("float32", "cpu") is None
    assert resolve_calib_dtype("bfloat16", "cpu") is torch.bfloat16
    auto = resolve_calib_dtype("auto", "cpu")
    assert auto is (torch.bfloat16 if fast_bf16("cpu") else None)
    assert resolve_calib_dtype("auto", "cpu", torch.bfloat16) is None  # only float32 models are autocast
    assert resolve_calib_dtype("auto", "meta") is None and not fast_bf16("meta")
    with pytest.raises(ValueError, match="calib_dtype"):
        resolve_calib_dtype("fp8", "cpu")
    with pytest.raises(ConfigError, match="calib_dtype"):
        LLMPruneConfig(calib_dtype="half")


def test_calibration_autocast_runs_products_in_bf16_and_nothing_without_a_dtype():
    x, w = torch.randn(4, 8), torch.randn(3, 8)
    with calibration_autocast(None, "cpu"):
        assert torch.nn.functional.linear(x, w).dtype == torch.float32
    with calibration_autocast(torch.bfloat16, "cpu"):
        y = torch.nn.functional.linear(x, w)
    assert y.dtype == torch.bfloat16
    torch.testing.assert_close(y.float(), x @ w.T, rtol=0.02, atol=0.05)


def test_input_stats_sum_bf16_inputs_in_float32_over_several_slices():
    x = torch.randn(3, 700, 96, generator=torch.Generator().manual_seed(0)).bfloat16()  # 2100 tokens: 2+ slices
    stats = InputStats(96, gram=True)
    stats.accumulate(x)
    flat = x.reshape(-1, 96).double()
    assert stats.tokens == 2100 and stats.sq_norm.dtype == torch.float32
    torch.testing.assert_close(stats.sq_norm.double(), (flat * flat).sum(0), rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(stats.gram.double(), flat.T @ flat, rtol=1e-5, atol=1e-3)


def test_block_run_under_autocast_keeps_the_hidden_states_float32_and_close_to_float32():
    model = tiny_llama(seed=3).eval()
    block = find_blocks(model)[1][0]
    hidden = torch.randn(2, 16, 64, generator=torch.Generator().manual_seed(1))
    pos = torch.arange(16)[None]
    kwargs = {"position_embeddings": model.model.rotary_emb(hidden, pos), "position_ids": pos}
    outs = {}
    for dtype in (None, torch.bfloat16):
        run = BlockRun(block, BlockInputs([hidden.clone()], [()], [dict(kwargs)]), autocast=dtype)
        run.advance()
        outs[dtype] = run.inputs.hidden[0]
    assert outs[torch.bfloat16].dtype == torch.float32
    assert not torch.equal(outs[None], outs[torch.bfloat16])  # the products really ran in bf16
    torch.testing.assert_close(outs[torch.bfloat16], outs[None], rtol=0.05, atol=0.05)


@pytest.mark.parametrize("method", ["wanda", "sparsegpt"])
def test_bf16_calibration_gives_nearly_the_float32_masks_at_the_exact_sparsity(method):
    windows = torch.randint(0, 128, (8, 32), generator=torch.Generator().manual_seed(0))
    models = {d: tiny_llama(seed=1).eval() for d in ("float32", "bfloat16")}
    for dtype, model in models.items():
        r = prune_llm(model, windows, LLMPruneConfig(method, 0.5, calib_dtype=dtype), progress=False)
        assert r.measured_sparsity == pytest.approx(0.5)

    def masks(model):
        return torch.cat([(lin.weight != 0).flatten() for b in find_blocks(model)[1]
                          for lin in find_linears(b).values()])

    agree = (masks(models["float32"]) == masks(models["bfloat16"])).float().mean().item()
    assert agree > 0.99  # a few near-ties flip (0.999 here); the choice is the same otherwise
    assert all(p.dtype == torch.float32 for p in models["bfloat16"].parameters())


class _InPlaceAdapter(torch.nn.Module):
    """Writes a linear's product into a float32 tensor in place (X-MOD's language adapters)."""

    def __init__(self) -> None:
        super().__init__()
        self.emb, self.lin = torch.nn.Embedding(32, 8), torch.nn.Linear(8, 8)

    def forward(self, input_ids, use_cache=False):
        h = self.emb(input_ids)
        out = torch.zeros_like(h)
        mask = input_ids > 0
        out[mask] = self.lin(h[mask])
        return out


def test_auto_falls_back_to_float32_where_autocast_breaks_the_forward(monkeypatch):
    from prunekit.llm import prune as prune_module
    from prunekit.llm.precision import autocast_breaks

    batch = {"input_ids": torch.randint(1, 32, (2, 12)), "use_cache": False}
    assert autocast_breaks(_InPlaceAdapter(), batch, torch.bfloat16)
    assert not autocast_breaks(tiny_llama(), {"input_ids": torch.randint(3, 128, (2, 12))}, torch.bfloat16)
    monkeypatch.setattr("prunekit.llm.precision.fast_bf16", lambda device: True)
    auto, forced = LLMPruneConfig(method="wanda", sparsity=0.5), LLMPruneConfig(method="wanda", sparsity=0.5,
                                                                               calib_dtype="bfloat16")
    assert prune_module.calib_autocast(_InPlaceAdapter(), auto, batch) is None
    assert prune_module.calib_autocast(_InPlaceAdapter(), forced, batch) == torch.bfloat16   # the user's choice
    assert prune_module.calib_autocast(tiny_llama(), auto, {"input_ids": torch.randint(3, 128, (1, 8))}) \
        == torch.bfloat16
