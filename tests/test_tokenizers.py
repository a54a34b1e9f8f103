import pytest

from course_lib.tokenizers import CharTokenizer, UnknownCharacterError


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


def test_decode_out_of_range(tokenizer):
    with pytest.raises(ValueError, match="outside the vocabulary"):
        tokenizer.decode([tokenizer.vocab_size])


def test_empty_text_has_no_vocabulary():
    with pytest.raises(ValueError, match="empty"):
        CharTokenizer.from_text("")


def test_serialisation(tokenizer):
    again = CharTokenizer.from_dict(tokenizer.to_dict())
    assert again.chars == tokenizer.chars
