import json

import pytest
import torch

from tests.llm.conftest import transformers, word_level_tokenizer

tokenizers = pytest.importorskip("tokenizers")

TEXT = (
    "It is a truth universally acknowledged, that a single man in possession of a good fortune, "
    "must be in want of a wife. However little known the feelings or views of such a man may be "
    "on his first entering a neighbourhood, this truth is so well fixed in the minds of the "
    "surrounding families, that he is considered the rightful property of some one or other of "
    "their daughters. "
) * 4


def _main(argv):
    import prunekit.cli.main as cli_main

    return cli_main.main(argv)


@pytest.fixture(autouse=True)
def _only_llm_subcommand(monkeypatch):
    # keep these tests independent of the other subcommands' optional dependencies
    import prunekit.cli.main as cli_main

    monkeypatch.setattr(cli_main, "SUBCOMMANDS", ("prunekit.cli.llm",))
    threads = torch.get_num_threads()  # --threads changes the process-wide setting
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    fast = word_level_tokenizer(TEXT)
    torch.manual_seed(0)
    cfg = transformers.LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                   num_attention_heads=4, num_key_value_heads=2,
                                   vocab_size=len(fast), max_position_embeddings=64)
    model = transformers.LlamaForCausalLM(cfg)
    folder = tmp_path_factory.mktemp("tiny-llama")
    model.save_pretrained(str(folder))
    fast.save_pretrained(str(folder))
    text = folder / "text.txt"
    text.write_text(TEXT)
    short = folder / "short.txt"
    short.write_text("a truth universally acknowledged")
    return folder


def _args(folder, *extra):
    return ["llm", "--model", str(folder), "--calib", str(folder / "text.txt"),
            "--eval", str(folder / "text.txt"), "--nsamples", "4", "--seqlen", "16",
            "--eval-window", "16", "--eval-stride", "8", "--threads", "1", "--no-progress", *extra]


@pytest.mark.parametrize("method,pattern", [("sparsegpt", None), ("wanda", "2:4")])
def test_cli_prunes_writes_metrics_and_a_reloadable_model(tiny_folder, tmp_path, method, pattern):
    extra = ["--method", method, "--out", str(tmp_path)] + (["--pattern", pattern] if pattern else [])
    if method == "sparsegpt":
        extra.append("--speed")
    assert _main(_args(tiny_folder, *extra)) == 0
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    for key in ("ppl_before", "ppl_after", "prune_seconds", "peak_rss_mb", "sparsity_measured"):
        assert isinstance(metrics[key], float)
    assert metrics["sparsity_measured"] == pytest.approx(0.5, abs=0.01)
    assert metrics["ppl_before"] > 1 and metrics["ppl_after"] > 1
    if method == "sparsegpt":
        for key in ("generation_before", "generation_after"):
            assert metrics[key]["decode_tokens_per_s"] > 0 and metrics[key]["prefill_tokens_per_s"] > 0
    reloaded = transformers.AutoModelForCausalLM.from_pretrained(str(tmp_path / "model"))
    block_weights = [p for n, p in reloaded.named_parameters() if "layers" in n and n.endswith("proj.weight")]
    zeros = sum(int((p == 0).sum()) for p in block_weights)
    total = sum(p.numel() for p in block_weights)
    assert zeros / total == pytest.approx(metrics["sparsity_measured"])
    from prunekit.llm.calibration import tokenize_text
    from prunekit.llm.evaluate import perplexity

    tok = transformers.AutoTokenizer.from_pretrained(str(tmp_path / "model"))
    ids = tokenize_text(tok, (tiny_folder / "text.txt").read_text())
    assert perplexity(reloaded, ids, window=16, stride=8) == pytest.approx(metrics["ppl_after"], rel=1e-4)


@pytest.mark.parametrize(
    "extra,needle",
    [
        (["--sparsity", "1.5"], "sparsity must be a number in [0, 1)"),
        (["--pattern", "5:4"], "N:M pattern 5:4 is invalid"),
        (["--seqlen", "64"], "fewer than one window"),
        (["--model", "/no/such/model"], "is not a folder with config.json"),
        (["--calib", "austen:ulysses"], "unknown Austen novel"),
        (["--heads", "1.5"], "heads must be a number in [0, 1)"),
        (["--layers", "-1"], "layers must be"),
    ],
)
def test_bad_input_gives_a_one_line_error(tiny_folder, capsys, extra, needle):
    argv = _args(tiny_folder, "--method", "wanda")
    if extra[0] == "--seqlen":
        argv += ["--calib", str(tiny_folder / "short.txt")]
    argv += extra
    assert _main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert needle in err
    assert len(err.splitlines()) == 1 and "Traceback" not in err


def test_cli_structured_removes_heads_neurons_and_blocks_and_reloads(tiny_folder, tmp_path):
    extra = ["--heads", "0.5", "--mlp", "0.25", "--layers", "1", "--speed", "--out", str(tmp_path)]
    assert _main(_args(tiny_folder, *extra)) == 0
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    s = metrics["structured"]
    # tiny Llama: 2 blocks x 2 KV groups, 64 MLP neurons; one block removed afterwards
    assert s["removed_heads"] == 2 and s["removed_mlp_neurons"] == 2 * 16 and len(s["removed_layers"]) == 1
    assert metrics["method"] is None and metrics["sparsity_measured"] < 0.01  # no unstructured step
    assert metrics["params"] < 0.75 * metrics["params_before"]
    assert metrics["generation_after"]["decode_tokens_per_s"] > 0
    stages = metrics["memory_by_stage"]
    assert set(stages) == {"load", "eval_before", "prune", "eval_after"}
    assert all(v["peak_rss_mb"] > 0 for v in stages.values())
    assert metrics["peak_rss_mb"] == max(v["peak_rss_mb"] for v in stages.values())
    reloaded = transformers.AutoModelForCausalLM.from_pretrained(str(tmp_path / "model"))
    assert reloaded.config.num_hidden_layers == 1 and reloaded.config.num_key_value_heads == 1
    assert reloaded.config.intermediate_size == 48
    assert sum(p.numel() for p in reloaded.parameters()) == metrics["params"]
    from prunekit.llm.calibration import tokenize_text
    from prunekit.llm.evaluate import perplexity

    tok = transformers.AutoTokenizer.from_pretrained(str(tmp_path / "model"))
    ids = tokenize_text(tok, (tiny_folder / "text.txt").read_text())
    assert perplexity(reloaded, ids, window=16, stride=8) == pytest.approx(metrics["ppl_after"], rel=1e-4)


def test_cli_structured_then_unstructured_when_both_are_asked(tiny_folder, tmp_path):
    extra = ["--mlp", "0.5", "--scope", "global", "--sparsity", "0.5", "--out", str(tmp_path)]
    assert _main(_args(tiny_folder, *extra)) == 0
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["structured"]["removed_mlp_neurons"] == 64  # half of 2 x 64, ranked globally
    assert metrics["method"] == "wanda"
    assert metrics["sparsity_measured"] == pytest.approx(0.5, abs=0.01)
    from prunekit.llm.structured import load_pruned

    model = load_pruned(tmp_path / "model", transformers.AutoModelForCausalLM)
    assert sum(p.numel() for p in model.parameters()) == metrics["params"]


@pytest.fixture(scope="module")
def wider_folder(tiny_folder, tmp_path_factory):
    """The tiny tokenizer with layers wide enough (256 -> 1024) for sparse kernels to pay off."""
    fast = transformers.AutoTokenizer.from_pretrained(str(tiny_folder))
    torch.manual_seed(0)
    cfg = transformers.LlamaConfig(hidden_size=256, intermediate_size=1024, num_hidden_layers=2,
                                   num_attention_heads=4, num_key_value_heads=2,
                                   vocab_size=len(fast), max_position_embeddings=256)
    folder = tmp_path_factory.mktemp("wider-llama")
    transformers.LlamaForCausalLM(cfg).save_pretrained(str(folder))
    fast.save_pretrained(str(folder))
    (folder / "text.txt").write_text(TEXT)
    return folder


def test_cli_sparse_runtime_measures_both_and_reloads_in_a_fresh_process(wider_folder, tmp_path):
    import subprocess
    import sys

    extra = ["--method", "magnitude", "--sparsity", "0.9", "--sparse-runtime", "--out", str(tmp_path)]
    assert _main(_args(wider_folder, *extra)) == 0
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    for stage in ("dense", "sparse_runtime"):
        entry = metrics["speed"][stage]
        assert set(entry) == {"decode_tokens_per_s", "prefill_tokens_per_s", "weights_mb", "peak_rss_mb"}
        assert all(v > 0 for v in entry.values())
    info = metrics["sparse_runtime"]
    assert info["eligible"] == 15  # 2 blocks x 7 linears + the (untied, dense) lm_head
    assert info["converted"] >= 6  # at 90% the 256x1024 MLP layers are several times faster packed
    # the converted model computes the same perplexity as the masked one, from less memory
    assert info["ppl"] == pytest.approx(metrics["ppl_after"], rel=1e-4)
    assert metrics["speed"]["sparse_runtime"]["weights_mb"] < metrics["speed"]["dense"]["weights_mb"]
    script = (
        "import sys, torch, transformers, prunekit\n"
        "m = transformers.AutoModelForCausalLM.from_pretrained(sys.argv[1])\n"
        "ids = torch.arange(1, 9).reshape(1, -1)\n"
        "ref = m(input_ids=ids).logits\n"
        "prunekit.load_sparse(m, sys.argv[2])\n"
        "print(float((m(input_ids=ids).logits - ref).abs().max()))\n"
    )
    out = subprocess.run([sys.executable, "-c", script, str(tmp_path / "model"),  # a fresh process
                          str(tmp_path / "sparse_runtime.safetensors")], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert float(out.stdout.strip().splitlines()[-1]) < 1e-4


def test_cli_eval_none_skips_perplexity(tiny_folder, tmp_path):
    extra = ["--method", "magnitude", "--eval", "none", "--speed", "--out", str(tmp_path)]
    args = [a for a in _args(tiny_folder, *extra)]
    i = args.index("--eval")  # _args passes an --eval file first; the later 'none' wins
    assert args[i + 1] != "none" and "none" in args
    assert _main(args) == 0
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["ppl_before"] is None and metrics["ppl_after"] is None and metrics["eval_tokens"] == 0
    assert metrics["sparsity_measured"] == pytest.approx(0.5, abs=0.01)
    assert metrics["generation_after"]["decode_tokens_per_s"] > 0
    stages = metrics["memory_by_stage"]
    assert set(stages) == {"load", "eval_before", "prune", "eval_after"}
    assert all(v["peak_rss_mb"] > 0 for v in stages.values())
    assert metrics["peak_rss_mb"] == max(v["peak_rss_mb"] for v in stages.values())


def test_cli_heads_on_a_mamba_model_are_not_applicable_and_its_layers_still_go(tmp_path, capsys):
    fast = word_level_tokenizer(TEXT)
    torch.manual_seed(0)
    cfg = transformers.MambaConfig(hidden_size=32, num_hidden_layers=2, vocab_size=len(fast), state_size=8,
                                   expand=2, time_step_rank=4)
    folder = tmp_path / "tiny-mamba"
    transformers.MambaForCausalLM(cfg).save_pretrained(str(folder))
    fast.save_pretrained(str(folder))
    (folder / "text.txt").write_text(TEXT)
    out = tmp_path / "out"
    assert _main(_args(folder, "--heads", "0.25", "--layers", "1", "--out", str(out))) == 0
    assert "--heads: not applicable, no block has attention heads (MambaBlock" in capsys.readouterr().out
    s = json.loads((out / "metrics.json").read_text())["structured"]
    assert list(s["not_applicable"]) == ["heads"] and s["removed_heads"] == 0 and len(s["removed_layers"]) == 1
    reloaded = transformers.AutoModelForCausalLM.from_pretrained(str(out / "model"))
    assert reloaded.config.num_hidden_layers == 1 and len(reloaded.backbone.layers) == 1
