"""Sampling new text from any model that returns next-token logits (B, T, vocab_size).

Each step: run the model on the context, keep the logits of the last position, divide by the
temperature, optionally keep only the top-k most likely tokens and/or the smallest set of tokens
whose probabilities add up to top_p (nucleus sampling), turn into probabilities, sample.

Models that support a KV cache (the GPT class) can generate with `use_cache=True`: each step then
feeds only the newest token instead of the whole context.

Numerically safe for every setting check_sampling accepts. Dividing by a tiny temperature (1e-30,
even 1e-45) overflows float32 logits to inf, and softmax of inf is NaN; so when that happens we
use the identical formula softmax((x - max x) / T) instead, where every value is <= 0 and can only
underflow to -inf (probability 0), never overflow. Its result is the T -> 0 limit: the best token
(or the tied best tokens, evenly) gets all the probability, i.e. greedy decoding. Normal settings
never take that path, so their seeded samples are unchanged to the bit. A huge temperature
(1e30, 1e308) simply gives the uniform distribution, its T -> infinity limit. What cannot be
honoured (an infinite or NaN temperature, a value that is not a number) is refused up front, and
a model whose scores are NaN gets a SamplingError instead of torch's "probability tensor
contains either inf, nan or element < 0".
"""

from __future__ import annotations

import math
import numbers
import warnings

import torch


class SamplingError(ValueError):
    pass


def _is_real(value) -> bool:
    """An ordinary number: int, float, numpy float; not a bool, a string or a tensor."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def check_sampling(temperature: float, top_k: int | None, vocab_size: int, max_new_tokens: int,
                   top_p: float | None = None, greedy: bool = False) -> None:
    """Validate sampling settings up front, with messages that say what to change.

    greedy=True takes the most likely token every step, so the temperature is not used and not
    checked (any value, even None, is fine).
    """
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, numbers.Integral) or max_new_tokens < 1:
        raise SamplingError(f"max_new_tokens must be a positive integer, got {max_new_tokens!r}.")
    if not greedy and not (_is_real(temperature) and math.isfinite(temperature) and temperature > 0):
        raise SamplingError(
            f"temperature must be > 0 and finite, got {temperature!r}. Use a small value such as 0.1 for "
            "nearly greedy text (or greedy=True), 1.0 for the model's own distribution, above 1 for wilder text.")
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, numbers.Integral)
                              or not 1 <= top_k <= vocab_size):
        raise SamplingError(f"top_k must be an integer between 1 and the vocabulary size {vocab_size}, "
                            f"or None to keep every token; got {top_k!r}.")
    if top_p is not None and not (_is_real(top_p) and 0 < top_p <= 1):  # NaN fails the comparison
        raise SamplingError(f"top_p must be in (0, 1] (e.g. 0.9 keeps the most likely tokens that make up "
                            f"90% of the probability), or None to switch it off; got {top_p!r}.")


def _check_logits(logits: torch.Tensor) -> None:
    """Scores no sampling can use: say what broke instead of letting torch fail on NaN."""
    if torch.isnan(logits).any():
        raise SamplingError(
            "The model's scores (logits) for the next token contain NaN: its weights are broken, usually "
            "by a training run that diverged (a NaN loss). Retrain with a lower learning rate, or load "
            "an earlier checkpoint.")
    if torch.isneginf(logits).all(dim=-1).any():
        raise SamplingError("The model scored every token -inf, so no token is allowed: check the model's "
                            "output (does a mask hide the whole vocabulary?).")


def _scale_without_overflow(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """(logits - row max) / T: the same softmax as logits / T, but no value can exceed 0.

    The best token(s) get exactly 0, so ties stay ties even where the subtraction would give
    inf - inf (logits that are +inf, e.g. an fp16 overflow). (B, V) -> (B, V)
    """
    _check_logits(logits)
    row_max = logits.amax(dim=-1, keepdim=True)                           # (B, 1)
    shifted = (logits - row_max) / temperature                           # <= 0, or NaN for inf / inf
    shifted = shifted.masked_fill(torch.isnan(shifted), float("-inf"))   # below an infinite best: 0
    return torch.where(logits == row_max, 0.0, shifted)


def next_token_probs(logits: torch.Tensor, temperature: float = 1.0, top_k: int | None = None,
                     top_p: float | None = None) -> torch.Tensor:
    """logits (B, V) -> probabilities (B, V) after temperature, top-k and top-p."""
    logits = logits.float()            # fp16/bf16 logits: compute in float32
    temperature = float(temperature)   # a Python float stays bit-for-bit the same
    scaled = logits / temperature
    if not torch.isfinite(scaled.amax(dim=-1)).all():
        # a tiny temperature (or inf/NaN logits) overflowed: see the module docstring
        scaled = _scale_without_overflow(logits, temperature)
    logits = scaled
    if top_k is not None and top_k < logits.size(-1):
        kth_best = torch.topk(logits, int(top_k), dim=-1).values[:, [-1]]  # (B, 1)
        logits = logits.masked_fill(logits < kth_best, float("-inf"))
    # softmax subtracts the row maximum internally, so large logits cannot overflow
    probs = torch.softmax(logits, dim=-1)
    if top_p is not None and top_p < 1.0:
        sorted_probs, order = torch.sort(probs, dim=-1, descending=True)   # (B, V)
        mass_before = torch.cumsum(sorted_probs, dim=-1) - sorted_probs    # probability of better tokens
        drop = mass_before >= top_p
        drop[:, 0] = False  # the best token always stays (a top_p that rounds to 0 in fp32 must not drop it)
        sorted_probs[drop] = 0.0
        probs = torch.zeros_like(probs).scatter(-1, order, sorted_probs)
        probs = probs / probs.sum(dim=-1, keepdim=True)
    return probs


def _pick(logits, temperature, top_k, top_p, greedy, generator):
    if greedy:
        if not torch.isfinite(logits.amax(dim=-1)).all():
            _check_logits(logits)  # NaN would make argmax pick garbage without a word
        return torch.argmax(logits, dim=-1, keepdim=True)                   # (B, 1)
    probs = next_token_probs(logits, temperature, top_k, top_p)
    return torch.multinomial(probs, num_samples=1, generator=generator)     # (B, 1)


@torch.no_grad()
def iter_generate(model: torch.nn.Module, idx: torch.Tensor, max_new_tokens: int, temperature: float = 1.0,
                  top_k: int | None = None, top_p: float | None = None, greedy: bool = False,
                  stop_token: int | None = None, use_cache: bool = False, vocab_size: int | None = None,
                  seed: int | None = None):
    """Like generate(), but yields each new (B, 1) token as soon as it exists (for streaming)."""
    vocab_size = vocab_size or getattr(model, "vocab_size", None)
    if vocab_size is None:
        raise SamplingError("Pass vocab_size= (the model does not expose .vocab_size).")
    check_sampling(temperature, top_k, vocab_size, max_new_tokens, top_p, greedy=greedy)
    if idx.dim() != 2 or idx.size(1) < 1:
        raise SamplingError(f"idx must have shape (batch, at least 1 token), got {tuple(idx.shape)}.")
    block_size = getattr(model, "block_size", None)  # None: no context limit (e.g. an RNN)
    if block_size is not None and block_size > 1 and idx.size(1) > block_size:
        warnings.warn(f"The prompt has {idx.size(1)} tokens but the model sees at most {block_size}; "
                      f"only the last {block_size} are used.", stacklevel=3)
    if use_cache and not hasattr(model, "new_cache"):
        raise SamplingError(f"{type(model).__name__} has no KV cache; call generate(..., use_cache=False).")
    generator = torch.Generator(device=idx.device).manual_seed(seed) if seed is not None else None
    was_training = model.training
    model.eval()
    finished = torch.zeros(idx.size(0), dtype=torch.bool, device=idx.device)
    cache = None
    try:
        for _ in range(max_new_tokens):
            if use_cache:
                if cache is None or cache.length >= block_size:
                    # (re)fill the cache with the most recent context, then feed one token at a time
                    keep = block_size if cache is None else max(1, block_size // 2)
                    cache = model.new_cache()
                    logits = model(idx[:, -keep:], cache)[:, -1, :]
                else:
                    logits = model(idx[:, -1:], cache)[:, -1, :]            # (B, V)
            else:
                context = idx if block_size is None else idx[:, -block_size:]  # what the model can see
                logits = model(context)[:, -1, :]                           # (B, V)
            next_id = _pick(logits, temperature, top_k, top_p, greedy, generator)
            idx = torch.cat([idx, next_id], dim=1)
            yield next_id
            if stop_token is not None:
                finished |= next_id.squeeze(1) == stop_token
                if finished.all():
                    break
    finally:
        model.train(was_training)


def generate(model: torch.nn.Module, idx: torch.Tensor, max_new_tokens: int, temperature: float = 1.0,
             top_k: int | None = None, top_p: float | None = None, greedy: bool = False,
             stop_token: int | None = None, use_cache: bool = False, vocab_size: int | None = None,
             seed: int | None = None) -> torch.Tensor:
    """Extend idx (B, T) by up to max_new_tokens tokens -> (B, T + new).

    stop_token: stop once every row has produced it (e.g. GPT-2's <|endoftext|>).
    use_cache: reuse keys/values (models with .new_cache()). Identical to the uncached result
    while the text fits the context; once it is full, the cache restarts from the last half
    context (the uncached path slides by one token instead, so long outputs may differ).
    """
    new = list(iter_generate(model, idx, max_new_tokens, temperature, top_k, top_p, greedy, stop_token,
                             use_cache, vocab_size, seed))
    return torch.cat([idx, *new], dim=1)


def sample_text(model: torch.nn.Module, tokenizer, prompt: str = "\n", max_new_tokens: int = 200,
                temperature: float = 1.0, top_k: int | None = None, seed: int | None = None,
                device: torch.device | str = "cpu", top_p: float | None = None, greedy: bool = False,
                use_cache: bool = False, stop_token: int | None = None) -> str:
    """Prompt in, prompt + continuation out. Unknown prompt characters raise a clear error."""
    if not prompt:
        raise SamplingError("The prompt is empty: give at least one character, e.g. '\\n'.")
    ids = tokenizer.encode(prompt)  # strict: names any character the model has never seen
    idx = torch.tensor([ids], dtype=torch.long, device=device)
    out = generate(model, idx, max_new_tokens, temperature, top_k, top_p, greedy, stop_token, use_cache,
                   vocab_size=tokenizer.vocab_size, seed=seed)
    return tokenizer.decode(out[0].tolist())
