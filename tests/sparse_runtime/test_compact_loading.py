"""save_compact files load straight into packed layers: same outputs, values never densified."""

import pytest
import torch
from torch import nn

import prunekit
from prunekit.sparse_runtime import SparseInferenceConfig, SparseLinear
from prunekit.sparse_runtime.compact import load_compact_sparse

QUIET = SparseInferenceConfig(print_table=False, rounds=3)


def _net(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(256, 512), nn.ReLU(), nn.Linear(512, 256), nn.ReLU(), nn.Linear(256, 8))


@pytest.mark.parametrize("codec", ["none", "zstd"])
def test_float_compact_file_loads_packed(tmp_path, codec):
    net = _net()
    prunekit.sparsify_(net, prunekit.SparsifyConfig(amount=0.9))
    path = prunekit.save_compact(net, tmp_path / "net.safetensors", config=prunekit.CompactConfig(codec=codec))
    fresh = _net(seed=1)
    report = load_compact_sparse(fresh, path, config=QUIET)
    assert [r.name for r in report.layers if r.format != "dense"] == ["0", "2", "4"]
    assert all(isinstance(fresh[i], SparseLinear) for i in (0, 2, 4))
    x = torch.randn(3, 256)
    assert torch.allclose(fresh(x), net(x), atol=1e-5)
    # the values are exactly the file's non-zeros, and the mask keeps 1 bit per weight
    assert fresh[0].nnz == int((net[0].weight != 0).sum())
    assert fresh[0].index.numel() == 512 * 256 // 8


def test_int8_compact_file_loads_int8_values(tmp_path):
    net = _net()
    prunekit.sparsify_(net, prunekit.SparsifyConfig(amount=0.8))
    record = prunekit.quantize_(net, prunekit.QuantizeConfig(scheme="int8"))
    path = prunekit.save_compact(net, tmp_path / "q.safetensors", record=record)
    fresh = _net(seed=2)
    load_compact_sparse(fresh, path, config=QUIET)
    assert fresh[0].values.dtype == torch.int8 and fresh[0].format.dtype == "int8"
    x = torch.randn(2, 256)
    assert torch.allclose(fresh(x), net(x), atol=1e-4)


def test_example_input_keeps_only_faster_layers(tmp_path):
    net = _net()
    prunekit.sparsify_(net, prunekit.SparsifyConfig(amount=0.95))
    path = prunekit.save_compact(net, tmp_path / "net.safetensors")
    fresh = _net(seed=3)
    x = torch.randn(1, 256)
    cfg = SparseInferenceConfig(print_table=False, rounds=3, min_speedup=1e6)  # nothing can be that fast
    report = load_compact_sparse(fresh, path, example_input=x, config=cfg)
    assert all(r.format == "dense" and r.dense_us for r in report.layers)
    assert all(isinstance(fresh[i], nn.Linear) for i in (0, 2, 4))
    assert torch.allclose(fresh(x), net(x), atol=1e-5)
