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


def test_enabling_tf32_leaves_the_precision_readable():
    """Mixing torch's legacy and per-backend TF32 switches makes get_float32_matmul_precision()
    raise, and torch.compile calls it; enable_tf32 must use one consistent API."""
    from course_lib.device import enable_tf32

    before = torch.get_float32_matmul_precision()
    try:
        enable_tf32()
        assert torch.get_float32_matmul_precision() == "high"
    finally:
        torch.set_float32_matmul_precision(before)


def test_compile_runs_on_cpu_with_a_backend_that_needs_no_compiler():
    from course_lib.device import CompiledModel, compile_model

    model = torch.nn.Linear(4, 3)
    compiled = compile_model(model, torch.device("cpu"), True, backend="aot_eager")
    assert isinstance(compiled, CompiledModel)
    x = torch.randn(2, 4)
    torch.testing.assert_close(compiled(x), model(x))
    assert compiled.failed is None


def test_compile_is_skipped_on_cpu_by_default(capsys):
    from course_lib.device import compile_model

    model = torch.nn.Linear(4, 3)
    assert compile_model(model, torch.device("cpu"), True) is model
    assert "ignored on cpu" in capsys.readouterr().out
    assert compile_model(model, torch.device("cpu"), False) is model


def test_a_failing_compile_falls_back_loudly_for_this_model_only(capsys):
    from course_lib.device import compile_model

    def broken_backend(graph_module, example_inputs):
        raise RuntimeError("no C++ compiler here")

    model = torch.nn.Linear(4, 3)
    compiled = compile_model(model, torch.device("cpu"), True, backend=broken_backend)
    x = torch.randn(2, 4)
    with pytest.warns(RuntimeWarning, match="WITHOUT compiling"):
        out = compiled(x)
    torch.testing.assert_close(out, model(x))                 # the run goes on, eagerly
    assert "no C++ compiler here" in capsys.readouterr().out  # and says why, on screen
    assert "no C++ compiler" in compiled.failed
    from torch import _dynamo
    assert _dynamo.config.suppress_errors is False            # nothing silenced process-wide
