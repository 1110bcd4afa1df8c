"""One-shot pruning of Hugging Face transformers: magnitude, Wanda, SparseGPT, N:M, OWL,
structured head / MLP / layer removal, perplexity, save and reload.

See ``docs/llm-pruning.md`` for the user journey.
"""
