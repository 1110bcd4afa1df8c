import pytest
import torch

from prunekit.llm.config import LLMPruneConfig
from prunekit.llm.prune import block_sparsity, prune_llm
from prunekit.llm.structured import load_pruned, save_pretrained_model
from tests.llm.conftest import CAUSAL, ENCODERS, example_inputs, main_output, transformers

FAMILIES = {**CAUSAL, **ENCODERS}


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_unstructured_and_nm_round_trip_with_plain_from_pretrained(family, tmp_path):
    model = FAMILIES[family]().eval()
    x = example_inputs(family)
    pattern = "2:4" if family in ("gpt2", "bert") else None
    batches = [example_inputs(family, seed) for seed in (3, 4)]
    prune_llm(model, batches, LLMPruneConfig("wanda", 0.5, pattern=pattern), progress=False)
    expected = main_output(model, x)
    save_pretrained_model(model, tmp_path)
    auto = transformers.AutoModelForCausalLM if family in CAUSAL else transformers.AutoModel
    again = auto.from_pretrained(str(tmp_path)).eval()
    assert type(again) is type(model)
    assert block_sparsity(again) == pytest.approx(0.5, abs=0.01)
    assert torch.allclose(main_output(again, x), expected, atol=1e-5)
    # the prunekit loader gives the same model
    assert torch.allclose(main_output(load_pruned(tmp_path, auto), x), expected, atol=1e-5)


def test_load_pruned_rejects_a_folder_without_config(tmp_path):
    from prunekit.errors import ModelError

    with pytest.raises(ModelError, match="config.json"):
        load_pruned(tmp_path)


_RELOAD_TEXT_CONFIG = """
import sys, torch, transformers
from prunekit.llm.structured import load_pruned
model = load_pruned(sys.argv[1], transformers.AutoModelForCausalLM)
ids = torch.arange(2, 18).reshape(1, 16)
with torch.no_grad():
    torch.save(model(input_ids=ids).logits, sys.argv[2])
print(type(model).__name__)
"""


def test_a_text_config_no_auto_class_maps_reloads_through_the_recorded_class(tmp_path):
    """Emu3ForCausalLM is built from Emu3TextConfig, which AutoModelForCausalLM does not map:
    the saved ``architectures`` names the class and a fresh process rebuilds it."""
    import subprocess
    import sys

    cfg = transformers.Emu3TextConfig(hidden_size=32, intermediate_size=48, num_hidden_layers=1,
                                      num_attention_heads=4, num_key_value_heads=2, vocab_size=64,
                                      max_position_embeddings=64, pad_token_id=0, bos_token_id=1,
                                      eos_token_id=2)
    assert type(cfg) not in transformers.AutoModelForCausalLM._model_mapping
    torch.manual_seed(0)
    model = transformers.Emu3ForCausalLM(cfg).eval()
    ids = torch.arange(2, 18).reshape(1, 16)
    with torch.no_grad():
        expected = model(input_ids=ids).logits
    save_pretrained_model(model, tmp_path / "m")
    out = subprocess.run([sys.executable, "-c", _RELOAD_TEXT_CONFIG, str(tmp_path / "m"),
                          str(tmp_path / "logits.pt")], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split()[-1] == "Emu3ForCausalLM"
    assert (torch.load(tmp_path / "logits.pt") - expected).abs().max().item() <= 1e-5


def test_load_pruned_names_the_config_when_no_class_can_build_it(tmp_path):
    from prunekit.errors import ModelError

    cfg = transformers.Emu3TextConfig(hidden_size=32, intermediate_size=48, num_hidden_layers=1,
                                      num_attention_heads=4, num_key_value_heads=2, vocab_size=64,
                                      pad_token_id=0, bos_token_id=1, eos_token_id=2)
    cfg.architectures = ["NoSuchModel"]
    cfg.save_pretrained(tmp_path)
    with pytest.raises(ModelError, match="Emu3TextConfig.*NoSuchModel"):
        load_pruned(tmp_path, transformers.AutoModelForCausalLM)
