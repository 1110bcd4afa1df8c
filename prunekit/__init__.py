"""prunekit: prune PyTorch models and prove the result.

The public API in one place::

    import prunekit
    prunekit.sparsify_(model, prunekit.SparsifyConfig(amount=0.5))   # masks, shapes kept
    ...fine-tune as usual: masked weights stay exactly zero...
    prunekit.make_permanent(model)                                    # plain module again

Concepts live in sub-packages: ``patterns`` (what shape is removed), ``importance``
(how candidates are scored), ``masks`` (zeroing with shapes kept), ``metrics``,
``train``, ``data``, ``models``, ``report``, ``workflows``, ``cli``.
"""

from prunekit._version import __version__
from prunekit.errors import (
    ConfigError,
    DatasetError,
    MissingDependencyError,
    ModelError,
    PrunekitError,
    TargetUnreachableError,
    UnsupportedOpError,
)
from prunekit.importance import Magnitude, Random
from prunekit.masks import (
    SparsifyConfig,
    apply_mask,
    get_mask,
    load_masked,
    make_permanent,
    save_masked,
    sparsify_,
    sparsity_report,
)
from prunekit.metrics import (
    count_macs,
    count_nonzero,
    count_params,
    measure_latency,
    model_metrics,
    size_on_disk,
)

__all__ = [
    "__version__",
    "PrunekitError",
    "ConfigError",
    "ModelError",
    "DatasetError",
    "MissingDependencyError",
    "TargetUnreachableError",
    "UnsupportedOpError",
    "Magnitude",
    "Random",
    "SparsifyConfig",
    "sparsify_",
    "make_permanent",
    "apply_mask",
    "get_mask",
    "sparsity_report",
    "save_masked",
    "load_masked",
    "count_params",
    "count_nonzero",
    "count_macs",
    "measure_latency",
    "size_on_disk",
    "model_metrics",
]
