"""Compile the C++ kernels at first use (``torch.utils.cpp_extension``) and load them once.

The build is cached by torch in ``$TORCH_EXTENSIONS_DIR`` (default
``~/.cache/torch_extensions``) and rebuilt only when the source changes; nothing is
downloaded. Where no C++ compiler works, or ``PRUNEKIT_NO_KERNELS=1`` is set, the
portable PyTorch reference in ``ops.py`` runs instead, and :func:`kernel_status` says why.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import shutil
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import torch

SOURCE = Path(__file__).with_name("csrc") / "sparse_mm.cpp"
OP_NAMESPACE = "prunekit_sparse"


@dataclass(frozen=True)
class KernelStatus:
    """Whether the compiled kernels are loaded, and if not, why.

    Attributes:
        compiled: the C++ op ``torch.ops.prunekit_sparse.sparse_mm`` is registered.
        simd: the vector paths run here (AVX-512 with VBMI2, or AVX2 + FMA).
        reason: why the kernels are not used (empty when they are).
        isa: ``"avx512"``, ``"avx2"``, ``"portable"`` (plain C++ loops) or ``"none"``.
    """

    compiled: bool
    simd: bool
    reason: str = ""
    isa: str = "none"


def _already_registered() -> bool:
    try:
        torch.ops.prunekit_sparse.sparse_mm  # noqa: B018
        return True
    except (AttributeError, RuntimeError):
        return False


@lru_cache(maxsize=1)
def kernel_status() -> KernelStatus:
    """Build (first call in a process, cached on disk) and load the kernels.

    Example:
        >>> isinstance(kernel_status().compiled, bool)
        True
    """
    if os.environ.get("PRUNEKIT_NO_KERNELS") == "1":
        return KernelStatus(False, False, "PRUNEKIT_NO_KERNELS=1")
    if not _already_registered():
        compiler = os.environ.get("CXX", "c++")
        if shutil.which(compiler) is None:
            return KernelStatus(False, False, f"no C++ compiler ({compiler!r} not on PATH)")
        try:
            _compile_and_load()
        except Exception as exc:  # compiler errors are reported, never raised: the fallback runs
            return KernelStatus(False, False, f"kernel build failed: {str(exc).strip().splitlines()[-1][:300]}")
    isa = {2: "avx512", 1: "avx2"}.get(int(torch.ops.prunekit_sparse.simd_level()), "portable")
    reason = "" if isa != "portable" else "CPU lacks AVX-512 VBMI2 and AVX2: portable C++ loops"
    return KernelStatus(True, isa != "portable", reason, isa)


def _compile_and_load() -> None:
    quiet = logging.getLogger("torch.utils.cpp_extension")  # its import warns about CUDA_HOME on CPU machines
    previous = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        from torch.utils import cpp_extension

        with contextlib.redirect_stdout(io.StringIO()):
            cpp_extension.load(
                name="prunekit_sparse_kernels",
                sources=[str(SOURCE)],
                extra_cflags=["-O3", "-fopenmp", "-mtune=native"],
                extra_ldflags=["-fopenmp"],
                is_python_module=False,
                verbose=False,
            )
    finally:
        quiet.setLevel(previous)
