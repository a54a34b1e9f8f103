import pytest

from course_lib.words import EOL, UNK, Vocab, basic_english, tokenize_lines

# Expected outputs worked out by hand from torchtext's documented basic_english rules
# (lower-case; ' -> " ' ", " removed, . , ( ) ! ? split off, ; : removed, <br /> -> space).
CASES = [
    # the example in torchtext's own documentation of get_tokenizer("basic_english")
    ("You can now install TorchText using pip!",
     ["you", "can", "now", "install", "torchtext", "using", "pip", "!"]),
    ("Don't", ["don", "'", "t"]),
    ("Wren's notebook", ["wren", "'", "s", "notebook"]),
    ('She said "hello" twice.', ["she", "said", "hello", "twice", "."]),
    ("wait...!?", ["wait", ".", ".", ".", "!", "?"]),
    ("3.14 and 1,000", ["3", ".", "14", "and", "1", ",", "000"]),
    ("(the tide)", ["(", "the", "tide", ")"]),
    ("WREN: Why; not", ["wren", "why", "not"]),                      # colon, semicolon removed
    ("a:b;c", ["a", "b", "c"]),
    ("line one<br />line two", ["line", "one", "line", "two"]),
    ("SHOUT<BR />quiet", ["shout", "quiet"]),                        # lower-cased before matching
    ("a<br/>b", ["a<br/>b"]),                                        # only the exact "<br />"
    ('a<br "/>b', ["a", "b"]),                                       # quotes go first, then <br />
    ("Crème brûlée\u2014delicious", ["crème", "brûlée\u2014delicious"]),  # accents, em dash kept
    ("sea-glass -- well", ["sea-glass", "--", "well"]),
    ("ÉCOLE Ünïcode", ["école", "ünïcode"]),
    ("  tabs\tand\nnewlines  ", ["tabs", "and", "newlines"]),
    ("", []),
    ("   ", []),
]


@pytest.mark.parametrize("text, expected", CASES)
def test_basic_english_matches_the_documented_rules(text, expected):
    assert basic_english(text) == expected


def test_basic_english_rejects_non_strings():
    with pytest.raises(TypeError, match="string"):
        basic_english(["a", "list"])


def test_tokenize_lines_turns_each_newline_into_eol():
    assert tokenize_lines("WREN: Hi.\nODO: No.\n") == ["wren", "hi", ".", EOL, "odo", "no", ".", EOL]
    assert tokenize_lines("a\n\nb") == ["a", EOL, EOL, "b"]       # a blank line is two <eol>s
    assert tokenize_lines("no newline") == ["no", "newline"]
    assert tokenize_lines("") == []
    assert tokenize_lines("x\n").count(EOL) == "x\n".count("\n")


TRAIN = "the tide the tide the tide\nwren asks why\nwren asks how\nwren asks\nodo\n"


def test_vocab_specials_min_freq_and_deterministic_order():
    vocab = Vocab.from_text(TRAIN, min_freq=3)
    # specials first; then by count (<eol> excluded: it is special), ties alphabetically
    assert vocab.itos == [UNK, EOL, "asks", "the", "tide", "wren"]
    assert vocab.unk_id == 0 and vocab.eol_id == 1 and len(vocab) == 6
    assert "odo" not in vocab and "why" not in vocab              # seen fewer than 3 times
    assert len(Vocab.from_text(TRAIN, min_freq=1)) == 2 + len({"the", "tide", "wren", "asks", "why", "how", "odo"})
    assert Vocab.from_text(TRAIN).itos == vocab.itos              # default min_freq is 3, same order every time


def test_vocab_maps_unknown_words_to_unk_and_decodes_lines():
    vocab = Vocab.from_text(TRAIN, min_freq=3)
    ids = vocab.encode(tokenize_lines("Wren asks the kraken\nthe tide"))
    assert ids == [vocab.stoi["wren"], vocab.stoi["asks"], vocab.stoi["the"], vocab.unk_id,
                   vocab.eol_id, vocab.stoi["the"], vocab.stoi["tide"]]
    assert vocab.decode(ids) == "wren asks the <unk>\nthe tide"
    assert vocab.decode([vocab.eol_id, vocab.stoi["the"], vocab.eol_id, vocab.eol_id]) == "\nthe\n\n"


def test_vocab_is_built_from_train_only():
    train, val = "tide " * 5, "kraken " * 50
    vocab = Vocab.from_text(train, min_freq=1)
    assert "kraken" not in vocab
    assert set(vocab.encode(tokenize_lines(val))) == {vocab.unk_id}


def test_vocab_round_trips_through_a_dict():
    vocab = Vocab.from_text(TRAIN, min_freq=2)
    again = Vocab.from_dict(vocab.to_dict())
    assert again.itos == vocab.itos and again.stoi == vocab.stoi
    with pytest.raises(ValueError, match="word vocabulary"):
        Vocab.from_dict({"type": "char", "chars": ["a"]})


def test_vocab_clear_errors():
    with pytest.raises(ValueError, match="empty"):
        Vocab.from_text("")
    with pytest.raises(ValueError, match="empty"):
        Vocab.from_text("\n\n  \n")                                  # only <eol>s, no words
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="min_freq"):
            Vocab.from_text(TRAIN, min_freq=bad)
    vocab = Vocab.from_text(TRAIN)
    with pytest.raises(TypeError, match="tokenize_lines"):
        vocab.encode("the tide")                                     # a string, not tokens
    with pytest.raises(ValueError, match="outside the vocabulary"):
        vocab.decode([len(vocab)])
    with pytest.raises(ValueError, match="special tokens"):
        Vocab(["the", "tide"])


def test_literal_special_strings_in_text_do_not_duplicate_entries():
    vocab = Vocab.from_text("<unk> <unk> <unk> sea sea sea", min_freq=1)
    assert vocab.itos == [UNK, EOL, "sea"]
