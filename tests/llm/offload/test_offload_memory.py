"""Out-of-core memory accounting: the resident set after every block is recorded."""

import torch

from prunekit.llm import LLMPruneConfig
from prunekit.llm.offload import OutOfCoreConfig, prune_llm_out_of_core
from tests.llm.conftest import tiny_llama


def test_rss_after_every_block_is_recorded(tmp_path):
    folder = tmp_path / "tiny"
    model = tiny_llama()
    model.save_pretrained(str(folder))
    blocks = len(model.model.layers)
    windows = torch.randint(0, 128, (4, 16), generator=torch.Generator().manual_seed(0))
    result = prune_llm_out_of_core(folder, tmp_path / "out", windows, LLMPruneConfig("sparsegpt", 0.5),
                                   OutOfCoreConfig(max_memory="2GB"), progress=False)
    assert len(result.rss_mb_after_block) == len(result.peak_rss_mb_after_block) == blocks
    assert all(rss > 10 for rss in result.rss_mb_after_block)
    peaks = result.peak_rss_mb_after_block
    assert peaks == sorted(peaks)  # the process peak so far never decreases
    assert all(rss <= peak for rss, peak in zip(result.rss_mb_after_block, peaks))
    data = result.to_dict()
    assert data["rss_mb_after_block"] == [round(x, 1) for x in result.rss_mb_after_block]
    assert len(data["peak_rss_mb_after_block"]) == blocks
