"""Batches for next-token prediction: x is a block of tokens, y is the same block shifted by one.

    data = [12, 5, 7, 9, 3, ...]          (one long 1-D tensor of token ids)
    x    = [12, 5, 7, 9]                  (B, T)  what the model sees
    y    = [ 5, 7, 9, 3]                  (B, T)  what it must predict at each position
"""

from __future__ import annotations

import torch


class BatchingError(ValueError):
    pass


def as_tensor(ids) -> torch.Tensor:
    """A 1-D int64 tensor of token ids (kept on the CPU; batches move to the device)."""
    data = torch.as_tensor(ids, dtype=torch.long)
    if data.dim() != 1:
        raise BatchingError(f"Token data must be 1-D, got shape {tuple(data.shape)}.")
    return data


def check_fits(data: torch.Tensor, block_size: int, what: str = "this split") -> None:
    if block_size < 1:
        raise BatchingError(f"block_size must be at least 1, got {block_size}.")
    if len(data) < block_size + 1:
        raise BatchingError(
            f"{what} has {len(data)} tokens, fewer than one block of block_size + 1 = {block_size + 1}. "
            "Use a larger corpus or a smaller block_size (a smaller profile, e.g. profile='smoke')."
        )


def get_batch(data: torch.Tensor, batch_size: int, block_size: int, device: torch.device | str = "cpu",
              generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Random contiguous blocks: returns x, y of shape (batch_size, block_size) on `device`."""
    check_fits(data, block_size)
    if batch_size < 1:
        raise BatchingError(f"batch_size must be at least 1, got {batch_size}.")
    starts = torch.randint(len(data) - block_size, (batch_size,), generator=generator)  # (B,)
    # One gather instead of a Python loop of slices: offsets (T,) + starts (B, 1) -> (B, T)
    offsets = torch.arange(block_size)
    index = starts[:, None] + offsets[None, :]
    x, y = data[index], data[index + 1]
    if torch.device(device).type == "cuda":
        # pinned memory + non_blocking lets the copy overlap with GPU work
        return x.pin_memory().to(device, non_blocking=True), y.pin_memory().to(device, non_blocking=True)
    return x.to(device), y.to(device)


def fixed_batches(data: torch.Tensor, n_batches: int, batch_size: int, block_size: int,
                  device: torch.device | str = "cpu", seed: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The same evaluation batches every time, built once: comparable losses, no wasted work."""
    generator = torch.Generator().manual_seed(seed)
    return [get_batch(data, batch_size, block_size, device, generator) for _ in range(n_batches)]


def sequential_batches(data: torch.Tensor, block_size: int, batch_size: int = 64,
                       device: torch.device | str = "cpu") -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Cover a whole split with non-overlapping blocks (for a final, complete evaluation).

    Every token of the split except the first is predicted exactly once, so the summed loss is
    the split's total negative log-likelihood: the number notebook 12 turns into bits/char.
    The tail that does not fill a block becomes one shorter last block.
    """
    check_fits(data, 1)
    n_targets = len(data) - 1
    blocks = []
    for start in range(0, n_targets, block_size):
        length = min(block_size, n_targets - start)
        blocks.append((data[start:start + length], data[start + 1:start + 1 + length]))
    full = [b for b in blocks if len(b[0]) == block_size]
    tail = [b for b in blocks if len(b[0]) != block_size]
    batches = []
    for i in range(0, len(full), batch_size):
        chunk = full[i:i + batch_size]
        x = torch.stack([c[0] for c in chunk]).to(device)  # (B, T)
        y = torch.stack([c[1] for c in chunk]).to(device)  # (B, T)
        batches.append((x, y))
    for x, y in tail:
        batches.append((x[None].to(device), y[None].to(device)))  # (1, T_tail)
    return batches


class SlidingWindowDataset(torch.utils.data.Dataset):
    """Windows of `context_length` tokens taken every `stride` tokens (a torch Dataset).

    stride == context_length: windows touch but do not overlap (each token is a target once);
    stride < context_length: windows overlap (more, correlated examples from little text).
    Item i is (x, y), both (context_length,), with y = x shifted by one token.
    """

    def __init__(self, ids, context_length: int, stride: int):
        self.data = as_tensor(ids)
        if stride < 1:
            raise BatchingError(f"stride must be at least 1, got {stride}.")
        check_fits(self.data, context_length, "the token stream")
        self.context_length, self.stride = context_length, stride
        self.starts = range(0, len(self.data) - context_length, stride)

    def __len__(self) -> int:
        return len(self.starts)

    def __getitem__(self, i: int):
        s = self.starts[i]
        return self.data[s:s + self.context_length], self.data[s + 1:s + 1 + self.context_length]


def make_dataloader(ids, context_length: int, stride: int, batch_size: int, shuffle: bool = True,
                    seed: int = 0, drop_last: bool = True) -> torch.utils.data.DataLoader:
    """A DataLoader over SlidingWindowDataset. num_workers=0 on purpose: worker processes break
    inside notebooks on Windows and macOS, and slicing a tensor is too cheap to need them."""
    dataset = SlidingWindowDataset(ids, context_length, stride)
    if drop_last and len(dataset) < batch_size:
        raise BatchingError(f"Only {len(dataset)} windows for a batch of {batch_size}: use a smaller "
                            "batch_size, a smaller stride or more text.")
    # pin_memory: page-locked batches, so that the trainer's non_blocking copy to a GPU overlaps
    # with the GPU's work (no effect without CUDA).
    return torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, drop_last=drop_last,
                                       num_workers=0, generator=torch.Generator().manual_seed(seed),
                                       pin_memory=torch.cuda.is_available())
