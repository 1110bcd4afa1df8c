"""The cost model (pure math) and the latency-aware ratios."""

import numpy as np
import pytest

from prunekit.structured.latency_model import (
    LATENCY_MAX_TILT,
    CostModel,
    CostTerm,
    latency_aware_ratios,
)


def _model(costs, sizes, fixed=0.0):
    return CostModel(tuple(CostTerm(c, g) for c, g in costs), fixed, tuple(sizes))


def test_predict_scales_each_term_with_the_kept_fractions_of_its_groups():
    cm = _model([(10.0, (0, 1)), (4.0, (1,)), (6.0, (2,))], [8, 4, 10], fixed=1.0)
    assert cm.predict([8, 4, 10]) == pytest.approx(21.0)
    # group 0 at 1/2, group 1 at 1/4: 10 * 1/8 + 4 * 1/4 + 6 + 1
    assert cm.predict([4, 1, 10]) == pytest.approx(1.25 + 1.0 + 6.0 + 1.0)
    assert cm.per_group().tolist() == [10.0, 14.0, 6.0]


def test_ratios_are_uniform_when_time_is_proportional_to_macs():
    lat = _model([(3.0, (0,)), (6.0, (0, 1)), (9.0, (2,))], [4, 4, 4])
    macs = _model([(30.0, (0,)), (60.0, (0, 1)), (90.0, (2,))], [4, 4, 4])
    assert latency_aware_ratios(lat, macs, 0.4, 0.9) == pytest.approx([0.4, 0.4, 0.4])


def test_ratios_follow_ms_per_mac_and_respect_the_caps():
    # group 0 runs 3x slower per MAC than group 1; network mean = 40 / 200 = 0.2 ms/MAC
    lat = _model([(30.0, (0,)), (10.0, (1,))], [8, 8])
    macs = _model([(100.0, (0,)), (100.0, (1,))], [8, 8])
    assert latency_aware_ratios(lat, macs, 0.2, 0.9) == pytest.approx([0.3, 0.1])
    # power 2 leans harder on the measurement: (1.5**2, 0.5**2) * 0.2
    assert latency_aware_ratios(lat, macs, 0.2, 0.9, power=2) == pytest.approx([0.45, 0.05])
    # max_ratio caps the slow group
    assert latency_aware_ratios(lat, macs, 0.8, 0.9) == pytest.approx([0.9, 0.4])


def test_tilt_is_bounded_and_groups_without_time_are_left_alone():
    lat = _model([(100.0, (0,)), (1.0, (1,))], [8, 8, 8])
    macs = _model([(1.0, (0,)), (100.0, (1,)), (50.0, (2,))], [8, 8, 8])
    r = latency_aware_ratios(lat, macs, 0.1, 0.95)
    assert r[0] == pytest.approx(0.1 * LATENCY_MAX_TILT)
    assert r[1] == pytest.approx(0.1 / LATENCY_MAX_TILT)
    assert r[2] == 0.0
    assert np.all(np.asarray(r) <= 0.95)


def test_models_of_different_networks_are_refused():
    with pytest.raises(ValueError, match="same groups"):
        latency_aware_ratios(_model([(1.0, (0,))], [8]), _model([(1.0, (0,))], [8, 8]), 0.5, 0.9)
