"""Small reference models for the demo, tests and benchmarks."""

from prunekit.models.small import LeNet300100, SmallConvNet, build_model

__all__ = ["SmallConvNet", "LeNet300100", "build_model"]
