"""sparse_inference_: same outputs, never slower, saves and reloads in a fresh process."""

import json
import os
import subprocess
import sys

import pytest
import torch
from torch import nn

import prunekit
from prunekit.errors import ConfigError, ModelError
from prunekit.sparse_runtime import SparseInferenceConfig, SparseLinear, load_sparse, save_sparse, sparse_inference_

QUIET = SparseInferenceConfig(print_table=False, rounds=3)


def _mlp(amount, seed=0):
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Linear(512, 1024), nn.ReLU(), nn.Linear(1024, 512), nn.ReLU(), nn.Linear(512, 10))
    prunekit.sparsify_(net, prunekit.SparsifyConfig(amount=amount))
    return net


def test_outputs_unchanged_and_sparse_layers_win_at_95_percent():
    net = _mlp(0.95)
    x = torch.randn(1, 512)
    before = net(x)
    report = sparse_inference_(net, x, QUIET)
    assert torch.allclose(net(x), before, atol=1e-5)
    rows = {r.name: r for r in report.layers}
    assert set(rows) == {"0", "2", "4"}
    # 95%-sparse 512x1024 layers at batch 1: the sparse kernels are several times faster
    for name in ("0", "2"):
        assert isinstance(net.get_submodule(name), SparseLinear)
        assert rows[name].speedup > 1.5
        assert rows[name].stored_bytes < 0.2 * rows[name].dense_bytes
        assert rows[name].sparsity > 0.85
    table = report.to_dict()
    assert table["converted"] >= 2 and json.dumps(table)


def test_never_slower_dense_layers_stay():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 256))
    with torch.no_grad():
        net[2].weight[net[2].weight.abs() < 0.05] = 0  # about 20% zeros
    x = torch.randn(4, 256)
    report = sparse_inference_(net, x, QUIET)
    assert all(r.format == "dense" for r in report.layers)
    assert all(isinstance(m, nn.Linear) for m in (net[0], net[2]))
    assert "sparsity <" in report.layers[0].reason
    # a demanded speed-up no format reaches keeps everything dense
    net2 = _mlp(0.9)
    report2 = sparse_inference_(net2, torch.randn(1, 512), SparseInferenceConfig(print_table=False, min_speedup=1e6))
    assert report2.converted == 0 and all(r.reason == "dense is faster" for r in report2.layers if r.dense_us)


def test_conv1x1_and_quantized_values():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(64, 128, 1), nn.ReLU(), nn.Conv2d(128, 64, 1), nn.Conv2d(64, 8, 3))
    prunekit.sparsify_(net, prunekit.SparsifyConfig(amount=0.9))
    x = torch.randn(1, 64, 6, 6)
    before = net(x)
    cfg = SparseInferenceConfig(print_table=False, rounds=3, min_speedup=1.0, min_sparsity=0.0)
    report = sparse_inference_(net, x, cfg)
    assert [r.name for r in report.layers] == ["0", "2"]  # the 3x3 conv is not eligible
    assert torch.allclose(net(x), before, atol=1e-5)
    for dtype, tol in (("bfloat16", 2e-2), ("int8", 5e-2)):
        m = _mlp(0.9)
        x = torch.randn(2, 512)
        ref = m(x)
        r = sparse_inference_(m, x, SparseInferenceConfig(print_table=False, rounds=3, value_dtype=dtype))
        assert r.converted >= 1
        assert (m(x) - ref).abs().max() <= tol * ref.abs().max()


def test_nm_and_block_formats_are_offered():
    from prunekit.sparse_runtime.convert import candidate_formats

    torch.manual_seed(0)
    w = torch.randn(64, 64)
    nm = prunekit.NM(n=2, m=4)
    lin = nn.Linear(64, 64)
    prunekit.sparsify_(lin, prunekit.SparsifyConfig(amount=None, pattern=nm))
    labels = [f.label for f in candidate_formats(lin.weight.detach(), SparseInferenceConfig())]
    assert labels[0] == "nm"
    blocky = w * torch.rand(16, 64).lt(0.3).repeat_interleave(4, 0)
    labels = [f.label for f in candidate_formats(blocky, SparseInferenceConfig())]
    assert "block4x1" in labels and "block1x4" not in labels


def test_errors_name_the_problem():
    with pytest.raises(ConfigError, match="formats must be"):
        SparseInferenceConfig(formats=("csr",))
    with pytest.raises(ConfigError, match="min_speedup"):
        SparseInferenceConfig(min_speedup=0.5)
    with pytest.raises(ConfigError, match="unknown key"):
        SparseInferenceConfig.from_dict({"format": "nm"})
    with pytest.raises(ModelError, match="nn.Module"):
        sparse_inference_(lambda x: x, torch.zeros(1))


def test_export_sees_the_custom_op():
    net = _mlp(0.95)
    x = torch.randn(1, 512)
    sparse_inference_(net, x, QUIET)
    graph = str(torch.export.export(net, (x,)).graph)
    assert "prunekit_sparse.sparse_mm" in graph


def test_torch_compile_traces_the_converted_model():
    net = _mlp(0.95)
    x = torch.randn(2, 512)
    sparse_inference_(net, x, QUIET)
    expected = net(x)
    compiled = torch.compile(net, backend="aot_eager", fullgraph=True)  # Dynamo + fake tensors, no graph break
    assert torch.allclose(compiled(x), expected, atol=1e-5)


FRESH = r"""
import sys, torch
from torch import nn
import prunekit
torch.manual_seed(1)
net = nn.Sequential(nn.Linear(512, 1024), nn.ReLU(), nn.Linear(1024, 512), nn.ReLU(), nn.Linear(512, 10))
prunekit.load_sparse(net, sys.argv[1])
x = torch.load(sys.argv[2])
print(sum(isinstance(m, prunekit.sparse_runtime.SparseLinear) for m in net.modules()))
torch.save(net(x), sys.argv[3])
"""


@pytest.mark.parametrize("no_kernels", [False, True])
def test_save_and_reload_in_a_fresh_process(tmp_path, no_kernels):
    net = _mlp(0.95)
    x = torch.randn(3, 512)
    sparse_inference_(net, x, QUIET)
    expected = net(x)
    path = save_sparse(net, tmp_path / "net.safetensors")
    torch.save(x, tmp_path / "x.pt")
    env = dict(os.environ, PRUNEKIT_NO_KERNELS="1" if no_kernels else "0")
    out = subprocess.run(
        [sys.executable, "-c", FRESH, str(path), str(tmp_path / "x.pt"), str(tmp_path / "y.pt")],
        capture_output=True, text=True, env=env, timeout=300,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert int(out.stdout.strip().splitlines()[-1]) >= 2
    assert torch.allclose(torch.load(tmp_path / "y.pt"), expected, atol=1e-5)
    # the packed file is much smaller than the dense weights
    dense_bytes = sum(p.numel() * 4 for p in _mlp(0.0).parameters())
    assert path.stat().st_size < 0.3 * dense_bytes


def test_load_rejects_another_architecture(tmp_path):
    net = _mlp(0.95)
    sparse_inference_(net, torch.randn(1, 512), QUIET)
    path = save_sparse(net, tmp_path / "net.safetensors")
    other = nn.Sequential(nn.Linear(512, 64), nn.ReLU(), nn.Linear(64, 512), nn.ReLU(), nn.Linear(512, 10))
    with pytest.raises(ModelError, match="build the same architecture"):
        load_sparse(other, path)
