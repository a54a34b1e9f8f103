import pytest
import torch

from course_lib.batching import BatchingError, as_tensor, fixed_batches, get_batch, sequential_batches


def test_targets_are_inputs_shifted_by_one():
    data = torch.arange(100)
    x, y = get_batch(data, batch_size=6, block_size=10, generator=torch.Generator().manual_seed(0))
    assert x.shape == y.shape == (6, 10)
    assert torch.equal(y, x + 1)  # with data = 0..99, "next token" is "+1"
    assert x.dtype == torch.long and x.device.type == "cpu"


def test_blocks_stay_inside_the_data():
    data = torch.arange(12)
    for seed in range(50):
        _, y = get_batch(data, 4, 11, generator=torch.Generator().manual_seed(seed))
        assert y.max() <= 11


def test_split_shorter_than_a_block_is_explained():
    with pytest.raises(BatchingError, match="fewer than one block.*smaller block_size"):
        get_batch(torch.arange(5), 2, block_size=8)


def test_bad_sizes():
    with pytest.raises(BatchingError, match="batch_size"):
        get_batch(torch.arange(50), 0, 4)
    with pytest.raises(BatchingError, match="block_size"):
        get_batch(torch.arange(50), 2, 0)
    with pytest.raises(BatchingError, match="1-D"):
        as_tensor([[1, 2], [3, 4]])


def test_fixed_batches_are_the_same_every_time():
    data = torch.arange(1000)
    a = fixed_batches(data, 3, 4, 8, seed=5)
    b = fixed_batches(data, 3, 4, 8, seed=5)
    assert all(torch.equal(xa, xb) for (xa, _), (xb, _) in zip(a, b))


def test_sequential_batches_predict_every_token_once():
    data = torch.arange(103)
    batches = sequential_batches(data, block_size=10, batch_size=4)
    targets = torch.cat([y.reshape(-1) for _, y in batches])
    assert torch.equal(targets, torch.arange(1, 103))
    assert all(torch.equal(y, x + 1) for x, y in batches)
