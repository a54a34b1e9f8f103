"""The GPT-2 BPE tokenizer's decode explains bad ids like the other tokenizers (issue 18)."""

import pytest
import torch

from course_lib.bpe import EOT_ID, BPETokenizer
from course_lib.tokenizers import UnknownTokenIdError


@pytest.fixture(scope="module")
def bpe():
    return BPETokenizer()  # the table `make setup` fetched; tests never download


def test_round_trip_and_the_last_id(bpe):
    assert bpe.decode(bpe.encode("Hello world")) == "Hello world"
    assert bpe.decode(torch.tensor([15496, 995])) == "Hello world"
    assert bpe.decode([EOT_ID]) == "<|endoftext|>" and EOT_ID == bpe.vocab_size - 1


@pytest.mark.parametrize("bad, shown", [
    ([50257], "Token id 50257 is"),          # tiktoken: KeyError 'Invalid token for decoding: 50257'
    ([15496, -1], "Token id -1 is"),         # tiktoken: OverflowError
    ([2 ** 40], "Token id 1099511627776 is"),
    (list(range(50300, 50310)), "Token ids 50300, 50301, 50302, 50303, 50304 ... are"),  # padded-vocab rows
])
def test_decode_out_of_range_names_the_id_and_the_range(bpe, bad, shown):
    with pytest.raises(UnknownTokenIdError, match=rf"^{shown} outside the vocabulary \(0\.\.50256\)\..*checkpoint"):
        bpe.decode(bad)


def test_decode_refuses_a_float_instead_of_truncating_it(bpe):
    with pytest.raises(UnknownTokenIdError, match=r"must be integers, got 15496.5"):
        bpe.decode([15496.5])  # tiktoken would decode 15496 without a word
