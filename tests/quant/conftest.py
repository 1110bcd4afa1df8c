"""Torch runs on one thread in these tests: on a shared 2-core machine, two threads per
process can be many times slower."""

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
