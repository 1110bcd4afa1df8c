import pytest

from prunekit.errors import ConfigError
from prunekit.schedules import Gradual, Iterative, OneShot, round_sparsities, schedule_from_dict


def test_cubic_exact_values_at_start_middle_end():
    s = Gradual(start_step=100, end_step=300, frequency=10, initial_sparsity=0.1, final_sparsity=0.9)
    assert s.sparsity_at(0) == 0.0  # before start nothing is pruned
    assert s.sparsity_at(100) == pytest.approx(0.1, abs=1e-12)  # start: initial
    # middle: 0.9 + (0.1 - 0.9) * (1 - 0.5)**3 = 0.9 - 0.1 = 0.8
    assert s.sparsity_at(200) == pytest.approx(0.8, abs=1e-12)
    # a quarter in: 0.9 - 0.8 * 0.75**3 = 0.5625
    assert s.sparsity_at(150) == pytest.approx(0.5625, abs=1e-12)
    assert s.sparsity_at(300) == 0.9  # end: final
    assert s.sparsity_at(10_000) == 0.9


def test_cubic_holds_between_updates_and_updates_on_frequency():
    s = Gradual(start_step=0, end_step=100, frequency=10, final_sparsity=0.9)
    assert s.sparsity_at(50) == pytest.approx(0.7875, abs=1e-12)  # 0.9 * (1 - 0.5**3)
    assert s.sparsity_at(59) == s.sparsity_at(50)
    assert s.is_update_step(60) and not s.is_update_step(61)


def test_polynomial_power_one_is_linear():
    s = Gradual(start_step=0, end_step=10, frequency=1, final_sparsity=0.5, power=1)
    assert [round(s.sparsity_at(t), 6) for t in (0, 2, 5, 10)] == [0.0, 0.1, 0.25, 0.5]


def test_iterative_is_geometric():
    s = Iterative(final_sparsity=0.875, rounds=3, steps_per_round=10, start_step=5)
    assert s.sparsity_at(4) == 0.0
    assert s.sparsity_at(5) == pytest.approx(0.5)
    assert s.sparsity_at(15) == pytest.approx(0.75)
    assert s.sparsity_at(25) == pytest.approx(0.875)
    assert s.sparsity_at(1000) == pytest.approx(0.875)
    assert round_sparsities(0.99, 2) == pytest.approx([0.9, 0.99])


def test_oneshot():
    s = OneShot(sparsity=0.7, at_step=3)
    assert [s.sparsity_at(t) for t in (0, 2, 3, 9)] == [0.0, 0.0, 0.7, 0.7]


def test_roundtrip_through_dict():
    s = Gradual(start_step=1, end_step=9, frequency=2, final_sparsity=0.6)
    assert schedule_from_dict({"type": "Gradual", **s.to_dict()}) == s


@pytest.mark.parametrize(
    "kwargs, words",
    [
        ({"start_step": 100, "end_step": 50}, "end_step (50) must be after start_step (100)"),
        ({"initial_sparsity": 0.5, "final_sparsity": 0.2}, "final_sparsity (0.2) must be >= initial_sparsity (0.5)"),
        ({"frequency": 0}, "frequency must be a positive integer, got 0"),
        ({"final_sparsity": 1.0}, "final_sparsity must be a number in [0, 1)"),
    ],
)
def test_bad_input_gives_one_line_error(kwargs, words):
    with pytest.raises(ConfigError) as info:
        Gradual(**kwargs)
    msg = str(info.value)
    assert words in msg and "\n" not in msg


def test_unknown_schedule_type_and_keys():
    with pytest.raises(ConfigError, match="schedule type must be one of"):
        schedule_from_dict({"type": "Cosine"})
    with pytest.raises(ConfigError, match="unknown key"):
        schedule_from_dict({"type": "OneShot", "sparsty": 0.5})
