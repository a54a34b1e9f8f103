"""The notebook-01 graders: the right answers pass, each typical mistake is named."""

import torch

from course_lib.checks import grade_get_batch, grade_unigram_loss

# ----------------------------------------------------------------------------- get_batch

def get_batch(data, batch_size, block_size, generator=None):
    starts = torch.randint(len(data) - block_size, (batch_size,), generator=generator)  # (B,)
    x = torch.stack([data[i:i + block_size] for i in starts])          # (B, T)
    y = torch.stack([data[i + 1:i + 1 + block_size] for i in starts])  # (B, T)
    return x, y


def as_loop_with_low(data, batch_size, block_size, generator=None):  # another right way to write it
    starts = torch.randint(0, len(data) - block_size, (batch_size,), generator=generator).tolist()
    chunks = [data[i:i + block_size + 1] for i in starts]
    return torch.stack([c[:-1] for c in chunks]), torch.stack([c[1:] for c in chunks])


def y_not_shifted(data, batch_size, block_size, generator=None):
    x, _ = get_batch(data, batch_size, block_size, generator)
    return x, x.clone()


def shifted_backwards(data, batch_size, block_size, generator=None):
    starts = torch.randint(1, len(data) - block_size, (batch_size,), generator=generator)
    return (torch.stack([data[i:i + block_size] for i in starts]),
            torch.stack([data[i - 1:i - 1 + block_size] for i in starts]))


def past_the_end(data, batch_size, block_size, generator=None):  # +1: the last start has no full y
    starts = torch.randint(len(data) - block_size + 1, (batch_size,), generator=generator)
    return (torch.stack([data[i:i + block_size] for i in starts]),
            torch.stack([data[i + 1:i + 1 + block_size] for i in starts]))


def past_the_end_by_index(data, batch_size, block_size, generator=None):
    starts = torch.randint(len(data) - block_size + 1, (batch_size,), generator=generator)
    index = starts[:, None] + torch.arange(block_size)
    return data[index], data[index + 1]


def loses_the_last_block(data, batch_size, block_size, generator=None):  # -1: one start too few
    starts = torch.randint(len(data) - block_size - 1, (batch_size,), generator=generator)
    return (torch.stack([data[i:i + block_size] for i in starts]),
            torch.stack([data[i + 1:i + 1 + block_size] for i in starts]))


def one_start_for_all(data, batch_size, block_size, generator=None):
    i = torch.randint(len(data) - block_size, (1,), generator=generator).item()
    x, y = data[i:i + block_size], data[i + 1:i + 1 + block_size]
    return x.repeat(batch_size, 1), y.repeat(batch_size, 1)


def ignores_the_generator(data, batch_size, block_size, generator=None):
    return get_batch(data, batch_size, block_size)


def floats(data, batch_size, block_size, generator=None):
    x, y = get_batch(data, batch_size, block_size, generator)
    return x.float(), y.float()


def transposed(data, batch_size, block_size, generator=None):
    x, y = get_batch(data, batch_size, block_size, generator)
    return x.T, y.T


def x_with_one_token_too_many(data, batch_size, block_size, generator=None):
    starts = torch.randint(len(data) - block_size, (batch_size,), generator=generator)
    return (torch.stack([data[i:i + block_size + 1] for i in starts]),
            torch.stack([data[i + 1:i + 1 + block_size] for i in starts]))


def lists(data, batch_size, block_size, generator=None):
    x, y = get_batch(data, batch_size, block_size, generator)
    return x.tolist(), y.tolist()


def stub(data, batch_size, block_size, generator=None):
    raise NotImplementedError  # your code here


def test_right_get_batches_pass_and_the_library_match_is_noticed():
    grade = grade_get_batch(get_batch, quiet=True)
    assert grade.passed is True, grade.message
    assert "course_lib.batching.get_batch" in grade.message
    other = grade_get_batch(as_loop_with_low, quiet=True)
    assert other.passed is True, other.message


def test_typical_get_batch_mistakes_are_named():
    cases = {
        y_not_shifted: "y equals x",
        shifted_backwards: "shifted the wrong way",
        past_the_end: "ran past the end",
        past_the_end_by_index: "ran past the end",
        loses_the_last_block: "the last possible block is lost",
        one_start_for_all: "every row of the batch starts at the same position",
        ignores_the_generator: "pass generator=generator",
        floats: "token ids must stay integers",
        transposed: "transposed",
        x_with_one_token_too_many: "block_size + 1 columns",
        lists: "must be tensors",
    }
    for fn, phrase in cases.items():
        grade = grade_get_batch(fn, quiet=True)
        assert grade.passed is False, fn.__name__
        assert phrase in grade.message, (fn.__name__, grade.message)


def test_grading_leaves_the_global_random_numbers_alone():
    torch.manual_seed(3)
    expected = torch.rand(3)
    torch.manual_seed(3)
    grade_get_batch(ignores_the_generator, quiet=True)
    assert torch.equal(torch.rand(3), expected)


def test_a_get_batch_stub_is_not_attempted():
    assert grade_get_batch(stub, quiet=True).passed is None


# ----------------------------------------------------------------------------- unigram loss

def unigram_loss(train_ids, val_ids, vocab_size):
    counts = torch.bincount(train_ids, minlength=vocab_size).float() + 1  # (V,)
    probs = counts / counts.sum()
    return -torch.log(probs[val_ids]).mean().item()


def unsmoothed(train_ids, val_ids, vocab_size):
    counts = torch.bincount(train_ids, minlength=vocab_size).float()
    return -torch.log((counts / counts.sum())[val_ids]).mean().item()


def no_minus(train_ids, val_ids, vocab_size):
    return -unigram_loss(train_ids, val_ids, vocab_size)


def in_bits(train_ids, val_ids, vocab_size):
    counts = torch.bincount(train_ids, minlength=vocab_size).float() + 1
    return -torch.log2((counts / counts.sum())[val_ids]).mean().item()


def summed(train_ids, val_ids, vocab_size):
    counts = torch.bincount(train_ids, minlength=vocab_size).float() + 1
    return -torch.log((counts / counts.sum())[val_ids]).sum().item()


def counts_the_scored_text(train_ids, val_ids, vocab_size):
    return unigram_loss(val_ids, val_ids, vocab_size)


def not_renormalised(train_ids, val_ids, vocab_size):
    counts = torch.bincount(train_ids, minlength=vocab_size).float() + 1
    return -torch.log(counts[val_ids] / len(train_ids)).mean().item()


def per_character(train_ids, val_ids, vocab_size):
    counts = torch.bincount(train_ids, minlength=vocab_size).float() + 1
    return -torch.log((counts / counts.sum())[val_ids])


def unigram_stub(train_ids, val_ids, vocab_size):
    raise NotImplementedError  # your code here


def test_the_unigram_solution_passes_as_a_float_or_a_tensor():
    assert grade_unigram_loss(unigram_loss, quiet=True).passed is True
    as_tensor = grade_unigram_loss(lambda *a: torch.tensor(unigram_loss(*a)), quiet=True)
    assert as_tensor.passed is True, as_tensor.message


def test_typical_unigram_mistakes_are_named():
    cases = {
        unsmoothed: "add-one smoothing",
        no_minus: "is negative",
        in_bits: "in bits",
        summed: "SUM over the validation characters",
        counts_the_scored_text: "count the TRAINING ids",
        not_renormalised: "do not add up to 1",
        per_character: "return one number",
    }
    for fn, phrase in cases.items():
        grade = grade_unigram_loss(fn, quiet=True)
        assert grade.passed is False, fn.__name__
        assert phrase in grade.message, (fn.__name__, grade.message)


def test_a_unigram_stub_is_not_attempted():
    assert grade_unigram_loss(unigram_stub, quiet=True).passed is None
