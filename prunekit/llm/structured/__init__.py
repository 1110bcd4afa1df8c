"""Structured pruning of transformers: attention heads, MLP neurons, whole blocks."""
