import pytest
import torch

from course_lib.device import describe_device, pick_device, seed_everything


def test_same_seed_same_numbers():
    seed_everything(3)
    a = torch.randn(5)
    seed_everything(3)
    assert torch.equal(a, torch.randn(5))


def test_negative_seed_is_refused():
    with pytest.raises(ValueError, match="non-negative"):
        seed_everything(-1)


def test_pick_device_auto_and_cpu():
    assert pick_device("cpu").type == "cpu"
    assert pick_device("auto").type in ("cpu", "cuda", "mps")


def test_cuda_requested_without_cuda_is_explained(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(RuntimeError, match="no CUDA"):
        pick_device("cuda")


def test_unknown_device():
    with pytest.raises(ValueError, match="Unknown device"):
        pick_device("tpu")


def test_summary_is_one_line():
    line = describe_device(torch.device("cpu"))
    assert "\n" not in line and "torch" in line and line.startswith("device=cpu")
