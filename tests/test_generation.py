import pytest
import torch

from course_lib.generation import SamplingError, generate, next_token_probs, sample_text
from course_lib.models import BigramLM
from course_lib.tokenizers import UnknownCharacterError


@pytest.fixture
def model(tokenizer):
    return BigramLM(tokenizer.vocab_size)


def test_generate_appends_tokens(model, tokenizer):
    out = generate(model, torch.zeros(3, 2, dtype=torch.long), max_new_tokens=5)
    assert out.shape == (3, 7) and out.max() < tokenizer.vocab_size


def test_seeded_sampling_is_reproducible(model, tokenizer):
    a = sample_text(model, tokenizer, "W", 30, seed=4)
    b = sample_text(model, tokenizer, "W", 30, seed=4)
    assert a == b and a.startswith("W") and len(a) == 31


def test_top_k_keeps_only_k_tokens():
    logits = torch.tensor([[1.0, 3.0, 2.0, 0.0]])
    probs = next_token_probs(logits, top_k=2)
    assert (probs > 0).sum() == 2 and probs[0, 1] > probs[0, 2] > 0
    assert torch.allclose(probs.sum(), torch.tensor(1.0))


def test_low_temperature_sharpens():
    logits = torch.tensor([[1.0, 2.0]])
    assert next_token_probs(logits, 0.1)[0, 1] > next_token_probs(logits, 1.0)[0, 1]


def test_huge_logits_do_not_overflow():
    probs = next_token_probs(torch.tensor([[1e4, 1e4 - 1.0, -1e4]]))
    assert torch.isfinite(probs).all()


@pytest.mark.parametrize("temperature", [0, -1.0])
def test_temperature_must_be_positive(model, tokenizer, temperature):
    with pytest.raises(SamplingError, match="temperature must be > 0"):
        sample_text(model, tokenizer, "W", 5, temperature=temperature)


@pytest.mark.parametrize("top_k", [0, -3, 10_000])
def test_top_k_range(model, tokenizer, top_k):
    with pytest.raises(SamplingError, match="top_k must be an integer between 1 and"):
        sample_text(model, tokenizer, "W", 5, top_k=top_k)


def test_max_new_tokens_must_be_positive(model, tokenizer):
    with pytest.raises(SamplingError, match="max_new_tokens"):
        sample_text(model, tokenizer, "W", 0)


def test_prompt_with_unknown_character(model, tokenizer):
    with pytest.raises(UnknownCharacterError, match="not in the vocabulary"):
        sample_text(model, tokenizer, "W\u00e9", 5)


def test_empty_prompt(model, tokenizer):
    with pytest.raises(SamplingError, match="prompt is empty"):
        sample_text(model, tokenizer, "", 5)
