"""Shared test settings.

One torch thread: the suite's models are tiny, and on a shared 2-core machine extra
threads only oversubscribe (measured: a tiny ``fit`` took 6.2 s with 2 threads under
load vs 0.3 s with 1). Seeds are reset before every test.
"""

import pytest
import torch


@pytest.fixture(autouse=True)
def _seed_and_threads():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    yield
    torch.set_num_threads(previous)
