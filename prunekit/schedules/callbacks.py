"""Training-framework callbacks that drive a ``SchedulePruner``.

Both frameworks are optional: the classes are built on first use, and a missing
package raises ``MissingDependencyError`` with the install command.

- PyTorch Lightning: ``make_lightning_callback(pruner)`` returns a
  ``lightning.pytorch.Callback`` (or ``pytorch_lightning.Callback``) that calls
  ``pruner.step()`` after every training batch.
- Hugging Face: ``make_hf_callback(pruner)`` returns a ``transformers.TrainerCallback``
  that calls ``pruner.step()`` on every ``on_step_end`` (after each optimizer step).
"""

from __future__ import annotations

import importlib
from typing import Any

from prunekit.errors import MissingDependencyError, require
from prunekit.schedules.pruner import SchedulePruner


def _lightning_callback_base() -> type:
    for name in ("lightning.pytorch", "pytorch_lightning"):
        try:
            return importlib.import_module(name).Callback
        except ImportError:
            continue
    raise MissingDependencyError("PyTorch Lightning (package 'lightning')", "pip install lightning")


def make_lightning_callback(pruner: SchedulePruner) -> Any:
    """Return a Lightning ``Callback`` that steps ``pruner`` after each training batch.

    Example (needs ``pip install lightning``)::

        trainer = lightning.Trainer(callbacks=[make_lightning_callback(pruner)])
    """
    base = _lightning_callback_base()

    class LightningPruningCallback(base):  # type: ignore[misc, valid-type]
        """Steps a prunekit ``SchedulePruner`` after every training batch."""

        def __init__(self) -> None:
            super().__init__()
            self.pruner = pruner

        def on_train_start(self, trainer: Any, pl_module: Any) -> None:
            self.pruner.prune_now()

        def on_train_batch_end(self, trainer: Any, pl_module: Any, *args: Any, **kwargs: Any) -> None:
            self.pruner.step(int(trainer.global_step))

    return LightningPruningCallback()


def make_hf_callback(pruner: SchedulePruner) -> Any:
    """Return a ``transformers.TrainerCallback`` that steps ``pruner`` after each optimizer step.

    Example (needs ``pip install 'prunekit[hf]'``)::

        trainer = transformers.Trainer(model=model, args=args, train_dataset=data,
                                       callbacks=[make_hf_callback(pruner)])
    """
    transformers = require("transformers", "hf")

    class HFPruningCallback(transformers.TrainerCallback):
        """Steps a prunekit ``SchedulePruner`` at every ``on_step_end``."""

        def __init__(self) -> None:
            self.pruner = pruner

        def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.pruner.prune_now()

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.pruner.step(int(state.global_step))

    return HFPruningCallback()
