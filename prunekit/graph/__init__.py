"""Dependency analysis: trace a model and find the channels that must be removed together."""

from prunekit.graph.dependency import DependencyGraph, build_dependency_graph
from prunekit.graph.groups import Group

__all__ = ["DependencyGraph", "Group", "build_dependency_graph"]
