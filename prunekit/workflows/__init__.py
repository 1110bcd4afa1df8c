"""End-to-end workflows built from the concepts (data, train, masks, metrics, report)."""

from prunekit.workflows.demo import DemoConfig, run_demo

__all__ = ["DemoConfig", "run_demo"]
