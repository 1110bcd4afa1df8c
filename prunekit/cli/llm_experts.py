"""``prunekit llm --experts F``: the mixture-of-experts flag and its metrics.

Kept apart from ``cli/llm.py`` so the flag and its report live with one owner.

Example:
    >>> import argparse
    >>> p = argparse.ArgumentParser(); add_experts_arguments(p)
    >>> p.parse_args(["--experts", "0.25"]).experts
    0.25
"""

from __future__ import annotations

import argparse
from typing import Any


def add_experts_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--experts`` (fraction of routed experts removed per MoE layer)."""
    parser.add_argument("--experts", type=float, default=0.0,
                        help="structured: fraction of routed experts removed in every mixture-of-experts "
                        "layer, ranked by router statistics on the calibration text (shared experts stay)")


def experts_summary(plan: dict[str, Any]) -> dict[str, Any]:
    """Expert counts before and after, and the removed experts, for metrics.json.

    Example:
        >>> experts_summary({"experts_before": {0: 8}, "experts_after": {0: 6}, "experts": {0: [1, 5]}})
        {'experts_before': 8, 'experts_after': 6, 'removed_experts': {'0': [1, 5]}}
    """
    before, after = plan.get("experts_before", {}), plan.get("experts_after", {}) or plan.get("experts_before", {})
    return {"experts_before": sum(before.values()), "experts_after": sum(after.values()),
            "removed_experts": {str(k): list(v) for k, v in plan.get("experts", {}).items()}}
