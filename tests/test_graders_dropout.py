"""The notebook-08 graders: inverted dropout and the GPT forward pass."""

import torch

from course_lib.checks import grade_dropout, grade_gpt_forward


def dropout(x, p, training):
    if not training or p == 0:
        return x
    keep = torch.rand(x.shape) >= p
    return x * keep / (1 - p)


def no_scaling(x, p, training):
    return x * (torch.rand(x.shape) >= p) if training else x


def active_in_eval(x, p, training):
    return x * (torch.rand(x.shape) >= p) / (1 - p)


def p_means_keep(x, p, training):
    return x * (torch.rand(x.shape) < p) / p if training else x


def old_style(x, p, training):  # scales at evaluation instead of training
    return x * (torch.rand(x.shape) >= p) if training else x * (1 - p)


def one_mask_per_row(x, p, training):
    return x * (torch.rand(x.shape[0], 1) >= p) / (1 - p) if training else x


def fixed_mask(x, p, training):
    g = torch.Generator().manual_seed(0)
    return x * (torch.rand(x.shape, generator=g) >= p) / (1 - p) if training else x


def stub(x, p, training):
    raise NotImplementedError  # your code here


def test_dropout_solution_and_torch_pass():
    assert grade_dropout(dropout, quiet=True).passed is True
    assert grade_dropout(lambda x, p, training: torch.nn.functional.dropout(x, p, training), quiet=True).passed


def test_dropout_mistakes_are_named():
    cases = {no_scaling: "not scaled", active_in_eval: "active in evaluation mode", p_means_keep: "DROP",
             old_style: "scale x by (1 - p)", one_mask_per_row: "whole rows", fixed_mask: "the same elements"}
    for fn, phrase in cases.items():
        grade = grade_dropout(fn, quiet=True)
        assert grade.passed is False, fn.__name__
        assert phrase in grade.message, (fn.__name__, grade.message)
    assert grade_dropout(stub, quiet=True).passed is None


def gpt_forward(model, idx):
    T = idx.size(1)
    x = model.drop(model.tok_emb(idx) + model.pos_emb(torch.arange(T, device=idx.device)))
    for block in model.blocks:
        x = block(x)
    return model.lm_head(model.ln_f(x))


def no_positions(model, idx):
    x = model.tok_emb(idx)
    for block in model.blocks:
        x = block(x)
    return model.lm_head(model.ln_f(x))


def no_final_norm(model, idx):
    x = model.tok_emb(idx) + model.pos_emb(torch.arange(idx.size(1)))
    for block in model.blocks:
        x = block(x)
    return model.lm_head(x)


def hidden_only(model, idx):
    x = model.tok_emb(idx) + model.pos_emb(torch.arange(idx.size(1)))
    for block in model.blocks:
        x = block(x)
    return model.ln_f(x)


def positions_from_ids(model, idx):
    x = model.tok_emb(idx) + model.pos_emb(idx)
    for block in model.blocks:
        x = block(x)
    return model.lm_head(model.ln_f(x))


def whole_model(model, idx):
    return model(idx)


def test_gpt_forward_solution_passes_and_mistakes_are_named():
    assert grade_gpt_forward(gpt_forward, quiet=True).passed is True
    cases = {no_positions: "position embeddings are missing", no_final_norm: "final LayerNorm is missing",
             hidden_only: "hidden states", whole_model: "you called the whole model",
             positions_from_ids: "looked up with the token ids"}
    for fn, phrase in cases.items():
        grade = grade_gpt_forward(fn, quiet=True)
        assert grade.passed is False, fn.__name__
        assert phrase in grade.message, (fn.__name__, grade.message)
    assert grade_gpt_forward(lambda model, idx: ..., quiet=True).passed is None
