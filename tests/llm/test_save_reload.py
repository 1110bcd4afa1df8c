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
