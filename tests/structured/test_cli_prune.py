"""``prunekit prune`` writes plan + safetensors + metrics.json and errors in one line."""

import json

import pytest

from prunekit.cli.main import main

pytest.importorskip("torchvision")


def test_cli_prune_writes_plan_weights_and_metrics(tmp_path, capsys):
    code = main(["prune", "--model", "torchvision:squeezenet1_1", "--ratio", "0.5",
                 "--round-to", "8", "--input-size", "64", "--threads", "1",
                 "--latency-runs", "2", "--out", str(tmp_path)])
    assert code == 0
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    for stage in ("before", "after"):
        assert set(metrics[stage]) >= {"params", "macs", "latency_ms_b1", "latency_ms_b8"}
    assert metrics["after"]["macs"] < metrics["before"]["macs"] / 2
    assert metrics["prune_seconds"] > 0
    assert (tmp_path / "plan.json").exists() and (tmp_path / "model.safetensors").exists()
    assert "after/before" in capsys.readouterr().out


def test_cli_prune_bad_input_is_one_line(tmp_path, capsys):
    assert main(["prune", "--model", "torchvision:nope", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "unknown torchvision model" in err
