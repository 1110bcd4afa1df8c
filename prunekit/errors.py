"""Exceptions prunekit raises for problems the user can fix.

Every message names what was wrong (argument, module path or op) and what would
work. The CLI turns these into a one-line message and exit code 2, never a traceback.
"""

from __future__ import annotations


class PrunekitError(Exception):
    """Base class of every error prunekit raises on purpose."""


class ConfigError(PrunekitError, ValueError):
    """A config value or key is invalid (names the field and the valid choices)."""


class ModelError(PrunekitError, ValueError):
    """The model cannot be pruned as asked (e.g. no prunable layer, unknown module name)."""


class UnsupportedOpError(ModelError):
    """Structured pruning met an operation it cannot handle (names op and module path)."""


class TargetUnreachableError(PrunekitError, ValueError):
    """A MACs / parameter / latency target cannot be met within the allowed pruning."""


class DatasetError(PrunekitError, ValueError):
    """A dataset is unknown, missing or malformed."""


class MissingDependencyError(PrunekitError, ImportError):
    """An optional package or data file is not installed; the message has the install command."""

    def __init__(self, what: str, install: str) -> None:
        super().__init__(f"{what} is not installed; install it with: {install}")
        self.install = install


def require(module: str, extra: str | None = None, pip_name: str | None = None):
    """Import an optional module or raise a MissingDependencyError with the install command.

    Args:
        module: the module to import, e.g. ``"torchvision"``.
        extra: the prunekit extra that provides it, e.g. ``"vision"``.
        pip_name: the pip package name when it differs from the module name.

    Returns:
        The imported module.

    Example:
        >>> np = require("numpy")
        >>> np.__name__
        'numpy'
    """
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        install = f"pip install 'prunekit[{extra}]'" if extra else f"pip install {pip_name or module}"
        raise MissingDependencyError(f"the optional package '{pip_name or module}'", install) from exc
