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


# ---- numerically safe for every accepted setting (issue 18) ----------------------------------

def reference_probs(logits, temperature, top_k=None, top_p=None):
    """The formula as the notebooks teach it; normal settings must match it to the bit."""
    logits = logits.float() / temperature
    if top_k is not None:
        logits = logits.masked_fill(logits < torch.topk(logits, top_k).values[:, [-1]], float("-inf"))
    probs = torch.softmax(logits, dim=-1)
    if top_p is not None:
        sorted_probs, order = torch.sort(probs, dim=-1, descending=True)
        sorted_probs[torch.cumsum(sorted_probs, dim=-1) - sorted_probs >= top_p] = 0.0
        probs = torch.zeros_like(probs).scatter(-1, order, sorted_probs)
        probs = probs / probs.sum(dim=-1, keepdim=True)
    return probs


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_normal_settings_are_bit_identical_to_the_plain_formula(dtype):
    logits = (torch.randn(3, 300, generator=torch.Generator().manual_seed(1)) * 4).to(dtype)
    for temperature in (0.05, 0.5, 0.8, 1.0, 1.7, 10.0):
        for top_k, top_p in ((None, None), (1, None), (40, None), (None, 0.9), (40, 0.5)):
            assert torch.equal(next_token_probs(logits, temperature, top_k, top_p),
                               reference_probs(logits, temperature, top_k, top_p))


EXTREME_LOGITS = {
    "ordinary": torch.tensor([[1.0, 3.0, 2.0, 0.0]]),
    "all negative": torch.tensor([[-5.0, -3.0, -4.0, -1e4]]),
    "huge magnitudes": torch.tensor([[-3e38, 3e38, 1e38, 0.0]]),
    "fp16 near overflow": torch.tensor([[-65504.0, 65504.0, 60000.0, 1.0]]).half(),
    "bf16 huge": torch.tensor([[1e38, 3e38, -3e38, 2.0]]).bfloat16(),
    "fp16 overflowed to inf": torch.tensor([[1.0, float("inf"), 2.0, float("-inf")]]).half(),
}


@pytest.mark.parametrize("temperature", [1e-45, 5e-324, 1e-30, 1e-8, 1e-3])
@pytest.mark.parametrize("name", list(EXTREME_LOGITS))
def test_tiny_temperatures_become_greedy_instead_of_nan(name, temperature):
    logits = EXTREME_LOGITS[name]
    for top_k, top_p in ((None, None), (1, None), (3, None), (None, 1e-12), (2, 0.5)):
        probs = next_token_probs(logits, temperature, top_k, top_p)
        assert torch.isfinite(probs).all()
        assert probs[0, 1] == 1.0  # token 1 is the best in every row above: all the probability
        assert torch.multinomial(probs, 1).item() == 1


def test_tied_best_tokens_share_the_probability_at_tiny_temperature():
    probs = next_token_probs(torch.tensor([[5.0, 5.0, 1.0], [float("inf"), float("inf"), 0.0]]), 1e-40)
    assert probs.tolist() == [[0.5, 0.5, 0.0], [0.5, 0.5, 0.0]]


@pytest.mark.parametrize("temperature", [1e30, 1e308])
def test_huge_temperatures_give_the_uniform_distribution(temperature):
    probs = next_token_probs(torch.tensor([[1.0, 30.0, -20.0, 0.0]]), temperature)
    assert probs.tolist() == [[0.25] * 4]
    assert torch.isfinite(next_token_probs(EXTREME_LOGITS["fp16 overflowed to inf"], temperature)).all()


def test_tiny_temperature_generates_the_greedy_text(model):
    prompt = torch.zeros(2, 1, dtype=torch.long)
    greedy = generate(model, prompt, 30, greedy=True)
    assert torch.equal(generate(model, prompt, 30, temperature=1e-45, seed=1), greedy)
    assert torch.equal(generate(model, prompt, 30, top_k=1, seed=2), greedy)
    assert torch.equal(generate(model, prompt, 30, top_p=1e-12, seed=3), greedy)


@pytest.mark.parametrize("temperature", [float("inf"), float("-inf"), float("nan"), "0.8", None, True,
                                         torch.tensor(0.8), [0.8]])
def test_temperatures_that_cannot_be_honoured_are_refused(model, tokenizer, temperature):
    with pytest.raises(SamplingError, match="temperature must be > 0 and finite"):
        sample_text(model, tokenizer, "W", 5, temperature=temperature)


@pytest.mark.parametrize("top_p", [float("nan"), float("inf"), 0.0, 1.5, "0.9", True])
def test_top_p_that_cannot_be_honoured_is_refused(model, tokenizer, top_p):
    with pytest.raises(SamplingError, match=r"top_p must be in \(0, 1\]"):
        sample_text(model, tokenizer, "W", 5, top_p=top_p)


@pytest.mark.parametrize("top_k", [2.0, "3", True])
def test_top_k_must_be_an_integer(model, tokenizer, top_k):
    with pytest.raises(SamplingError, match="top_k must be an integer"):
        sample_text(model, tokenizer, "W", 5, top_k=top_k)


def test_numpy_numbers_are_accepted(model, tokenizer):
    import numpy as np

    text = sample_text(model, tokenizer, "W", 5, temperature=np.float32(0.7), top_k=np.int64(3),
                       top_p=np.float64(0.9), seed=1)
    assert len(text) == 6


@pytest.mark.parametrize("temperature", [0, -1.0, None, float("inf"), "hot"])
def test_greedy_neither_needs_nor_checks_a_temperature(model, tokenizer, temperature):
    expected = sample_text(model, tokenizer, "W", 20, greedy=True)
    assert sample_text(model, tokenizer, "W", 20, greedy=True, temperature=temperature) == expected
    with pytest.raises(SamplingError, match="top_k"):  # the other settings are still checked
        sample_text(model, tokenizer, "W", 20, greedy=True, temperature=temperature, top_k=0)


class ConstantLogits(torch.nn.Module):
    """A 'model' whose next-token scores are fixed, to feed sampling broken scores."""

    def __init__(self, row):
        super().__init__()
        self.row, self.vocab_size = torch.tensor(row), len(row)

    def forward(self, idx):
        return self.row.expand(idx.size(0), idx.size(1), -1)


@pytest.mark.parametrize("row, problem", [
    ([0.5, float("nan"), 1.0], "contain NaN.*diverged"),
    ([float("nan")] * 3, "contain NaN"),
    ([float("-inf")] * 3, "every token -inf"),
])
@pytest.mark.parametrize("greedy", [False, True])
def test_broken_model_scores_give_a_clear_error(row, problem, greedy):
    with pytest.raises(SamplingError, match=problem):
        generate(ConstantLogits(row), torch.zeros(1, 1, dtype=torch.long), 3, greedy=greedy)


def test_infinite_scores_are_honoured_not_crashed_on():
    model = ConstantLogits([1.0, float("inf"), 2.0])
    out = generate(model, torch.zeros(1, 1, dtype=torch.long), 5, temperature=0.8, seed=0)
    assert out[0, 1:].tolist() == [1] * 5


@pytest.mark.parametrize("top_p", [1e-300, 1e-46, 5e-324])
def test_a_top_p_that_rounds_to_zero_still_keeps_the_best_token(top_p):
    logits = torch.tensor([[0.0, 3.0, 1.0]])
    probs = next_token_probs(logits, 1.0, None, top_p)
    assert torch.equal(probs, torch.tensor([[0.0, 1.0, 0.0]]))
