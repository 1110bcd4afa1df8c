"""Process memory helpers: peak readings and giving freed heap pages back."""

import sys
from pathlib import Path

import pytest

from prunekit.llm.memory import trim_heap


def _rss_mb() -> float:
    line = next(x for x in Path("/proc/self/status").read_text().splitlines() if x.startswith("VmRSS:"))
    return int(line.split()[1]) / 1024


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self")
def test_trim_heap_gives_back_fragmented_free_pages() -> None:
    # 3000 x 64 KB (below glibc's mmap threshold: on the heap), then free 15 of every 16:
    # ~176 MB free but fenced in by the kept chunks, so free() cannot hand it back
    chunks = [bytearray(b"\1" * (64 << 10)) for _ in range(3000)]
    kept = chunks[::16]
    del chunks
    before = _rss_mb()
    if not trim_heap():
        pytest.skip("no glibc malloc_trim here")
    after = _rss_mb()
    assert before - after > 100, (before, after)
    assert len(kept) == 188 and all(len(c) == 64 << 10 for c in kept)
