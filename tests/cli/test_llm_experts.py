"""``prunekit llm --experts``: a tiny Mixtral loses a quarter of its experts, metrics count them."""

import json

import pytest
import torch

tokenizers = pytest.importorskip("tokenizers")
from tests.llm.conftest import transformers, word_level_tokenizer  # noqa: E402

TEXT = ("It is a truth universally acknowledged, that a single man in possession of a good fortune, "
        "must be in want of a wife. ") * 8


@pytest.fixture(scope="module")
def mixtral_folder(tmp_path_factory):
    fast = word_level_tokenizer(TEXT)
    torch.manual_seed(0)
    cfg = transformers.MixtralConfig(hidden_size=32, intermediate_size=32, num_hidden_layers=2,
                                     num_attention_heads=4, num_key_value_heads=2, num_local_experts=8,
                                     num_experts_per_tok=2, vocab_size=len(fast), max_position_embeddings=64)
    folder = tmp_path_factory.mktemp("tiny-mixtral")
    transformers.MixtralForCausalLM(cfg).save_pretrained(str(folder))
    fast.save_pretrained(str(folder))
    (folder / "text.txt").write_text(TEXT)
    return folder


def test_cli_experts_removes_a_quarter_per_layer_and_reloads(mixtral_folder, tmp_path, monkeypatch):
    import prunekit.cli.main as cli_main

    monkeypatch.setattr(cli_main, "SUBCOMMANDS", ("prunekit.cli.llm",))
    threads = torch.get_num_threads()
    argv = ["llm", "--model", str(mixtral_folder), "--calib", str(mixtral_folder / "text.txt"), "--eval", "none",
            "--nsamples", "4", "--seqlen", "16", "--threads", "1", "--no-progress", "--experts", "0.25",
            "--out", str(tmp_path)]
    try:
        assert cli_main.main(argv) == 0
    finally:
        torch.set_num_threads(threads)
    s = json.loads((tmp_path / "metrics.json").read_text())["structured"]
    assert s["experts"] == 0.25 and s["experts_before"] == 16 and s["experts_after"] == 12
    assert all(len(v) == 2 for v in s["removed_experts"].values())
    reloaded = transformers.AutoModelForCausalLM.from_pretrained(str(tmp_path / "model"))
    assert reloaded.config.num_local_experts == 6
    assert tuple(reloaded.model.layers[0].mlp.experts.gate_up_proj.shape) == (6, 64, 32)
