import math

import pytest
import torch
from torch import nn

from course_lib.checks import CheckFailed, check_same_outputs
from course_lib.diagnostics import activation_stats_per_block, gradient_norms_per_block
from course_lib.models import GPT, Block, CausalSelfAttention, FeedForward, GPTConfig, causal_mask


def test_causal_mask_is_lower_triangular():
    m = causal_mask(4)
    assert m[2, 2] and m[2, 0] and not m[1, 3] and m.sum() == 10


@pytest.mark.parametrize("n_head", [1, 4])
def test_sdpa_equals_manual_attention(n_head):
    torch.manual_seed(0)
    fast = CausalSelfAttention(32, n_head, block_size=16, impl="sdpa")
    slow = CausalSelfAttention(32, n_head, block_size=16, impl="manual")
    x = torch.randn(3, 16, 32)
    check_same_outputs(fast, slow, x, atol=1e-5)


def test_attention_is_causal():
    torch.manual_seed(0)
    attn = CausalSelfAttention(16, 2, block_size=8).eval()
    x = torch.randn(1, 8, 16)
    changed = x.clone()
    changed[0, 5:] += 10.0  # change the future
    assert torch.allclose(attn(x)[0, :5], attn(changed)[0, :5], atol=1e-6)
    weights = attn.attention_weights(x)
    assert torch.allclose(weights.sum(-1), torch.ones(1, 2, 8))
    assert weights[0, 0, 2, 3:].abs().max() == 0


class LoopHead(nn.Module):
    def __init__(self, C, D):
        super().__init__()
        self.query, self.key, self.value = (nn.Linear(C, D, bias=False) for _ in range(3))

    def forward(self, x):
        T = x.size(1)
        att = (self.query(x) @ self.key(x).transpose(-2, -1)) / math.sqrt(self.key.out_features)
        att = att.masked_fill(~causal_mask(T), float("-inf")).softmax(-1)
        return att @ self.value(x)


def test_loop_of_heads_equals_batched_heads():
    torch.manual_seed(0)
    heads = nn.ModuleList(LoopHead(24, 6) for _ in range(4))
    batched = CausalSelfAttention(24, 4, block_size=10, proj=False)
    batched.load_heads(heads)
    x = torch.randn(2, 10, 24)
    loop = torch.cat([h(x) for h in heads], dim=-1)
    assert torch.allclose(loop, batched(x), atol=1e-6)


def test_check_same_outputs_catches_a_difference():
    a, b = FeedForward(8), FeedForward(8)
    with pytest.raises(CheckFailed, match="differ"):
        check_same_outputs(a, b, torch.randn(2, 3, 8), copy=False)


def test_head_count_must_divide_width():
    with pytest.raises(ValueError, match="divisible"):
        CausalSelfAttention(10, 3)


def tiny(**kw):
    return GPTConfig(vocab_size=11, block_size=8, n_embd=16, n_head=2, n_layer=2, **kw)


def test_gpt_shapes_and_context_limit():
    model = GPT(tiny())
    assert model(torch.zeros(3, 8, dtype=torch.long)).shape == (3, 8, 11)
    with pytest.raises(ValueError, match="block_size"):
        model(torch.zeros(1, 9, dtype=torch.long))


def test_every_milestone_variant_builds_and_runs():
    for flags in (dict(ffn=False, residual=False, layernorm=False), dict(residual=False, layernorm=False),
                  dict(layernorm=False), dict(), dict(dropout=0.2), dict(attn_impl="manual")):
        out = GPT(tiny(**flags))(torch.zeros(2, 5, dtype=torch.long))
        assert out.shape == (2, 5, 11) and torch.isfinite(out).all()


def test_gpt2_style_initialisation():
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=50, block_size=16, n_embd=256, n_head=4, n_layer=8))
    assert model.tok_emb.weight.std().item() == pytest.approx(0.02, rel=0.05)
    proj_std = model.blocks[0].ffn.proj.weight.std().item()
    assert proj_std == pytest.approx(0.02 / math.sqrt(16), rel=0.05)


def test_weight_tying_shares_one_matrix():
    model = GPT(tiny(tie_weights=True))
    assert model.lm_head.weight is model.tok_emb.weight
    untied = GPT(tiny())
    assert model.num_parameters() == untied.num_parameters() - 11 * 16


def test_pre_norm_block_without_residual_differs():
    torch.manual_seed(0)
    with_res = Block(16, 2, 8, residual=True)
    without = Block(16, 2, 8, residual=False)
    without.load_state_dict(with_res.state_dict())
    x = torch.randn(1, 8, 16)
    assert not torch.allclose(with_res(x), without(x))
    assert torch.allclose(with_res(x) - x, with_res.attn(with_res.ln1(x)) +
                          with_res.ffn(with_res.ln2(x + with_res.attn(with_res.ln1(x)))), atol=1e-6)


def test_dropout_only_in_training_mode():
    torch.manual_seed(0)
    model = GPT(tiny(dropout=0.5))
    x = torch.randint(11, (2, 8))
    model.eval()
    assert torch.equal(model(x), model(x))
    model.train()
    assert not torch.equal(model(x), model(x))


def test_diagnostics_report_each_block():
    model = GPT(tiny())
    x, y = torch.randint(11, (2, 8)), torch.randint(11, (2, 8))
    norms = gradient_norms_per_block(model, x, y)
    assert len(norms) == 2 and all(n > 0 for n in norms)
    stats = activation_stats_per_block(model, x)
    assert [s["block"] for s in stats] == [0, 1] and all(s["std"] > 0 for s in stats)
