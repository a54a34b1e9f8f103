"""The models of the course, simplest first. Each maps token ids (B, T) to logits (B, T, V)."""

from .bigram import BigramLM  # noqa: F401
