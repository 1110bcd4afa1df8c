import json
import subprocess
import sys

import pytest
import torch

from tests.llm.test_cli import _args, _main, _only_llm_subcommand, tiny_folder  # noqa: F401  (fixtures)

pytest.importorskip("peft")


@pytest.mark.parametrize("method", ["distill", "lora"])
def test_cli_recovers_after_pruning_keeps_the_zeros_and_reports(tiny_folder, tmp_path, method):  # noqa: F811
    extra = ["--method", "wanda", "--sparsity", "0.5", "--out", str(tmp_path), "--recover", method,
             "--recover-text", str(tiny_folder / "text.txt"), "--recover-tokens", "192", "--recover-seqlen", "16",
             "--recover-batch", "2", "--recover-bf16", "off", "--recover-lr", "1e-2", "--recover-lora-rank", "4",
             "--recover-kd-weight", "0"]
    assert _main(_args(tiny_folder, *extra)) == 0
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["recover_tokens"] == 6 * 2 * 16 and metrics["recover_seconds"] > 0
    assert isinstance(metrics["ppl_after_recovery"], float) and metrics["ppl_after_recovery"] > 1
    r = metrics["recover"]
    assert r["method"] == method and r["steps"] == 6 and r["zeros_after"] == r["zeros_before"] > 0
    assert 0 < r["loss_last"] < 10 and 0 < r["loss_first"] < 10  # training itself is tested in test_recover_loop
    assert "recover" in metrics["memory_by_stage"]
    assert (tmp_path / "recover_checkpoint" / "recover.safetensors").exists()
    # the saved model reloads in a fresh process with exactly the zeros recovery kept
    code = ("import sys, transformers; m = transformers.AutoModelForCausalLM.from_pretrained(sys.argv[1]);"
            "print(sum(int((p == 0).sum()) for n, p in m.named_parameters() if '.layers.' in n and "
            "n.endswith('proj.weight')))")
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path / "model")], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert int(done.stdout.strip().splitlines()[-1]) == r["zeros_before"]
    assert torch.isfinite(torch.tensor(metrics["ppl_after_recovery"]))


def test_cli_rejects_bad_recovery_flags_before_pruning(tiny_folder, tmp_path, capsys):  # noqa: F811
    extra = ["--method", "magnitude", "--recover", "distill", "--recover-tokens", "0"]
    assert _main(_args(tiny_folder, *extra)) == 2
    assert "tokens" in capsys.readouterr().err
