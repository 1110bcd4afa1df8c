"""Running a recipe in process: every stage type, checkpoints, re-run is a no-op, report."""

import json

import pytest
import torch

from prunekit.cli.main import main
from prunekit.errors import ConfigError
from prunekit.export import load_compact_into
from prunekit.masks import effective_state_dict, get_mask
from prunekit.recipes import finished_stages, recipe_from_dict, run_recipe
from prunekit.recipes.context import build_data, build_model, load_checkpoint

pytest.importorskip("zstandard")

TINY = {
    "name": "tiny",
    "seed": 1,
    "data": {"dataset": "digits", "train_subset": 256, "test_subset": 128},
    "model": {"name": "lenet300100"},
    "stages": [
        {"train": {"epochs": 8, "lr": 0.003}},
        {"prune": {"amount": 0.8}},
        {"finetune": {"epochs": 1}},
        {"distill": {"epochs": 1, "temperature": 2.0}},
        {"quantize": {"scheme": "codebook", "bits": 4}},
        {"export": {"format": "compact"}},
        {"evaluate": {"latency_runs": 3}},
    ],
}


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("run")
    recipe = recipe_from_dict(TINY)
    return recipe, out, run_recipe(recipe, out, progress=False)


def test_every_stage_checkpointed_with_metrics(tiny_run):
    recipe, out, summary = tiny_run
    ids = [s.id for s in recipe.stages]
    assert list(summary["stages"]) == ids and finished_stages(recipe, out / "stages") == len(ids)
    m = {sid: summary["stages"][sid]["metrics"] for sid in ids}
    assert m["00-train"]["accuracy"] > 0.5
    assert m["01-prune"]["sparsity"] == pytest.approx(0.8, abs=1e-3)
    assert m["03-distill"]["teacher"] == "00-train"
    assert m["04-quantize"]["quantized"] == ["codebook"]
    assert m["04-quantize"]["compact_bytes"] < m["03-distill"]["compact_bytes"]
    assert m["05-export"]["roundtrip_exact"] is True
    assert m["05-export"]["compression_ratio"] == pytest.approx(
        summary["dense_bytes"] / m["05-export"]["compact_file_bytes"]
    )
    assert m["06-evaluate"]["macs"] > m["06-evaluate"]["macs_sparse"] > 0
    assert not list((out / "stages").glob(".tmp-*"))
    assert json.loads((out / "metrics.json").read_text())["stages"]["06-evaluate"]["metrics"] == m["06-evaluate"]


def test_checkpoint_restores_the_model_and_compact_file_the_quantized_weights(tiny_run):
    recipe, out, summary = tiny_run
    data = build_data(recipe.data)
    model = build_model(recipe.model, data)
    record = load_checkpoint(out / "stages" / "06-evaluate", model)
    assert set(record) == {"net.1", "net.3", "net.5"}
    assert len(torch.unique(model.net[1].weight[get_mask(model.net[1])])) <= 16
    other = build_model(recipe.model, data)
    load_compact_into(other, out / "stages" / "05-export" / "model.compact.safetensors")
    want, got = effective_state_dict(model), effective_state_dict(other)
    assert all(torch.equal(want[k], got[k]) for k in want)


def test_rerun_is_a_no_op_and_other_recipe_is_refused(tiny_run):
    recipe, out, summary = tiny_run
    lines = []
    again = run_recipe(recipe, out, progress=False, log=lines.append)
    assert lines == ["resuming after stage 06-evaluate (7/7 finished)"]
    assert again["stages"] == summary["stages"]
    other = recipe_from_dict({**TINY, "seed": 2})
    with pytest.raises(ConfigError, match="holds a run of a different recipe"):
        run_recipe(other, out, progress=False)


def test_report_command_writes_markdown_plots_and_self_contained_html(tiny_run, capsys):
    _, out, _ = tiny_run
    assert main(["report", str(out)]) == 0
    md = (out / "report.md").read_text()
    assert "| 05-export |" in md and "compression ratio" in md and "![layer_sparsity](layer_sparsity.png)" in md
    for png in ("metric_per_stage.png", "size_per_stage.png", "layer_sparsity.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    page = (out / "report.html").read_text()
    assert page.count("data:image/png;base64,") == 3
    assert 'src="http' not in page and "<script" not in page and "<link" not in page


def test_cli_errors_are_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("stages:\n  - trian: {}\n")
    assert main(["run", str(bad), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "unknown stage type 'trian'" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert main(["report", str(tmp_path)]) == 2
