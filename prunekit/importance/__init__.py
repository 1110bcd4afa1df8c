"""Importance scores: pure functions of tensors (higher score = more important = kept)."""

from prunekit.importance.configs import Importance, Magnitude, Random
from prunekit.importance.magnitude import magnitude_scores
from prunekit.importance.random import random_scores

__all__ = ["Importance", "Magnitude", "Random", "magnitude_scores", "random_scores"]
