"""Pattern configs for ``sparsify_``: ``Unstructured()``, ``Block(rows, cols)``, ``NM(n, m)``."""

from __future__ import annotations

from dataclasses import dataclass

from prunekit.config.base import ConfigBase
from prunekit.patterns.block import Block
from prunekit.patterns.nm import NM


@dataclass(frozen=True)
class Unstructured(ConfigBase):
    """Any weight may be removed individually.

    Example:
        >>> Unstructured().to_dict()
        {}
    """


#: pattern config classes by the "type" name used in dicts / YAML
PATTERNS: dict[str, type[ConfigBase]] = {"Unstructured": Unstructured, "Block": Block, "NM": NM}
