"""Shared test settings: small thread count so the suite behaves the same on any machine."""

import pytest
import torch


@pytest.fixture(autouse=True)
def _seed_and_threads():
    torch.manual_seed(0)
    yield
