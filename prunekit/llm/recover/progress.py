"""A progress line for recovery: step, tokens, tokens/s, ETA and the recent loss.

Printed to stderr every ``every_s`` seconds (and at the last step), on rank 0 only.

Example:
    >>> format_eta(3725.0)
    '1:02:05'
"""

from __future__ import annotations

import sys
import time


def format_eta(seconds: float) -> str:
    """``h:mm:ss``."""
    seconds = max(0, int(round(seconds)))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


class RecoverProgress:
    """Reports throughput of the steps taken in this process (resumed steps excluded)."""

    def __init__(self, label: str, total_steps: int, tokens_per_step: int, first_step: int,
                 *, enabled: bool = True, every_s: float = 10.0, budget_left_s: float = 0.0) -> None:
        self.label, self.total, self.per_step = label, total_steps, tokens_per_step
        self.first, self.enabled, self.every_s = first_step, enabled, every_s
        self.budget_left_s = budget_left_s  # a time budget ends the run first when it is shorter
        self.start = self.last = time.perf_counter()

    def update(self, step: int, loss: float) -> None:
        """Call after finishing step ``step`` (0-based)."""
        now = time.perf_counter()
        done = step + 1
        if not self.enabled or (now - self.last < self.every_s and done < self.total):
            return
        self.last = now
        rate = (done - self.first) * self.per_step / max(now - self.start, 1e-9)
        eta = (self.total - done) * self.per_step / max(rate, 1e-9)
        if self.budget_left_s > 0:
            eta = min(eta, max(0.0, self.budget_left_s - (now - self.start)))
        print(f"{self.label}: step {done}/{self.total}, {done * self.per_step:,} tokens, "
              f"{rate:,.0f} tokens/s, ETA {format_eta(eta)}, loss {loss:.4f}", file=sys.stderr, flush=True)
