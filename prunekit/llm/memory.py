"""Process memory readings (Linux ``/proc``; ``resource`` elsewhere)."""

from __future__ import annotations

import contextlib
import resource
import sys
from collections.abc import Iterator
from pathlib import Path


def peak_rss_mb() -> float:
    """Peak resident set size of this process since it started (or since :func:`reset_peak_rss`), MB."""
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024.0 * 1024.0) if sys.platform == "darwin" else peak / 1024.0


def reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark (Linux ``clear_refs``); return whether it worked."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


class StagePeaks:
    """Peak memory per named stage of a run: ``with peaks.stage("prune"): ...``.

    Each stage resets the kernel's peak-RSS mark first (where Linux allows; elsewhere the
    reading is the process peak so far, an upper bound) and, on a GPU, torch's peak
    allocated memory.

    Example:
        >>> peaks = StagePeaks()
        >>> with peaks.stage("work"):
        ...     _ = bytearray(1 << 20)
        >>> peaks.by_stage["work"]["peak_rss_mb"] > 0
        True
    """

    def __init__(self) -> None:
        self.by_stage: dict[str, dict[str, float | None]] = {}

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[None]:
        import torch

        reset_peak_rss()
        cuda = torch.cuda.is_available()
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        try:
            yield
        finally:
            gpu = torch.cuda.max_memory_allocated() / 2**20 if cuda else None
            self.by_stage[name] = {"peak_rss_mb": peak_rss_mb(), "peak_gpu_mb": gpu}

    def max_rss_mb(self) -> float:
        return max((v["peak_rss_mb"] or 0.0 for v in self.by_stage.values()), default=peak_rss_mb())


def trim_heap() -> bool:
    """Hand the C heap's free pages back to the system (glibc ``malloc_trim``); return
    whether it ran.

    Tensors under 32 MB live on the heap, where glibc keeps freed pages, so a loop that
    allocates and frees such tensors (one decoder block after another) sees its resident set
    creep up by the fragmentation. Harmless and quick to call between such steps; a no-op
    elsewhere than glibc.

    Example:
        >>> isinstance(trim_heap(), bool)
        True
    """
    import ctypes
    import ctypes.util

    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim = libc.malloc_trim
    except (OSError, AttributeError):  # musl and other C libraries have no malloc_trim
        return False
    trim.argtypes = [ctypes.c_size_t]
    trim(0)
    return True
