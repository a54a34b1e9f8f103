"""The graders of notebooks 10 and 10b: the right answer passes, each typical mistake is named."""

import math

import torch

from course_lib.checks import grade_gpt2_parameter_count, grade_kv_chunk, grade_min_p


def stub(*args):
    raise NotImplementedError  # your code here


def failed(grade, *phrases):
    return grade.passed is False and all(p in grade.message for p in phrases)


# ----------------------------------------------------------------------------- parameter count

def count(V, T, L, C, tied, *, twice=False, positions=True, biases=True, norms=True):
    embeddings = V * C * (1 if tied and not twice else 2) + (T * C if positions else 0)
    block = 12 * C * C + (9 * C if biases else 0) + (4 * C if norms else 0)
    return embeddings + L * block + (2 * C if norms else 0)


def test_parameter_count_grader():
    assert grade_gpt2_parameter_count(count, quiet=True).passed is True
    assert grade_gpt2_parameter_count(stub, quiet=True).passed is None
    assert failed(grade_gpt2_parameter_count(lambda *a: count(*a, twice=True), quiet=True), "counted twice")
    assert failed(grade_gpt2_parameter_count(lambda *a: count(*a, positions=False), quiet=True), "position")
    assert failed(grade_gpt2_parameter_count(lambda *a: count(*a, biases=False), quiet=True), "biases")
    assert failed(grade_gpt2_parameter_count(lambda *a: count(*a, norms=False), quiet=True), "LayerNorms")
    assert failed(grade_gpt2_parameter_count(lambda *a: count(*a) + 7, quiet=True), "+7", "part by part")


# ----------------------------------------------------------------------------- cached attention for a chunk

def attend_chunk(attn, x_new, past_k, past_v, *, shift=True, scale=True, mask=True, use_cache=True, proj=True,
                 append=True, softmax_dim=-1):
    q, k, v = attn.split_heads(x_new)                               # (B, H, T, D)
    k_all, v_all = torch.cat([past_k, k], 2), torch.cat([past_v, v], 2)
    keys, values = (k_all, v_all) if use_cache else (k, v)
    P, T = keys.size(2) - q.size(2), q.size(2)
    scores = q @ keys.transpose(-2, -1)
    if scale:
        scores = scores / math.sqrt(q.size(-1))
    if mask:
        allowed = torch.ones(T, P + T, dtype=torch.bool).tril(diagonal=P if shift else 0)
        scores = scores.masked_fill(~allowed, float("-inf"))
    y = torch.softmax(scores, dim=softmax_dim).nan_to_num() @ values
    y = y.transpose(1, 2).reshape(x_new.shape)
    y = attn.proj(y) if proj else y
    return (y, k_all, v_all) if append else (y, past_k, past_v)


def test_kv_chunk_grader():
    assert grade_kv_chunk(attend_chunk, quiet=True).passed is True
    assert grade_kv_chunk(stub, quiet=True).passed is None
    cases = {"the future leaks": dict(mask=False), "not shifted by the cache length": dict(shift=False),
             "sqrt(D)": dict(scale=False), "wrong axis": dict(softmax_dim=-2),
             "output projection": dict(proj=False), "cached keys and values are not used": dict(use_cache=False),
             "append the new keys": dict(append=False)}
    for phrase, mistake in cases.items():
        grade = grade_kv_chunk(lambda *a, m=mistake: attend_chunk(*a, **m), quiet=True)
        assert failed(grade, phrase), (phrase, grade.message)


# ----------------------------------------------------------------------------- min-p

def min_p_filter(probs, min_p, *, absolute=False, renormalise=True, dim=-1):
    threshold = min_p if absolute else min_p * probs.amax(dim=dim, keepdim=True)
    kept = torch.where(probs >= threshold, probs, torch.zeros_like(probs))
    return kept / kept.sum(-1, keepdim=True) if renormalise else kept


def test_min_p_grader():
    assert grade_min_p(min_p_filter, quiet=True).passed is True
    assert grade_min_p(stub, quiet=True).passed is None
    assert failed(grade_min_p(lambda p, m: min_p_filter(p, m, renormalise=False), quiet=True), "not renormalised")
    assert failed(grade_min_p(lambda p, m: min_p_filter(p, m, absolute=True), quiet=True), "absolute probability")
    assert failed(grade_min_p(lambda p, m: min_p_filter(p, m, dim=0), quiet=True), "over the batch")
    assert failed(grade_min_p(lambda p, m: p, quiet=True), "row 0 became")
