import math

import pytest

from prunekit.config.base import check_choice, check_fraction, check_positive_int
from prunekit.errors import ConfigError
from prunekit.train import TrainConfig


def test_check_fraction():
    assert check_fraction("s", 0) == 0.0
    assert check_fraction("s", 1, allow_one=True) == 1.0
    for bad in (1, -0.01, math.nan, math.inf, "0.3", None):
        with pytest.raises(ConfigError, match=r"s must be a number in \[0, 1\)"):
            check_fraction("s", bad)


def test_check_int_and_choice():
    assert check_positive_int("n", 2) == 2
    with pytest.raises(ConfigError, match="n must be a positive integer"):
        check_positive_int("n", 0)
    with pytest.raises(ConfigError, match="n must be a positive integer"):
        check_positive_int("n", 1.5)
    with pytest.raises(ConfigError, match=r"must be one of \['a', 'b'\]"):
        check_choice("x", "c", ("a", "b"))


def test_frozen_and_round_trip():
    cfg = TrainConfig(epochs=3, lr=0.01)
    with pytest.raises(AttributeError):
        cfg.epochs = 4  # frozen
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ConfigError, match="valid keys are"):
        TrainConfig.from_dict({"epoch": 3})
    with pytest.raises(ConfigError, match="optimizer must be one of"):
        TrainConfig(optimizer="lion")
