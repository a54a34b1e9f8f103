"""Reproducibility and hardware: one seed for everything, one place that picks the device."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import platform
import random
import warnings

import torch


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy (if present) and torch; return a torch.Generator seeded the same way.

    Same seed + same machine + same software => the same losses, run after run.
    (Across different CPUs/GPUs the low bits of float results may differ.)
    """
    if not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}.")
    random.seed(seed)
    try:
        import numpy as np

        np.random.seed(seed % 2**32)
    except ImportError:  # numpy is optional for the course library
        pass
    torch.manual_seed(seed)  # also seeds every CUDA device
    return torch.Generator().manual_seed(seed)


def mps_is_usable() -> bool:
    return bool(getattr(torch.backends, "mps", None)) and torch.backends.mps.is_available()


def pick_device(preference: str = "auto") -> torch.device:
    """'auto' picks cuda, then mps (Apple GPUs), then cpu. A named device must exist."""
    preference = (preference or "auto").lower()
    if preference == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if mps_is_usable():
            return torch.device("mps")
        return torch.device("cpu")
    if preference.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(
            "device='cuda' was asked for but this torch build sees no CUDA GPU. "
            "Use device='auto' or 'cpu', or install a CUDA build of torch (see README, 'GPU users')."
        )
    if preference == "mps" and not mps_is_usable():
        raise RuntimeError("device='mps' was asked for but MPS is not available here; use 'auto' or 'cpu'.")
    if preference not in ("cpu", "mps") and not preference.startswith("cuda"):
        raise ValueError(f"Unknown device {preference!r}: use 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'.")
    device = torch.device(preference)
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        count = torch.cuda.device_count()
        raise ValueError(f"device={preference!r}: this machine has {count} CUDA GPU(s), numbered 0 to {count - 1}.")
    return device


def set_cpu_threads(profile: str, threads: int | None = None) -> int:
    """The course's CPU thread policy (notebooks, train, bench): every core for the cpu and gpu sizes
    (torch's default is sometimes lower inside containers); 1 for smoke, whose models are so small
    that threads cost more than they save. An explicit `threads`, else OMP_NUM_THREADS (e.g. on a
    shared machine), always wins. Returns the number set."""
    env = os.environ.get("OMP_NUM_THREADS", "")
    if threads is None and env.isdigit() and int(env) > 0:
        threads = int(env)
    if threads is None:
        threads = 1 if profile == "smoke" else max(1, os.cpu_count() or 1)
    torch.set_num_threads(threads)
    return threads


def describe_device(device: torch.device) -> str:
    """One line a student can paste into a bug report."""
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        bf16 = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        hw = f"{name}, {bf16}"
    elif device.type == "mps":
        hw = f"Apple GPU (MPS), {platform.machine()}"
    else:
        hw = f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads of {os.cpu_count()} cores"
    return f"device={device.type} ({hw}) | torch {torch.__version__} | python {platform.python_version()}"


# ----------------------------------------------------------------------------- GPU speed helpers
# Used by training.train, the bench and train_gpt2. On a CPU each one is a no-op or returns None,
# so the same training loop runs everywhere.

def enable_tf32() -> None:
    """Let fp32 matmuls that autocast leaves in fp32 use TF32 tensor cores (10-bit mantissa,
    plenty for training, several times faster than true fp32).

    torch has two ways to say this: the older `set_float32_matmul_precision` and, since 2.9, the
    per-backend `fp32_precision` flags. Mixing them makes `torch.get_float32_matmul_precision()`
    raise, and torch.compile (Inductor) calls it while tuning kernels; so we use the older
    call alone, which every torch since 1.12 understands and which sets both views consistently
    (tests/test_device.py reads the precision back)."""
    torch.set_float32_matmul_precision("high")
    torch.backends.cudnn.allow_tf32 = True


def amp_dtype_for(device: torch.device) -> torch.dtype | None:
    """The autocast dtype on this device: bf16 where the GPU has it (no loss scaling needed),
    fp16 on older GPUs, None (plain fp32) on CPU and MPS, where it would not be faster here."""
    if device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def autocast(device: torch.device, dtype: torch.dtype | None):
    return torch.autocast(device_type=device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()


def synchronize(device: torch.device) -> None:
    """Wait until the accelerator has finished its queued work: GPU calls return before the work
    is done, so a timer read without this measures how fast Python queues kernels."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def can_compile(device: torch.device) -> bool:
    """Whether torch.compile is worth trying here. Its GPU backend writes Triton kernels, so a CUDA
    device needs Triton (Linux CUDA wheels ship it; Windows ones do not). On CPU we do not compile
    by default: building C++ kernels takes about a minute, more than the course's CPU runs save."""
    return device.type == "cuda" and importlib.util.find_spec("triton") is not None


class CompiledModel:
    """Calls a torch.compile'd model, falling back to the plain model if compiling fails.

    torch.compile is lazy: it compiles at the first call, so a missing compiler or an
    unsupported operation shows up there, not when compile() is called. Then we say so loudly
    (a warning and a printed line, with the first line of the error), and carry on eagerly: a
    slower run, never a silent one. Only this model falls back: no process-wide switch such as
    torch._dynamo.config.suppress_errors, which would hide failures of every other model too.

    The compiled module shares its parameters with `model`, so the optimizer, the checkpoints
    and evaluation keep using `model` itself.
    """

    def __init__(self, model: torch.nn.Module, backend=None):
        self.model = model
        self.backend = backend or "inductor"  # a name, or a backend function (tests)
        self.compiled = torch.compile(model, backend=self.backend)
        self.failed: str | None = None

    def __call__(self, *args, **kwargs):
        if self.failed is None:
            try:
                return self.compiled(*args, **kwargs)
            except Exception as err:  # compiler missing, graph break it cannot handle, ...
                root = err
                # torch wraps the real reason in its own errors (__cause__, or .inner_exception)
                while (getattr(root, "inner_exception", None) or root.__cause__) is not None:
                    root = getattr(root, "inner_exception", None) or root.__cause__
                first_line = (str(root).strip().splitlines() or [""])[0][:300]
                self.failed = f"{type(root).__name__}: {first_line}"
                name = getattr(self.backend, "__name__", self.backend)
                message = (f"torch.compile (backend {name}) failed, so this model now runs WITHOUT compiling "
                           f"(slower, same results). Reason: {self.failed}")
                warnings.warn(message, RuntimeWarning, stacklevel=2)
                print(f"warning: {message}", flush=True)
        return self.model(*args, **kwargs)


def compile_model(model: torch.nn.Module, device: torch.device, enabled: bool, backend: str | None = None):
    """`model` itself, or a CompiledModel when compiling is asked for and worthwhile here.

    backend=None: Inductor, on CUDA with Triton only (see can_compile); asked for elsewhere, we
    print why it is skipped. A named backend (e.g. "eager" or "aot_eager", which need no
    compiler) is honoured on any device: the tests use it to run the compile path on a CPU."""
    if not enabled:
        return model
    if backend is None and not can_compile(device):
        print(f"note: compile=True is ignored on {device.type}"
              + ("" if device.type != "cuda" else " without Triton") + ": running the model eagerly.")
        return model
    return CompiledModel(model, backend)
