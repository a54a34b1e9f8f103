"""The models of the course, simplest first. Each maps token ids (B, T) to logits (B, T, V)."""

from .attention import CausalSelfAttention, causal_mask  # noqa: F401
from .bigram import BigramLM  # noqa: F401
from .blocks import Block, FeedForward  # noqa: F401
from .gpt import GPT, GPTConfig  # noqa: F401
