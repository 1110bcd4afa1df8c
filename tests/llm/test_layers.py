"""Layers spread over parallel lists (XLM): found from structure, calibrated by whole-model runs."""

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from prunekit.errors import UnsupportedOpError
from prunekit.llm import LLMPruneConfig, prune_llm
from prunekit.llm.blocks import find_blocks, find_linears
from prunekit.llm.hooks import collect_input_stats
from prunekit.llm.layers import ParallelLayer, block_prefix, find_layers, is_parallel
from prunekit.llm.sequential import sequential_blocks
from prunekit.llm.structured import save_pretrained_model
from tests.llm.conftest import main_output

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCH))
from llm_families_zoo import build, example_ids  # noqa: E402

IDS = {"input_ids": example_ids(length=12)}
CALIB = [{"input_ids": example_ids(seed=2, batch=4, length=16)}]


def test_parallel_lists_become_layer_views_named_as_in_the_model():
    model = build("xlm")
    path, layers = find_layers(model)
    assert path == "transformer.attentions" and is_parallel(layers) and len(layers) == 2
    assert isinstance(layers[1], ParallelLayer) and block_prefix(path, layers, 1) == "transformer"
    names = sorted(find_linears(layers[1]))
    assert names == ["attentions.1.k_lin", "attentions.1.out_lin", "attentions.1.q_lin", "attentions.1.v_lin",
                     "ffns.1.lin1", "ffns.1.lin2"]
    for name, module in find_linears(layers[1]).items():
        assert model.get_submodule(f"transformer.{name}") is module
    assert not any("attentions" in k and k.count(".") > 4 for k in model.state_dict())  # views never join the model
    with pytest.raises(UnsupportedOpError, match="parallel lists"):
        layers[0](torch.zeros(1, 2, 64))


def test_a_one_module_layer_keeps_the_block_list():
    model = build("llama")
    path, layers = find_layers(model)
    assert (path, layers) == find_blocks(model) and not is_parallel(layers)
    assert block_prefix(path, layers, 1) == "model.layers.1"


def test_calibration_of_layer_1_sees_its_inputs_in_the_model():
    model = build("xlm").eval()
    _, layers = find_layers(model)
    watched = find_linears(layers[1])
    with collect_input_stats({f"transformer.{k}": v for k, v in watched.items()}, gram=False) as direct:
        with torch.no_grad():
            model(**CALIB[0])
    for index, layer, run in sequential_blocks(model, CALIB):
        if index == 1:
            with collect_input_stats(find_linears(layer), gram=False) as stats:
                run()
    for name in watched:  # layer 0 dense: the run's inputs are the dense model's
        diff = (stats[name].sq_norm - direct[f"transformer.{name}"].sq_norm).abs().max().item()
        assert diff <= 1e-5, (name, diff)
    assert stats["ffns.1.lin2"].sq_norm.numel() == 256


def test_wanda_half_prunes_attention_and_ffn_and_reloads(tmp_path):
    model = build("xlm").eval()
    result = prune_llm(model, CALIB, LLMPruneConfig("wanda", 0.5), progress=False)
    assert result.measured_sparsity == pytest.approx(0.5, abs=1e-6)
    for name in ("transformer.ffns.0.lin1", "transformer.ffns.1.lin2", "transformer.attentions.1.q_lin"):
        w = model.get_submodule(name).weight
        assert (w == 0).float().mean().item() == pytest.approx(0.5, abs=1e-6), name
    expected = main_output(model, IDS)
    save_pretrained_model(model, tmp_path)
    torch.save(IDS["input_ids"], tmp_path / "ids.pt")
    code = textwrap.dedent(f"""
        import torch, transformers
        m = transformers.AutoModelForCausalLM.from_pretrained({str(tmp_path)!r}).eval()
        with torch.no_grad():
            out = m(input_ids=torch.load({str(tmp_path / 'ids.pt')!r})).logits
        torch.save(out, {str(tmp_path / 'out.pt')!r})
    """)
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
    assert (torch.load(tmp_path / "out.pt") - expected).abs().max().item() <= 1e-4


def test_block_reconstruction_is_refused_before_any_change():
    model = build("xlm").eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(UnsupportedOpError, match="reconstruct='block'.*parallel lists"):
        prune_llm(model, CALIB, LLMPruneConfig("wanda", 0.5, reconstruct="block"), progress=False)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


class _PreNormNet(torch.nn.Module):
    """Parallel lists registered in another order than the forward calls them (norm, attn, ffn)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.ffns = torch.nn.ModuleList([torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(),
                                                             torch.nn.Linear(16, 8)) for _ in range(2)])
        self.attn = torch.nn.ModuleList([torch.nn.Linear(8, 8) for _ in range(2)])
        self.norm = torch.nn.ModuleList([torch.nn.LayerNorm(8) for _ in range(2)])
        self.embed = torch.nn.Embedding(10, 8)

    @property
    def dummy_inputs(self) -> dict:
        return {"input_ids": torch.tensor([[1, 2, 3]])}

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        x = self.embed(input_ids)
        for i in range(2):
            x = x + self.attn[i](self.norm[i](x))
            x = x + self.ffns[i](x)
        return x


def test_entries_follow_the_forward_call_order_not_registration():
    from prunekit.llm.layers import hook_layer

    model = _PreNormNet()
    _, layers = find_layers(model)
    assert [n for n, _ in layers[1].named_children()] == ["norm", "attn", "ffns"]
    events: list[str] = []
    handles = hook_layer(layers[0], lambda m, a, k: events.append(f"pre:{type(m).__name__}"),
                         lambda m, a, o: events.append(f"post:{type(m).__name__}"))
    model.ffns[0].register_forward_pre_hook(lambda *_: events.append("ffn0 starts"))
    model(**model.dummy_inputs)
    for h in handles:
        h.remove()
    assert events == ["pre:LayerNorm", "ffn0 starts", "post:Sequential"]  # (post: once the ffn ran)
    batches = [{"input_ids": torch.randint(0, 10, (4, 6), generator=torch.Generator().manual_seed(1))}]
    result = prune_llm(model, batches, LLMPruneConfig("wanda", 0.5), progress=False)
    assert result.measured_sparsity == pytest.approx(0.5)


def test_recovery_holds_and_adapts_every_part_of_the_layer():
    from prunekit.llm.recover.lora import lora_targets
    from prunekit.llm.recover.masks import block_weights

    model = build("xlm")
    names = sorted(block_weights(model))
    assert len(names) == 12 and "transformer.ffns.1.lin2.weight" in names
    assert sorted(lora_targets(model)) == sorted(n.rpartition(".")[0] for n in names)


def test_out_of_core_pruning_refuses_parallel_lists(tmp_path):
    from prunekit.llm.offload.prune import prune_llm_out_of_core

    build("xlm").save_pretrained(tmp_path / "src")
    with pytest.raises(UnsupportedOpError, match="parallel lists.*in memory"):
        prune_llm_out_of_core(tmp_path / "src", tmp_path / "out", CALIB, LLMPruneConfig("wanda", 0.5), progress=False)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
