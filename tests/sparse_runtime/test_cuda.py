"""CUDA: 2:4 layers become semi-structured sparse tensors where that is faster (skips without a GPU)."""

import pytest
import torch
from torch import nn

import prunekit
from prunekit.sparse_runtime import SparseInferenceConfig, sparse_inference_

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def test_two_four_linears_run_semi_structured_with_the_same_outputs():
    from prunekit.sparse_runtime.cuda import SemiStructuredLinear

    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4096, 4096), nn.ReLU(), nn.Linear(4096, 4096)).half().cuda().eval()
    prunekit.sparsify_(net, prunekit.SparsifyConfig(amount=None, pattern=prunekit.NM(2, 4)))
    x = torch.randn(64, 4096, device="cuda", dtype=torch.half)
    with torch.no_grad():
        expected = net(x)
    report = sparse_inference_(net, x, SparseInferenceConfig(print_table=False, min_speedup=1.0))
    assert len(report.layers) == 2 and all(r.dense_us for r in report.layers)
    packed = [m for m in net.modules() if isinstance(m, SemiStructuredLinear)]
    assert len(packed) == report.converted
    with torch.no_grad():
        assert torch.allclose(net(x), expected, atol=5e-2, rtol=1e-2)
