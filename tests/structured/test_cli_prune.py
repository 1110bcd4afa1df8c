"""``prunekit prune`` writes plan + safetensors + metrics.json and errors in one line."""

import json

import pytest

from prunekit.cli.main import main

pytest.importorskip("torchvision")


def test_cli_prune_writes_plan_weights_and_metrics(tmp_path, capsys):
    code = main(["prune", "--model", "torchvision:squeezenet1_1", "--ratio", "0.5",
                 "--round-to", "8", "--input-size", "64", "--threads", "1",
                 "--latency-runs", "2", "--device", "cpu", "--out", str(tmp_path)])
    assert code == 0
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["device"] == "cpu"
    for stage in ("before", "after"):
        assert set(metrics[stage]) >= {"params", "macs", "latency_ms_b1", "latency_ms_b8"}
    assert metrics["after"]["macs"] < metrics["before"]["macs"] / 2
    assert metrics["prune_seconds"] > 0
    assert (tmp_path / "plan.json").exists() and (tmp_path / "model.safetensors").exists()
    assert "after/before" in capsys.readouterr().out


def test_cli_prune_activation_importance_calibrates_on_the_example_input(tmp_path):
    code = main(["prune", "--model", "torchvision:squeezenet1_1", "--ratio", "0.25", "--importance", "activation",
                 "--input-size", "64", "--threads", "1", "--latency-runs", "1", "--out", str(tmp_path)])
    assert code == 0
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["config"]["importance"] == "activation"
    assert metrics["after"]["params"] < metrics["before"]["params"]


def test_cli_prune_bad_input_is_one_line(tmp_path, capsys):
    assert main(["prune", "--model", "torchvision:nope", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "unknown torchvision model" in err


def test_cli_prune_unknown_device_is_one_line(tmp_path, capsys):
    assert main(["prune", "--model", "torchvision:squeezenet1_1", "--device", "tpu", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "device must be one of ['auto', 'cpu', 'cuda'], got 'tpu'" in err


@pytest.mark.parametrize("name,task", [("ssdlite320_mobilenet_v3_large", "detection"),
                                       ("lraspp_mobilenet_v3_large", "segmentation")])
def test_cli_prunes_detection_and_segmentation_models_and_they_reload(tmp_path, name, task):
    import torch
    import torchvision

    from prunekit.structured import load_pruned

    code = main(["prune", "--model", f"torchvision:{name}", "--ratio", "0.5", "--input-size", "64",
                 "--threads", "1", "--latency-runs", "1", "--out", str(tmp_path)])
    assert code == 0
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["task"] == task and metrics["input"] == [1, 3, 64, 64]
    assert metrics["after"]["params"] < 0.4 * metrics["before"]["params"]
    fresh = torchvision.models.get_model(name, weights=None, weights_backbone=None).eval()
    model = load_pruned(fresh, tmp_path)
    assert sum(p.numel() for p in model.parameters()) == metrics["after"]["params"]
    with torch.no_grad():
        out = model(torch.rand(1, 3, 64, 64))
    if task == "detection":
        assert set(out[0]) == {"boxes", "scores", "labels"}
    else:
        assert out["out"].shape == (1, 21, 64, 64)


def test_cli_taylor_on_a_detector_is_a_one_line_error(tmp_path, capsys):
    assert main(["prune", "--model", "torchvision:ssdlite320_mobilenet_v3_large", "--importance",
                 "taylor", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "needs a classifier" in err


def test_cli_prunes_a_hugging_face_folder_and_it_reloads(tmp_path):
    import torch

    transformers = pytest.importorskip("transformers")
    from prunekit.structured import load_pruned

    torch.manual_seed(0)
    folder = tmp_path / "bert"
    transformers.BertModel(transformers.BertConfig(
        hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128,
        vocab_size=100, max_position_embeddings=64)).save_pretrained(str(folder))
    out = tmp_path / "out"
    assert main(["prune", "--model", f"hf:{folder}", "--ratio", "0.5", "--seq-len", "16",
                 "--threads", "1", "--latency-runs", "1", "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["task"] == "hf-text"
    assert metrics["input"] == {"input_ids": [1, 16], "attention_mask": [1, 16]}
    assert metrics["after"]["macs"] < 0.75 * metrics["before"]["macs"]
    model = load_pruned(transformers.AutoModel.from_pretrained(str(folder)), out)
    assert sum(p.numel() for p in model.parameters()) == metrics["after"]["params"]
    assert model.encoder.layer[0].intermediate.dense.out_features == 64
    assert model(torch.randint(0, 100, (2, 9)))[0].shape == (2, 9, 64)


def test_cli_hf_folder_without_config_is_one_line(tmp_path, capsys):
    pytest.importorskip("transformers")
    assert main(["prune", "--model", f"hf:{tmp_path}", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "not a folder with config.json" in err
