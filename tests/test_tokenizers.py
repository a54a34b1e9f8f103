import pytest

import numpy as np
import torch

from course_lib.tokenizers import CharTokenizer, UnknownCharacterError, UnknownTokenIdError, check_token_ids


def test_round_trip(tokenizer, small_text):
    assert tokenizer.decode(tokenizer.encode(small_text)) == small_text


def test_vocab_is_sorted_unique_characters():
    tok = CharTokenizer.from_text("banana")
    assert tok.chars == ["a", "b", "n"] and tok.encode("nab") == [2, 0, 1]


def test_unknown_character_strict_names_it_and_the_fix(tokenizer):
    with pytest.raises(UnknownCharacterError, match=r"'\$'.*errors='skip'"):
        tokenizer.encode("Wren$")


def test_unknown_character_skip_and_replace(tokenizer):
    assert tokenizer.decode(tokenizer.encode("W$hy", errors="skip")) == "Why"
    assert tokenizer.decode(tokenizer.encode("W$hy", errors="replace")) == "W?hy"
    with pytest.raises(UnknownCharacterError, match="replacement"):
        tokenizer.encode("W$", errors="replace", replacement="%")


def test_bad_policy_name(tokenizer):
    with pytest.raises(ValueError, match="strict"):
        tokenizer.encode("W", errors="ignore")


def test_decode_out_of_range_names_the_id_the_range_and_the_fix(tokenizer):
    top = tokenizer.vocab_size - 1
    with pytest.raises(UnknownTokenIdError, match=rf"Token id {top + 1} is outside the vocabulary \(0\.\.{top}\)"
                                                  ".*tokenizer saved with that model"):
        tokenizer.decode([0, top + 1])
    with pytest.raises(UnknownTokenIdError, match=r"Token ids -1, -2 are outside"):
        tokenizer.decode([-1, 1, -2])
    assert issubclass(UnknownTokenIdError, ValueError)  # callers that catch ValueError still do


def test_decode_accepts_lists_tensors_and_numpy_but_never_rounds_a_float(tokenizer):
    ids = tokenizer.encode("Why")
    for form in (ids, tuple(ids), torch.tensor(ids), np.array(ids), iter(ids)):
        assert tokenizer.decode(form) == "Why"
    with pytest.raises(UnknownTokenIdError, match=r"must be integers, got 1.7 \(float\)"):
        tokenizer.decode([0, 1.7])  # int(1.7) would have decoded token 1 without a word
    with pytest.raises(UnknownTokenIdError, match="must be integers, got tensor"):
        tokenizer.decode(torch.tensor([ids]))  # a (batch, time) tensor: decode one row at a time
    for single in (3, torch.tensor(3), "abc"):
        with pytest.raises(UnknownTokenIdError, match=r"decode takes a sequence of token ids.*decode\(\[id\]\)"):
            tokenizer.decode(single)


def test_check_token_ids_lists_at_most_five_bad_ids():
    with pytest.raises(UnknownTokenIdError, match=r"Token ids 10, 11, 12, 13, 14 \.\.\. are outside .*\(0\.\.9\)"):
        check_token_ids(range(20), 10)
    assert check_token_ids(np.arange(3), 3) == [0, 1, 2]


def test_empty_text_has_no_vocabulary():
    with pytest.raises(ValueError, match="empty"):
        CharTokenizer.from_text("")


def test_serialisation(tokenizer):
    again = CharTokenizer.from_dict(tokenizer.to_dict())
    assert again.chars == tokenizer.chars
