"""Sampling new text from any model that returns next-token logits (B, T, vocab_size).

Each step: run the model on the context, keep the logits of the last position, divide by the
temperature, optionally keep only the top-k most likely tokens, turn into probabilities, sample.
"""

from __future__ import annotations

import torch


class SamplingError(ValueError):
    pass


def check_sampling(temperature: float, top_k: int | None, vocab_size: int, max_new_tokens: int) -> None:
    """Validate sampling settings up front, with messages that say what to change."""
    if not isinstance(max_new_tokens, int) or max_new_tokens < 1:
        raise SamplingError(f"max_new_tokens must be a positive integer, got {max_new_tokens!r}.")
    if not isinstance(temperature, (int, float)) or not temperature > 0:
        raise SamplingError(
            f"temperature must be > 0, got {temperature!r}. Use a small value such as 0.1 for nearly "
            "greedy text, 1.0 for the model's own distribution, above 1 for wilder text.")
    if top_k is not None and (not isinstance(top_k, int) or not 1 <= top_k <= vocab_size):
        raise SamplingError(f"top_k must be an integer between 1 and the vocabulary size {vocab_size}, "
                            f"or None to keep every token; got {top_k!r}.")


def next_token_probs(logits: torch.Tensor, temperature: float = 1.0, top_k: int | None = None) -> torch.Tensor:
    """logits (B, V) -> probabilities (B, V) after temperature and top-k."""
    logits = logits.float() / temperature
    if top_k is not None and top_k < logits.size(-1):
        kth_best = torch.topk(logits, top_k, dim=-1).values[:, [-1]]  # (B, 1)
        logits = logits.masked_fill(logits < kth_best, float("-inf"))
    # softmax subtracts the row maximum internally, so large logits cannot overflow
    return torch.softmax(logits, dim=-1)


@torch.no_grad()
def generate(model: torch.nn.Module, idx: torch.Tensor, max_new_tokens: int, temperature: float = 1.0,
             top_k: int | None = None, vocab_size: int | None = None, seed: int | None = None) -> torch.Tensor:
    """Extend idx (B, T) by max_new_tokens sampled tokens -> (B, T + max_new_tokens)."""
    vocab_size = vocab_size or getattr(model, "vocab_size", None)
    if vocab_size is None:
        raise SamplingError("Pass vocab_size= (the model does not expose .vocab_size).")
    check_sampling(temperature, top_k, vocab_size, max_new_tokens)
    if idx.dim() != 2 or idx.size(1) < 1:
        raise SamplingError(f"idx must have shape (batch, at least 1 token), got {tuple(idx.shape)}.")
    block_size = getattr(model, "block_size", None)  # None: no context limit (e.g. the bigram)
    generator = None
    if seed is not None:
        generator = torch.Generator(device=idx.device).manual_seed(seed)
    was_training = model.training
    model.eval()
    for _ in range(max_new_tokens):
        context = idx if block_size is None else idx[:, -block_size:]  # crop to what the model can see
        logits = model(context)[:, -1, :]                                 # (B, V)
        probs = next_token_probs(logits, temperature, top_k)
        next_id = torch.multinomial(probs, num_samples=1, generator=generator)  # (B, 1)
        idx = torch.cat([idx, next_id], dim=1)
    model.train(was_training)
    return idx


def sample_text(model: torch.nn.Module, tokenizer, prompt: str = "\n", max_new_tokens: int = 200,
                temperature: float = 1.0, top_k: int | None = None, seed: int | None = None,
                device: torch.device | str = "cpu") -> str:
    """Prompt in, prompt + continuation out. Unknown prompt characters raise a clear error."""
    if not prompt:
        raise SamplingError("The prompt is empty: give at least one character, e.g. '\\n'.")
    ids = tokenizer.encode(prompt)  # strict: names any character the model has never seen
    idx = torch.tensor([ids], dtype=torch.long, device=device)
    out = generate(model, idx, max_new_tokens, temperature, top_k, vocab_size=tokenizer.vocab_size, seed=seed)
    return tokenizer.decode(out[0].tolist())
