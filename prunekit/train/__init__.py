"""Training and evaluation loops: seeded, deterministic on CPU, with progress bars."""

from prunekit.train.loops import TrainConfig, evaluate, fit
from prunekit.train.seed import seed_everything

__all__ = ["TrainConfig", "fit", "evaluate", "seed_everything"]
