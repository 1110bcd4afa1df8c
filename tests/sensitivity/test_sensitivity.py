import json

import pytest
import torch
from torch import nn

from prunekit.cli.main import main
from prunekit.errors import TargetUnreachableError
from prunekit.masks import get_mask, is_masked
from prunekit.sensitivity import (
    SensitivityCurves,
    allocate_sparsities,
    apply_layer_sparsities_,
    plot_sensitivity,
    sensitivity_curves,
)


def test_curves_prune_one_layer_at_a_time_and_leave_model_unchanged():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    before = {k: v.clone() for k, v in net.state_dict().items()}
    calls = []

    def metric(m):  # fraction of zero weights in layer "0" and "2": shows which layer was pruned
        calls.append((float((m[0].weight == 0).float().mean()), float((m[2].weight == 0).float().mean())))
        return -float((m[0].weight == 0).sum() + (m[2].weight == 0).sum())

    curves = sensitivity_curves(net, metric, sparsities=(0.25, 0.5), progress=False)
    assert calls == [(0.0, 0.0), (0.25, 0.0), (0.5, 0.0), (0.0, 0.25), (0.0, 0.5)]
    assert curves.metrics == {"0": [-8.0, -16.0], "2": [-4.0, -8.0]}
    assert curves.sizes == {"0": 32, "2": 16}
    assert not is_masked(net[0]) and all(torch.equal(before[k], v) for k, v in net.state_dict().items())


def test_allocation_meets_global_target_and_favours_robust_layers():
    curves = SensitivityCurves(
        baseline=0.9,
        sparsities=[0.5, 0.7, 0.9],
        metrics={"robust": [0.9, 0.9, 0.88], "fragile": [0.85, 0.6, 0.3], "mid": [0.9, 0.87, 0.8]},
        sizes={"robust": 1000, "fragile": 1000, "mid": 2000},
    )
    alloc = allocate_sparsities(curves, 0.7)
    overall = sum(alloc[n] * curves.sizes[n] for n in alloc) / 4000
    assert overall == pytest.approx(0.7, abs=1e-4)
    assert alloc["robust"] > alloc["mid"] > alloc["fragile"]
    with pytest.raises(TargetUnreachableError, match="above what the curves cover"):
        allocate_sparsities(curves, 0.95)
    roundtrip = SensitivityCurves.from_dict(json.loads(json.dumps(curves.to_dict())))
    assert roundtrip.metrics == curves.metrics


def test_lower_is_better_metrics():
    curves = SensitivityCurves(1.0, [0.5, 0.9], {"a": [1.0, 1.5], "b": [3.0, 9.0]}, {"a": 10, "b": 10},
                               higher_is_better=False)
    alloc = allocate_sparsities(curves, 0.5)
    assert alloc["a"] > alloc["b"]


def test_apply_and_plot(tmp_path):
    net = nn.Sequential(nn.Linear(4, 10), nn.ReLU(), nn.Linear(10, 2))
    rows = apply_layer_sparsities_(net, {"0": 0.5, "2": 0.25})
    assert [r.sparsity for r in rows] == [0.5, 0.25]
    assert int((~get_mask(net[2])).sum()) == 5
    curves = SensitivityCurves(0.9, [0.5, 0.9], {"0": [0.9, 0.5], "2": [0.8, 0.2]}, {"0": 40, "2": 20})
    png = plot_sensitivity(curves, tmp_path / "s.png", allocation={"0": 0.6, "2": 0.3})
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_writes_curves_allocation_and_plot(tmp_path, capsys):
    out = tmp_path / "sens"
    code = main(["sensitivity", "--dataset", "digits", "--epochs", "1", "--sparsities", "0.5,0.9",
                 "--target", "0.6", "--max-eval", "200", "--out", str(out), "--no-progress"])
    assert code == 0
    data = json.loads((out / "sensitivity.json").read_text())
    curves = data["curves"]
    assert sorted(curves["metrics"]) == ["net.1", "net.3", "net.5"]
    sizes = curves["sizes"]
    alloc = data["allocation"]
    overall = sum(alloc[n] * sizes[n] for n in alloc) / sum(sizes.values())
    assert overall == pytest.approx(0.6, abs=1e-3)
    assert (out / "sensitivity.png").read_bytes()[:4] == b"\x89PNG"
    assert "net.3" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv, words",
    [
        (["--target", "1.5"], "--target must be a number in [0, 1)"),
        (["--sparsities", "0.9,0.5"], "--sparsities must be increasing"),
        (["--weights", "/nonexistent.safetensors"], "--weights: no such file"),
    ],
)
def test_cli_bad_input_one_line(tmp_path, capsys, argv, words):
    code = main(["sensitivity", "--out", str(tmp_path), *argv])
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert words in err and "\n" not in err and "Traceback" not in err


def test_groups_are_pruned_together_and_expand_to_layers():
    from prunekit.sensitivity import expand_groups

    net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 2))
    seen = []

    def metric(m):
        seen.append(tuple(round(float((m[i].weight == 0).float().mean()), 2) for i in (0, 2, 4)))
        return 1.0

    groups = {"hidden": ["0", "2"], "head": ["4"]}
    curves = sensitivity_curves(net, metric, sparsities=(0.5,), progress=False, groups=groups)
    assert seen == [(0.0, 0.0, 0.0), (0.5, 0.5, 0.0), (0.0, 0.0, 0.5)]
    assert curves.sizes == {"hidden": 96, "head": 16}
    assert expand_groups({"hidden": 0.3, "head": 0.1}, groups) == {"0": 0.3, "2": 0.3, "4": 0.1}
    with pytest.raises(Exception, match="not prunable layers"):
        sensitivity_curves(net, metric, sparsities=(0.5,), progress=False, groups={"x": ["1"]})
