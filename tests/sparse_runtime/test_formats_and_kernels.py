"""Packing is lossless, and every kernel path equals the dense product of the unpacked weight."""

import pytest
import torch

from prunekit.errors import ConfigError
from prunekit.sparse_runtime.build import kernel_status
from prunekit.sparse_runtime.formats import SparseFormat, block_mask, fits, nm_pattern, pack, unpack
from prunekit.sparse_runtime.ops import reference_mm, sparse_mm

FORMATS = [
    SparseFormat("unstructured"),
    SparseFormat("unstructured", index="index16"),
    SparseFormat("block", rows=1, cols=4),
    SparseFormat("block", rows=1, cols=16),
    SparseFormat("block", rows=4, cols=1),
    SparseFormat("block", rows=4, cols=4),
    SparseFormat("block", rows=4, cols=16),
]


def _sparse(n, k, density, seed=0):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(n, k, generator=g)
    return w * (torch.rand(n, k, generator=g) < density)


def test_golden_layout():
    # row 0 keeps columns 1, 3; row 1 keeps 0, 3: values row-major, one mask byte pair per row
    w = torch.tensor([[0.0, 2.0, 0.0, 4.0], [5.0, 0.0, 0.0, 8.0]])
    p = pack(w, SparseFormat())
    assert p.values[:4].tolist() == [2.0, 4.0, 5.0, 8.0]
    assert p.index.tolist() == [[0b1010, 0], [0b1001, 0]]
    assert p.group_ptr.tolist() == [0, 2, 4]
    q = pack(w, SparseFormat(index="index16"))
    assert q.index[:4].tolist() == [1, 3, 0, 3]


def test_block_layout_interleaves_rows_per_chunk():
    w = torch.zeros(4, 16)
    w[:, 2] = torch.tensor([1.0, 2.0, 3.0, 4.0])
    p = pack(w, SparseFormat("block", rows=4, cols=1))
    assert p.values[:4].tolist() == [1.0, 2.0, 3.0, 4.0]
    assert p.index.tolist() == [[0b100, 0]]
    assert block_mask(w, 4, 4).tolist() == [[True, False, False, False]]


@pytest.mark.parametrize("fmt", FORMATS, ids=lambda f: f.label)
@pytest.mark.parametrize("shape", [(8, 16), (12, 48), (64, 300)])
def test_float32_roundtrip_is_exact(fmt, shape):
    if not fits(shape, fmt):
        pytest.skip(f"{fmt.label} does not fit {shape}")
    w = _sparse(*shape, 0.3)
    assert torch.equal(unpack(pack(w, fmt)), w)


@pytest.mark.parametrize("fmt", FORMATS, ids=lambda f: f.label)
@pytest.mark.parametrize("dtype", ["float32", "bfloat16", "int8"])
@pytest.mark.parametrize("batch", [1, 3, 8, 13])
def test_kernels_match_dense(fmt, dtype, batch):
    fmt = SparseFormat(fmt.kind, fmt.rows, fmt.cols, dtype, fmt.index)
    w = _sparse(36, 80, 0.35, seed=batch)
    if not fits(w.shape, fmt):
        w = _sparse(36, 96, 0.35, seed=batch)
    p = pack(w, fmt)
    x, bias = torch.randn(batch, w.shape[1]), torch.randn(36)
    ref = reference_mm(x, p, bias)
    for simd in (True, "avx2", False):  # the best vector path, AVX2, portable loops
        y = sparse_mm(x, p, bias, simd=simd)
        assert y.shape == (batch, 36)
        assert torch.allclose(y, ref, atol=1e-4, rtol=1e-4)
    # the quantized values are close to the original weight
    tol = {"float32": 0.0, "bfloat16": 0.01, "int8": 0.02}[dtype]
    assert (unpack(p) - w).abs().max() <= tol * w.abs().max() + 1e-7


def test_leading_dims_and_dtype_are_kept():
    w = _sparse(10, 32, 0.5)
    p = pack(w, SparseFormat())
    x = torch.randn(2, 3, 32)
    assert sparse_mm(x, p).shape == (2, 3, 10)
    assert torch.allclose(sparse_mm(x, p), x @ w.T, atol=1e-5)
    assert sparse_mm(x.bfloat16(), p).dtype == torch.bfloat16


def test_int8_keeps_zeros_and_scales_per_row():
    w = torch.tensor([[0.0, 127.0, -63.5, 0.0], [0.0, 0.0, 1.0, 0.0]])
    p = pack(w, SparseFormat(dtype="int8"))
    assert p.scale.tolist() == pytest.approx([1.0, 1.0 / 127])
    assert torch.equal(unpack(p) == 0, w == 0)


def test_nm_pattern_and_bad_shapes():
    assert nm_pattern(torch.tensor([[1.0, 0.0, 0.0, 2.0, 0.0, 3.0, 4.0, 0.0]])) == (2, 4)
    assert nm_pattern(torch.tensor([[1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0]])) == (4, 8)
    assert nm_pattern(torch.ones(1, 8)) is None
    with pytest.raises(ConfigError, match="block shape 2x2"):
        SparseFormat("block", rows=2, cols=2)
    with pytest.raises(ConfigError, match="in_features divisible by 16"):
        pack(torch.ones(4, 20), SparseFormat("block", rows=4, cols=4))
    with pytest.raises(ConfigError, match="index16 stores single weights"):
        SparseFormat("block", rows=4, cols=1, index="index16")


def test_kernels_compile_here():
    # this machine and CI have g++: the compiled op must load (the fallback is for users without one)
    status = kernel_status()
    assert status.compiled, status.reason
    assert status.isa in ("avx512", "avx2", "portable")
    out = torch.ops.prunekit_sparse.sparse_mm  # registered with torch.library
    assert out is not None


def test_op_traces_with_fake_tensors():
    from torch._subclasses.fake_tensor import FakeTensorMode

    p = pack(_sparse(8, 32, 0.5), SparseFormat())
    with FakeTensorMode(allow_non_fake_inputs=True):
        y = torch.ops.prunekit_sparse.sparse_mm(
            torch.empty(5, 32), p.values, p.index, p.group_ptr, None, None, 8, 1, 1, 1, 32
        )
    assert tuple(y.shape) == (5, 8)


@pytest.mark.parametrize("fmt", FORMATS, ids=lambda f: f.label)
@pytest.mark.parametrize("batch", [16, 40, 150])
def test_large_batch_paths_match_dense(fmt, batch):
    # 90% sparse: the batched kernels (batch along the vector lanes); 50%: the rebuilt-dense GEMM
    for density in (0.1, 0.5):
        w = _sparse(36, 96, density, seed=batch)
        if not fits(w.shape, fmt):
            pytest.skip(f"{fmt.label} does not fit {tuple(w.shape)}")
        p = pack(w, fmt)
        x, bias = torch.randn(batch, 96), torch.randn(36)
        assert torch.allclose(sparse_mm(x, p, bias), reference_mm(x, p, bias), atol=1e-4, rtol=1e-4)
        assert torch.allclose(sparse_mm(x, p, bias, simd=False), reference_mm(x, p, bias), atol=1e-4, rtol=1e-4)
