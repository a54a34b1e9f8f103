"""Exercise graders for notebooks 10 (GPT-2) and 10b (sampling and the KV cache).

    grade_gpt2_parameter_count(my_count)   10: GPT-2's parameter count from its sizes, in closed form
    grade_kv_chunk(my_attend_chunk)        10b: cached attention for a chunk of new tokens
    grade_min_p(my_min_p_filter)           10b: min-p filtering of a batch of distributions

Each runs the student's function on small cases with known answers and names the first telling
mistake it finds (see grading.py); none of them ever raises.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .grading import Mistake, call, close, expect, grader

__all__ = ["grade_gpt2_parameter_count", "grade_kv_chunk", "grade_min_p"]


# ----------------------------------------------------------------------------- 10: counting parameters

def _built_count(vocab_size: int, block_size: int, n_layer: int, n_embd: int, tie_weights: bool) -> int:
    """The true count: build the model on the meta device (shapes only, no memory) and add up."""
    from ..models import GPT
    from ..models.gpt2 import gpt2_config

    with torch.device("meta"):
        model = GPT(gpt2_config("gpt2", vocab_size=vocab_size, block_size=block_size, n_layer=n_layer,
                                n_head=1, n_embd=n_embd, tie_weights=tie_weights))
    return model.num_parameters()


@grader("GPT-2 parameter count")
def grade_gpt2_parameter_count(count):
    """count(vocab_size, block_size, n_layer, n_embd, tie_weights) -> int, for GPT-2's design
    (biases everywhere, pre-norm blocks, a final LayerNorm, learned positions)."""
    cases = [(50257, 1024, 12, 768, True), (1000, 32, 3, 16, True), (100, 16, 2, 8, False)]
    for V, T, L, C, tied in cases:
        want = _built_count(V, T, L, C, tied)
        got = call(count, V, T, L, C, tied)
        expect(isinstance(got, (int, float)) and not isinstance(got, bool),
               f"the count should be a number, got {type(got).__name__}.")
        if got == want:
            continue
        shown = f"count(vocab_size={V}, block_size={T}, n_layer={L}, n_embd={C}, tie_weights={tied}) = {got:,}"
        # Recognise the common slips by how far off the answer is.
        slips = {
            V * C: "the tied embedding is counted twice: with tie_weights=True the output layer reuses the "
                   "(V, C) token embedding, so that matrix counts once",
            -V * C: "with tie_weights=False the output layer has its own (V, C) matrix: count it too",
            -T * C: "the position embedding (block_size, C) is missing",
            -L * 9 * C: "the biases of the Linear layers are missing (qkv 3C, attention projection C, MLP 4C + C "
                        "per block)",
            -(L * 4 * C + 2 * C): "the LayerNorms are missing (each has a weight and a bias of size C: two per "
                                  "block, plus the final one)",
            -2 * C: "the final LayerNorm (weight and bias, 2C) is missing",
            -L * 13 * C: "only the weight matrices of the blocks are counted (12 C^2 each): add the biases and "
                         "LayerNorms (13 C per block)",
            -L * (8 * C * C + 5 * C): "the MLP is missing (C -> 4C -> C, with biases: 8 C^2 + 5 C per block)",
            -L * (4 * C * C + 4 * C): "the attention is missing (q, k, v and the projection: 4 C^2 + 4 C per block)",
        }
        diff = got - want
        raise Mistake(f"{shown}, expected {want:,} ({diff:+,}): " + slips.get(diff, "compare part by part: token "
                      "embedding V*C, positions T*C, per block 12 C^2 + 13 C, final LayerNorm 2 C") + ".")
    return "124,439,808 for GPT-2 small, and right on the small cases"


# ----------------------------------------------------------------------------- 10b: cached attention for a chunk

def _attend(attn, q, k, v, mask=None, scale=True, softmax_dim=-1, proj=True):
    """Attention of queries q (B, H, Tq, D) over keys/values (B, H, Tk, D), with optional mistakes."""
    B, H, Tq, D = q.shape
    scores = q @ k.transpose(-2, -1)                                   # (B, H, Tq, Tk)
    if scale:
        scores = scores / math.sqrt(D)
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    weights = torch.softmax(scores, dim=softmax_dim)
    weights = torch.nan_to_num(weights)                                # a row of -inf on the wrong axis
    y = (weights @ v).transpose(1, 2).reshape(B, Tq, H * D)            # (B, Tq, C)
    return attn.proj(y) if proj else y


def _variants(attn, x_new, past_k, past_v):
    """The right answer and the answers of typical mistakes, all (B, T_new, C)."""
    q, k, v = attn.split_heads(x_new)                                  # (B, H, T_new, D)
    P, T = past_k.size(2), x_new.size(1)
    k_all, v_all = torch.cat([past_k, k], 2), torch.cat([past_v, v], 2)
    causal = torch.ones(T, P + T, dtype=torch.bool).tril(diagonal=P)   # new token t sees keys 0..P+t
    return {
        "right": _attend(attn, q, k_all, v_all, causal),
        "no mask": _attend(attn, q, k_all, v_all, None),
        "unshifted mask": _attend(attn, q, k_all, v_all, torch.ones(T, P + T, dtype=torch.bool).tril()),
        "no scale": _attend(attn, q, k_all, v_all, causal, scale=False),
        "softmax over queries": _attend(attn, q, k_all, v_all, causal, softmax_dim=-2),
        "no projection": _attend(attn, q, k_all, v_all, causal, proj=False),
        "cache ignored": _attend(attn, q, k, v, torch.ones(T, T, dtype=torch.bool).tril()),
    }


MISTAKES = {
    "no mask": "the future leaks: the new tokens see each other without a mask, so new token t also reads "
               "the tokens after it. Mask the scores so that new token t sees keys 0 .. past + t only",
    "unshifted mask": "the causal mask is not shifted by the cache length: new token t sits at position past + t "
                      "and may see every cached key plus the new ones up to itself. Use "
                      "torch.ones(T, past + T).tril(diagonal=past), not a mask that starts at key 0",
    "no scale": "the scores are not divided by sqrt(D) (D = head size): without it their spread grows with D "
                "and the softmax saturates",
    "softmax over queries": "the softmax runs over the wrong axis: each query's weights over the KEYS (the last "
                            "axis, dim=-1) must sum to 1",
    "no projection": "the heads' outputs are not passed through the output projection attn.proj",
    "cache ignored": "the cached keys and values are not used: the new queries must attend to torch.cat([past_k, "
                     "k_new], dim=2) (and the same for v), the whole sequence so far",
}


@grader("cached attention for a chunk of new tokens")
def grade_kv_chunk(attend_chunk):
    """attend_chunk(attn, x_new (B, T_new, C), past_k, past_v (B, H, P, D)) -> (y (B, T_new, C),
    k_all, v_all (B, H, P + T_new, D)): the same as attention over the whole sequence, last T_new rows."""
    from ..models.attention import CausalSelfAttention

    torch.manual_seed(0)
    attn = CausalSelfAttention(n_embd=12, n_head=3, block_size=16, bias=True, impl="manual").eval()
    with torch.no_grad():
        for P, T in ((5, 1), (4, 3), (0, 4)):                          # one token; a chunk; an empty cache
            x = torch.randn(2, P + T, 12)                                # the whole sequence (B, P + T, C)
            full = attn(x)[:, P:]                                        # what the cache must reproduce
            _, past_k, past_v = attn.split_heads(x[:, :P])               # (B, H, P, D) each
            out = call(attend_chunk, attn, x[:, P:].clone(), past_k.clone(), past_v.clone())
            expect(isinstance(out, (tuple, list)) and len(out) == 3,
                   f"attend_chunk should return (y, k_all, v_all), got {type(out).__name__}.")
            y, k_all, v_all = out
            where = f"with {P} cached and {T} new token(s)"
            expect(tuple(y.shape) == tuple(full.shape),
                   f"{where}, y has shape {tuple(y.shape)}, expected (B, T_new, C) = {tuple(full.shape)}.")
            expect(tuple(k_all.shape) == tuple(v_all.shape) == (2, 3, P + T, 4),
                   f"{where}, the returned keys/values have shapes {tuple(k_all.shape)} / {tuple(v_all.shape)}, "
                   f"expected (B, H, P + T_new, D) = (2, 3, {P + T}, 4): append the new keys and values to the "
                   "cache (torch.cat along dim=2) and return them.")
            k_new = attn.split_heads(x[:, P:])[1]
            expect(close(k_all[:, :, :P], past_k) and close(k_all[:, :, P:], k_new),
                   f"{where}, the returned keys are not the cached keys followed by the new tokens' keys.")
            if close(y, full, atol=1e-5):
                continue
            for name, answer in _variants(attn, x[:, P:], past_k, past_v).items():
                if name != "right" and close(y, answer, atol=1e-5):
                    raise Mistake(f"{where}: {MISTAKES[name]}.")
            raise Mistake(f"{where}, y differs from attention over the whole sequence by up to "
                          f"{(y - full).abs().max().item():.2e}.")
    return "same as attention over the whole sequence, for 1 and several new tokens"


# ----------------------------------------------------------------------------- 10b: min-p

def _min_p(probs: torch.Tensor, min_p: float, absolute=False, renormalise=True, dim=-1) -> torch.Tensor:
    threshold = min_p if absolute else min_p * probs.max(dim=dim, keepdim=True).values
    kept = probs * (probs >= threshold)
    return kept / kept.sum(-1, keepdim=True) if renormalise else kept


@grader("min-p filter")
def grade_min_p(min_p_filter):
    """min_p_filter(probs (B, V), min_p) -> probs (B, V): keep the tokens with probability at least
    min_p times the best token's, zero the rest, renormalise each row to sum to 1."""
    probs = torch.tensor([[0.50, 0.30, 0.10, 0.06, 0.04],     # min_p 0.1 -> threshold 0.05: keeps 4
                          [0.22, 0.20, 0.20, 0.19, 0.19],     # flat: keeps all
                          [0.02, 0.90, 0.04, 0.01, 0.03]])    # peaked, best token not first: keeps 1
    for min_p in (0.1, 0.3):
        got = call(min_p_filter, probs.clone(), min_p)
        expect(isinstance(got, torch.Tensor) and tuple(got.shape) == tuple(probs.shape),
               f"the result should be a tensor of the input's shape {tuple(probs.shape)} (B, V), got "
               f"{tuple(got.shape) if isinstance(got, torch.Tensor) else type(got).__name__}.")
        want = _min_p(probs, min_p)
        if close(got, want):
            continue
        if close(got, _min_p(probs, min_p, renormalise=False)):
            raise Mistake(f"the kept probabilities are not renormalised: each row should sum to 1 (row sums "
                          f"{[round(v, 3) for v in got.sum(-1).tolist()]}). Divide by the row's sum.")
        if close(got, _min_p(probs, min_p, absolute=True)) or close(got, _min_p(probs, min_p, True, False)):
            raise Mistake(f"the threshold is the absolute probability {min_p}: min-p scales it by the best "
                          f"token's probability (threshold = min_p * max), so it is strict where the model is "
                          "sure and loose where it is not.")
        if close(got, _min_p(probs, min_p, dim=0)):
            raise Mistake("the best token is taken over the batch (dim 0): take each row's own maximum "
                          "(probs.max(dim=-1, keepdim=True)).")
        if bool((got.argmax(-1) != probs.argmax(-1)).any()) or bool((got.max(-1).values == 0).any()):
            raise Mistake("the most likely token must always stay (its probability is min_p times itself "
                          "at most, so it always passes the threshold).")
        raise Mistake(f"with min_p = {min_p}, row 0 became {[round(v, 3) for v in got[0].tolist()]}, expected "
                      f"{[round(v, 3) for v in want[0].tolist()]}.")
    logits = torch.randn(4, 50) * 3
    big = F.softmax(logits, -1)
    expect(close(call(min_p_filter, big.clone(), 0.05), _min_p(big, 0.05)),
           "right on the small examples, but not on a (4, 50) batch of random distributions: does it assume "
           "a vocabulary of 5 or a batch of 3?")
    return "relative threshold, renormalised, row by row"
