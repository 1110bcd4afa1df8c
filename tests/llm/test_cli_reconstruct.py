"""``prunekit llm --reconstruct block --permute --calib-dtype``: flags reach the config; the result reloads."""

import json
import subprocess
import sys

import pytest

from tests.llm.test_cli import _args, _main, _only_llm_subcommand, tiny_folder  # noqa: F401

RELOAD = """
import json, sys, torch, transformers
m = transformers.AutoModelForCausalLM.from_pretrained(sys.argv[1])
ws = [p for n, p in m.named_parameters() if "layers" in n and n.endswith("proj.weight")]
nm = all(bool(((w.reshape(w.shape[0], -1, 4) != 0).sum(-1) <= 2).all()) for w in ws)
print(json.dumps({"sparsity": sum(int((w == 0).sum()) for w in ws) / sum(w.numel() for w in ws), "nm": nm}))
"""


def test_cli_block_reconstruction_with_permutation_reloads_in_a_fresh_process(tiny_folder, tmp_path):  # noqa: F811
    extra = ["--method", "wanda", "--pattern", "2:4", "--permute", "--reconstruct", "layer+block",
             "--block-steps", "4", "--block-lr", "0.001", "--no-block-bf16", "--out", str(tmp_path)]
    assert _main(_args(tiny_folder, *extra)) == 0
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    cfg = metrics["config"]
    assert (cfg["reconstruct"], cfg["block_steps"], cfg["block_lr"], cfg["block_bf16"], cfg["permute"]) == (
        "layer+block", 4, 0.001, False, True)
    assert metrics["sparsity_measured"] == pytest.approx(0.5)
    out = subprocess.run([sys.executable, "-c", RELOAD, str(tmp_path / "model")], capture_output=True,
                         text=True, check=True)
    reloaded = json.loads(out.stdout.strip().splitlines()[-1])
    assert reloaded["nm"] is True
    assert reloaded["sparsity"] == pytest.approx(metrics["sparsity_measured"])


def test_cli_permute_without_pattern_is_a_one_line_error(tiny_folder, capsys):  # noqa: F811
    assert _main(_args(tiny_folder, "--method", "wanda", "--permute")) == 2
    err = capsys.readouterr().err.strip()
    assert "permute" in err and len(err.splitlines()) == 1


@pytest.mark.parametrize("choice", ["float32", "bfloat16"])
def test_cli_calib_dtype_reaches_the_config(tiny_folder, tmp_path, choice):  # noqa: F811
    assert _main(_args(tiny_folder, "--method", "wanda", "--calib-dtype", choice, "--out", str(tmp_path))) == 0
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["config"]["calib_dtype"] == choice
    assert metrics["sparsity_measured"] == pytest.approx(0.5)


def test_cli_unknown_calib_dtype_is_refused(tiny_folder):  # noqa: F811
    with pytest.raises(SystemExit):
        _main(_args(tiny_folder, "--calib-dtype", "float16"))
