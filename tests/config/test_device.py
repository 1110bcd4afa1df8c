"""``resolve_device`` / ``to_device``: the one place ``--device`` is checked."""

import pytest
import torch

from prunekit.config.device import resolve_device, to_device
from prunekit.errors import ConfigError


def test_resolve_device():
    assert resolve_device("cpu") == "cpu"
    assert resolve_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ConfigError, match="device must be one of"):
        resolve_device("gpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_a_gpu_says_so():
    with pytest.raises(ConfigError, match="torch sees no CUDA GPU; use cpu or auto"):
        resolve_device("cuda")


def test_to_device_walks_containers():
    moved = to_device({"a": [torch.ones(2), (torch.zeros(1), "x")], "b": 1}, "cpu")
    assert moved["a"][0].tolist() == [1.0, 1.0] and moved["a"][1][1] == "x" and moved["b"] == 1
    assert isinstance(moved["a"][1], tuple)
