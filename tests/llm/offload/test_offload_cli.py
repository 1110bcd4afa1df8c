"""``prunekit llm --max-memory``: the same pruned model and perplexity as the in-memory command."""

import json
import subprocess
import sys

import pytest

from tests.llm import test_cli as base

pytest.importorskip("tokenizers")
_main = base._main
tiny_folder = base.tiny_folder  # the same tiny Llama folder fixture as the in-memory CLI tests
_only_llm_subcommand = base._only_llm_subcommand


def _argv(folder, out, *extra):
    return ["llm", "--model", str(folder), "--calib", str(folder / "text.txt"), "--eval", str(folder / "text.txt"),
            "--nsamples", "4", "--seqlen", "16", "--eval-window", "16", "--eval-stride", "16", "--no-progress",
            "--threads", "1", "--device", "cpu", "--out", str(out), *extra]


RELOAD = """
import json, sys, torch
from transformers import AutoModelForCausalLM
a = AutoModelForCausalLM.from_pretrained(sys.argv[1], low_cpu_mem_usage=True).state_dict()
b = AutoModelForCausalLM.from_pretrained(sys.argv[2], low_cpu_mem_usage=True).state_dict()
print(json.dumps({"same_keys": set(a) == set(b), "equal": all(torch.equal(a[k], b[k]) for k in a),
                  "zeros": int((b["model.layers.0.mlp.up_proj.weight"] == 0).sum())}))
"""


def test_cli_out_of_core_matches_in_memory_and_reloads_in_a_fresh_process(tiny_folder, tmp_path):
    method = "sparsegpt"
    memory, offload = tmp_path / "memory", tmp_path / "offload"
    assert _main(_argv(tiny_folder, memory, "--method", method)) == 0
    assert _main(_argv(tiny_folder, offload, "--method", method, "--max-memory", "1GB", "--spill", "disk")) == 0
    m, o = (json.loads((d / "metrics.json").read_text()) for d in (memory, offload))
    assert o["ppl_after"] == m["ppl_after"] and o["ppl_before"] == m["ppl_before"]
    assert o["sparsity_measured"] == pytest.approx(m["sparsity_measured"])
    assert o["out_of_core"]["spilled"] is True and o["max_memory_bytes"] == 10**9
    assert set(o["memory_by_stage"]) == {"eval_before", "prune", "eval_after"}
    assert all(v["peak_rss_mb"] > 0 and v["peak_gpu_mb"] is None for v in o["memory_by_stage"].values())
    done = subprocess.run([sys.executable, "-c", RELOAD, str(memory / "model"), str(offload / "model")],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    reload = json.loads(done.stdout.strip().splitlines()[-1])
    assert reload == {"same_keys": True, "equal": True, "zeros": 32 * 64 // 2}


@pytest.mark.parametrize(
    "extra, needle",
    [
        (["--max-memory", "lots"], "max_memory must be a size such as '2GB'"),
        (["--max-memory", "2GB", "--heads", "0.5"], "--heads need the whole model in memory"),
        (["--max-memory", "2GB", "--owl"], "--owl need the whole model in memory"),
        (["--max-memory", "10KB"], "is below what one block"),
        (["--device", "tpu"], "device must be one of ['auto', 'cpu', 'cuda'], got 'tpu'"),
        (["--max-memory", "2GB", "--device", "tpu"], "device must be one of ['auto', 'cpu', 'cuda'], got 'tpu'"),
    ],
)
def test_cli_out_of_core_errors_are_one_line(tiny_folder, tmp_path, capsys, extra, needle):
    assert _main(_argv(tiny_folder, tmp_path / "o", *extra)) == 2
    err = capsys.readouterr().err.strip()
    assert needle in err and len(err.splitlines()) == 1


def test_cli_out_of_core_needs_out(tiny_folder, capsys):
    argv = [a for a in _argv(tiny_folder, "x") if a not in ("--out", "x")] + ["--max-memory", "2GB"]
    assert _main(argv) == 2
    assert "give --out DIR" in capsys.readouterr().err
