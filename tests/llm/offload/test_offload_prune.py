"""Out-of-core pruning gives the very weights of in-memory pruning (torch.equal)."""

import json
import os
import warnings

import pytest
import torch

from prunekit.errors import ConfigError, ModelError
from prunekit.llm import LLMPruneConfig, prune_llm
from prunekit.llm.offload import OutOfCoreConfig, ShardReader, prune_llm_out_of_core
from tests.llm.conftest import tiny_llama, transformers


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny")
    tiny_llama().save_pretrained(str(path))
    return path


@pytest.fixture(scope="module")
def sharded(tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny-sharded")
    tiny_llama().save_pretrained(str(path), max_shard_size="60KB")
    return path


def _windows(seed=3, n=6, length=24):
    return torch.randint(0, 128, (n, length), generator=torch.Generator().manual_seed(seed))


def _in_memory(folder, config, windows):
    model = transformers.AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32).eval()
    prune_llm(model, windows, config, progress=False)
    return model


def _assert_identical(model, out):
    reloaded = transformers.AutoModelForCausalLM.from_pretrained(str(out), dtype=torch.float32)
    expected = model.state_dict()
    got = reloaded.state_dict()
    assert set(expected) == set(got)
    for name, value in expected.items():
        assert torch.equal(value, got[name]), name


@pytest.mark.parametrize(
    "config, spill",
    [
        (LLMPruneConfig("wanda", 0.5, batch_size=4), "memory"),
        (LLMPruneConfig("wanda", 0.5, batch_size=4), "disk"),
        (LLMPruneConfig("sparsegpt", 0.6, batch_size=4, blocksize=32), "disk"),
        (LLMPruneConfig("sparsegpt", pattern="2:4", batch_size=4), "auto"),
        (LLMPruneConfig("magnitude", 0.5), "auto"),
        (LLMPruneConfig("wanda", pattern="4:8", reconstruct="layer", batch_size=4), "disk"),
        (LLMPruneConfig("sparsegpt", pattern="2:4", permute=True, batch_size=4), "disk"),
        (LLMPruneConfig("wanda", 0.5, reconstruct="layer+block", block_steps=3, batch_size=4), "disk"),
        (LLMPruneConfig("wanda", pattern="2:4", permute=True, reconstruct="block", block_steps=2,
                        batch_size=4, single_pass_mb=0), "memory"),
        (LLMPruneConfig("sparsegpt", 0.5, batch_size=4, single_pass_mb=0), "disk"),
        (LLMPruneConfig("magnitude", 0.5, reconstruct="layer", batch_size=4), "auto"),
    ],
    ids=["wanda-memory", "wanda-disk", "sparsegpt-disk", "sparsegpt-2:4", "magnitude", "wanda-4:8-reconstruct",
         "sparsegpt-2:4-permute", "wanda-layer+block", "wanda-2:4-permute-block-two-pass", "sparsegpt-two-pass",
         "magnitude-reconstruct"],
)
def test_out_of_core_equals_in_memory(folder, tmp_path, config, spill):
    windows = _windows()
    expected = _in_memory(folder, config, windows)
    out = tmp_path / "out"
    result = prune_llm_out_of_core(folder, out, windows, config,
                                   OutOfCoreConfig(max_memory="2GB", spill=spill, scratch_dir=str(tmp_path)),
                                   progress=False)
    _assert_identical(expected, out)
    assert result.spilled == (spill == "disk")
    assert result.measured_sparsity == pytest.approx(config.target_sparsity, abs=0.01)
    index = json.loads((out / "model.safetensors.index.json").read_text())
    # one shard per block, one per tensor outside the blocks (embeddings, final norm, head)
    assert len(set(index["weight_map"].values())) == 2 + 3
    # spilled activations are deleted afterwards
    assert not [p for p in os.listdir(tmp_path) if p.startswith("prunekit-activations-")]


def test_single_pass_decision_is_shared_and_checked_against_the_budget(folder, tmp_path):
    from prunekit.llm.offload.activations import ActivationStore
    from prunekit.llm.offload.prune import _check_single_pass_room
    from prunekit.llm.sequential import BlockInputs, BlockRun
    from prunekit.llm.single_pass import can_single_pass

    model = _in_memory(folder, LLMPruneConfig("magnitude", 0.5), None)
    block = model.model.layers[0]
    hidden = [torch.randn(8, 64, 64), torch.randn(4, 64, 64)]  # 768 tokens: ~3 MB merged
    store = ActivationStore(folder=str(tmp_path))
    for h in hidden:
        store.append(h)
    args, kwargs = [(), ()], [{}, {}]
    config = LLMPruneConfig("wanda", 0.5)
    # the very decision from tensors in memory and from the spilled store (read without loading)
    for mb in (0, 1, 4):
        cfg = LLMPruneConfig("wanda", 0.5, single_pass_mb=mb)
        in_memory = can_single_pass(block, BlockRun(block, BlockInputs(list(hidden), args, kwargs)), cfg)
        assert can_single_pass(block, BlockRun(block, BlockInputs(store, args, kwargs)), cfg) == in_memory
        assert in_memory == (mb == 4)
    with pytest.warns(RuntimeWarning, match="single_pass_mb below 3 "):
        _check_single_pass_room(store, args, kwargs, model.model.layers, config, room=1000)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _check_single_pass_room(store, args, kwargs, model.model.layers,
                                LLMPruneConfig("wanda", 0.5, single_pass_mb=0), room=1000)
        _check_single_pass_room(store, args, kwargs, model.model.layers, config, room=2**40)
    store.close()


def test_sharded_input_and_perplexity_equal(sharded, tmp_path):
    from prunekit.llm.evaluate import perplexity
    from prunekit.llm.offload import empty_model, streamed

    assert len(set(ShardReader(sharded).files.values())) > 1
    windows = _windows(seed=5)
    config = LLMPruneConfig("sparsegpt", 0.5, batch_size=2)
    expected = _in_memory(sharded, config, windows)
    out = tmp_path / "out"
    prune_llm_out_of_core(sharded, out, windows, config, OutOfCoreConfig(spill="disk", scratch_dir=str(tmp_path)),
                          progress=False)
    _assert_identical(expected, out)
    ids = _windows(seed=9, n=1, length=100).reshape(-1)
    ppl_memory = perplexity(expected, ids, window=32, stride=16)
    model = empty_model(out)
    with streamed(model, ShardReader(out), "cpu"):
        ppl_streamed = perplexity(model, ids, window=32, stride=16)
    assert ppl_streamed == ppl_memory
    assert all(p.device.type == "meta" for p in model.parameters())  # everything freed again


def test_budget_below_one_block_is_an_error_naming_max_memory(folder, tmp_path):
    with pytest.raises(ConfigError, match="max_memory 0.00 GB is below what one block"):
        prune_llm_out_of_core(folder, tmp_path / "o", _windows(), LLMPruneConfig("wanda", 0.5),
                              OutOfCoreConfig(max_memory="100KB"), progress=False)
    assert not (tmp_path / "o").exists()  # nothing half-written


def test_owl_and_missing_weights_are_errors(folder, tmp_path):
    with pytest.raises(ConfigError, match="owl"):
        prune_llm_out_of_core(folder, tmp_path / "o", _windows(), LLMPruneConfig("wanda", 0.5, owl=True))
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "config.json").write_text((folder / "config.json").read_text())
    with pytest.raises(ModelError, match="safetensors"):
        prune_llm_out_of_core(empty, tmp_path / "o", _windows(), LLMPruneConfig("wanda", 0.5))
