"""The target searches: bisection, and the re-measured latency pick."""

import pytest

from prunekit.errors import TargetUnreachableError
from prunekit.structured.prune import confirm_ratio, local_slope
from prunekit.structured.targets import search_ratio


def test_bisection_finds_the_smallest_ratio_meeting_the_target():
    ratio, history = search_ratio(lambda r: 1 - r, 0.6, 0.9, 20, "macs")
    assert ratio == pytest.approx(0.4, abs=1e-3) and history[0] == {"ratio": 0.9, "macs": pytest.approx(0.1)}
    with pytest.raises(TargetUnreachableError, match="unreachable"):
        search_ratio(lambda r: 1 - r / 2, 0.3, 0.9, 20, "macs")


def test_a_lucky_pick_is_re_measured_and_moved_towards_the_aim():
    truth = lambda r: 1.0 - 1.2 * r  # noqa: E731 - kept fraction falls with the ratio
    history = [{"ratio": r, "latency": truth(r)} for r in (0.2, 0.3, 0.35, 0.45)]
    # bisection kept 0.35 on a measurement of 0.47; the truth there is 0.58 > target 0.5
    ratio = confirm_ratio(truth, 0.35, aim=0.485, target=0.5, history=history, max_ratio=0.9)
    assert truth(ratio) <= 0.5
    assert ratio == pytest.approx(0.35 + (0.58 - 0.485) / 1.2, abs=1e-6)
    assert [h.get("check") for h in history[-1:]] == [1.0]


def test_a_pick_that_holds_is_kept():
    history = [{"ratio": 0.4, "latency": 0.45}]
    assert confirm_ratio(lambda r: 0.49, 0.4, 0.485, 0.5, history, 0.9) == 0.4
    assert len(history) == 2


def test_local_slope_falls_back_when_flat_or_rising():
    assert local_slope([{"ratio": 0.3, "latency": 0.5}], 0.3) == -1.0
    rising = [{"ratio": r, "latency": r} for r in (0.1, 0.2, 0.3)]
    assert local_slope(rising, 0.2) == -1.0
