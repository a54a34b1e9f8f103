"""Exercise graders for notebook 08 (dropout, and the full GPT forward pass).

grade_dropout(dropout): inverted dropout as a function,

    def dropout(x, p, training):   # x any shape -> same shape

    checked on a large tensor, where the share of zeros and the value of the survivors are
    measurable: p means "drop" (not "keep"), the survivors are scaled by 1 / (1 - p), evaluation
    mode is the identity, every call draws a new mask, the input is left unchanged.

grade_gpt_forward(gpt_forward): the whole forward pass of a course GPT written from its parts,

    def gpt_forward(model, idx):   # idx (B, T) token ids -> logits (B, T, V)
        model.tok_emb, model.pos_emb, model.drop, model.blocks, model.ln_f, model.lm_head

    compared with the model's own forward on the same weights; the usual omissions (position
    embeddings, the final LayerNorm, the output layer, the blocks) are named when they match.
"""

from __future__ import annotations

import torch

from ..models import GPT, GPTConfig
from .grading import Mistake, call, close, expect, grader

__all__ = ["grade_dropout", "grade_gpt_forward"]


@grader("inverted dropout")
@torch.no_grad()
def grade_dropout(dropout):
    p = 0.25
    x = torch.randn(400, 500, generator=torch.Generator().manual_seed(0)) + 3.0  # (400, 500), no zeros
    original = x.clone()

    # Evaluation mode first: the most common slip, and the one that silently spoils every result.
    out = call(dropout, x, p, False)
    expect(isinstance(out, torch.Tensor), f"return a tensor, not {type(out).__name__}")
    expect(tuple(out.shape) == tuple(x.shape), f"wrong shape: {tuple(out.shape)}, expected {tuple(x.shape)}")
    expect(torch.equal(x, original), "your function changed its input x in place: return a new tensor")
    expect(not (out == 0).any(), "dropout is active in evaluation mode (training=False): there it must return "
                                 "x unchanged, so that validation losses and samples use the whole network")
    expect(not close(out, x * (1 - p)), "in evaluation mode you scale x by (1 - p): with inverted dropout the "
           "scaling already happened during training, so evaluation returns x as it is")
    expect(torch.equal(out, x), "in evaluation mode (training=False) the output must be x itself")

    out = call(dropout, x, p, True)
    expect(tuple(out.shape) == tuple(x.shape), f"wrong shape: {tuple(out.shape)}, expected {tuple(x.shape)}")
    expect(torch.equal(x, original), "your function changed its input x in place: return a new tensor")
    zeroed = (out == 0).float().mean().item()
    expect(zeroed > 0.0, "nothing is dropped in training mode (training=True): zero each element with "
                         "probability p")
    expect(abs(zeroed - (1 - p)) > 0.02, f"{zeroed:.0%} of the elements are zeroed with p = {p}: p is the "
           "probability to DROP an element, not to keep it (keep it when a uniform draw is >= p)")
    expect(abs(zeroed - p) < 0.01, f"{zeroed:.1%} of the elements are zeroed, expected about p = {p:.0%}")
    kept = out != 0
    ratio = out[kept] / x[kept]                                                 # the survivors' scale
    expect(not torch.allclose(ratio, torch.ones_like(ratio)), "the kept elements are not scaled: divide them "
           "by (1 - p), so that the expected value of each element stays x (no 1/(1-p) scaling)")
    expect(not torch.allclose(ratio, torch.full_like(ratio, 1 / p)), "the kept elements are scaled by 1/p: the "
           "right factor is 1/(1 - p), one over the probability to keep")
    expect(not torch.allclose(ratio, torch.full_like(ratio, 1 - p)), "the kept elements are multiplied by "
           "(1 - p): divide by it instead, x / (1 - p)")
    expect(torch.allclose(ratio, torch.full_like(ratio, 1 / (1 - p))),
           f"each kept element should be x / (1 - p) = x * {1 / (1 - p):.4f}")

    again = call(dropout, x, p, True)
    expect(not torch.equal((again == 0), (out == 0)), "two calls dropped exactly the same elements: draw a "
                                                      "new random mask on every call")
    same_in_row = ((out == 0).all(dim=1) | (out != 0).all(dim=1)).float().mean().item()
    expect(same_in_row < 0.5, "whole rows are kept or dropped together: draw one random number per element, "
                              "torch.rand(x.shape)")
    expect(torch.equal(call(dropout, x, 0.0, True), x), "with p = 0 nothing may change, even in training mode")


def _small_gpt(seed: int = 0) -> GPT:
    torch.manual_seed(seed)
    # block_size above the vocabulary: the "positions looked up with token ids" variant stays in range
    model = GPT(GPTConfig(vocab_size=13, block_size=16, n_embd=16, n_head=2, n_layer=2))
    with torch.no_grad():  # gains away from 1, so that a missing or misplaced LayerNorm shows
        for name, p in model.named_parameters():
            if ".ln" in name or name.startswith("ln_f"):
                p.copy_(1 + 0.5 * torch.randn(p.shape))
    return model.eval()


@grader("GPT forward pass")
@torch.no_grad()
def grade_gpt_forward(gpt_forward):
    model = _small_gpt()
    idx = torch.randint(0, 13, (2, 6), generator=torch.Generator().manual_seed(1))  # (B, T) with T < block_size
    B, T = idx.shape
    reference = model(idx)                                                           # (B, T, V)
    C, V = model.config.n_embd, model.vocab_size

    def refuse(*_args, **_kwargs):
        raise Mistake("you called the whole model (model(idx) or model.hidden_states): write the pass from "
                      "its parts, model.tok_emb, model.pos_emb, model.blocks, model.ln_f and model.lm_head")

    model.forward = refuse  # an instance attribute wins over the class's forward: model(idx) lands here
    model.hidden_states = refuse
    out = call(gpt_forward, model, idx)
    expect(isinstance(out, torch.Tensor), f"return a tensor, not {type(out).__name__}")
    expect(tuple(out.shape) != (B, T, C), f"the output has shape (B, T, C) = {(B, T, C)}: these are hidden "
           "states; finish with the output layer, model.lm_head, to get logits (B, T, V)")
    expect(tuple(out.shape) == (B, T, V), f"wrong shape: {tuple(out.shape)}, expected (B, T, V) = {(B, T, V)}")
    if close(out, reference):
        return

    pos = model.pos_emb(torch.arange(T))                                            # (T, C)

    def finish(x, blocks=True, norm=True):
        if blocks:
            for block in model.blocks:
                x = block(x)
        return model.lm_head(model.ln_f(x) if norm else x)

    tok = model.tok_emb(idx)                                                         # (B, T, C)
    expect(not close(out, finish(tok)), "the position embeddings are missing: the blocks' input is "
           "tok_emb(idx) + pos_emb(positions 0..T-1); without them the model cannot tell where a character is")
    expect(not close(out, finish(tok + model.pos_emb(idx))), "the position embedding is looked up with the "
           "token ids: it takes the positions, torch.arange(T)")
    expect(not close(out, finish(tok + pos, norm=False)), "the final LayerNorm is missing: apply model.ln_f "
           "to the stream after the last block, before model.lm_head")
    expect(not close(out, finish(tok + pos, blocks=False)), "the blocks are missing: run the stream through "
           "every block of model.blocks, in order")
    expect(not close(out, finish(tok + pos, blocks=False, norm=False)),
           "the blocks and the final LayerNorm are missing")
    expect(False, f"the logits differ from the model's by up to {(out - reference).abs().max():.2e}")
