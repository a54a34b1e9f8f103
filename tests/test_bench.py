"""course_lib.bench: the smoke run writes a row for every model family and measurement, MFU stays
"n/a" on CPU, and the FLOPs and peak tables say what they should."""

import json

import pytest
import torch

from course_lib import bench
from course_lib.bench import flops_per_token, matmul_parameters, peak_tflops_for
from course_lib.models import GPT, GPTConfig
from course_lib.models.gpt2 import gpt2_config


def test_smoke_bench_writes_every_family(tmp_path, capsys):
    out = tmp_path / "bench.json"
    threads = torch.get_num_threads()  # the bench sets 1 thread for smoke sizes; give it back after
    try:
        assert bench.main(["--profiles", "smoke", "--steps", "2", "--warmup", "1", "--gen-tokens", "8",
                           "--device", "cpu", "--output", str(out)]) == 0
    finally:
        torch.set_num_threads(threads)
    printed = capsys.readouterr().out
    data = json.loads(out.read_text())
    assert data["device_type"] == "cpu" and data["torch"] == torch.__version__ and data["date"]
    assert data["peak_tflops"] is None and "n/a" in data["peak_source"]
    rows = data["rows"]
    assert {r["family"] for r in rows} == {"bigram", "char_gpt", "lstm", "gpt2"}
    assert all(r["profile"] == "smoke" and r["tokens_per_s"] > 0 for r in rows)
    assert all(r["mfu"] is None for r in rows)  # no invented CPU peak
    kinds = {(r["family"], r["measurement"], r["cache"]) for r in rows}
    for family in ("char_gpt", "gpt2"):
        assert {(family, "train", None), (family, "generate", "none"), (family, "generate", "kv")} <= kinds
    assert ("lstm", "generate", "hidden") in kinds and ("bigram", "train", None) in kinds
    for r in rows:
        if r["measurement"] == "train" and r["family"] in ("char_gpt", "gpt2"):
            assert r["flops_per_token"] > 0 and r["achieved_tflops"] > 0
    # the table is printed, MFU shown as n/a
    assert "generate, KV cache" in printed and "n/a" in printed


def test_flops_per_token_of_gpt2_124m():
    with torch.device("meta"):  # shapes only
        model = GPT(gpt2_config("gpt2"))
    # all 124,439,808 parameters minus the 1024 x 768 position table; the tied matrix counts once
    assert matmul_parameters(model) == 124_439_808 - 1024 * 768
    assert flops_per_token(model, 1024) == 6 * (124_439_808 - 1024 * 768) + 12 * 12 * 768 * 1024


def test_untied_embedding_is_a_lookup_not_a_matmul():
    model = GPT(GPTConfig(80, block_size=16, n_embd=16, n_head=2, n_layer=2))
    assert matmul_parameters(model) == model.num_parameters() - 16 * 16 - 80 * 16


def test_peak_table_names_its_source():
    assert peak_tflops_for("NVIDIA H100 80GB HBM3")[0] == 989.0
    assert peak_tflops_for("NVIDIA H100 PCIe")[0] == 756.0
    assert peak_tflops_for("NVIDIA A100-SXM4-40GB")[0] == 312.0
    peak, source = peak_tflops_for("NVIDIA H100 PCIe")
    assert "datasheet" in source
    assert peak_tflops_for("Some Future GPU")[0] is None


# ----------------------------------------------------------------------------- where the results go

TINY_RUN = ["--profiles", "smoke", "--families", "bigram", "--steps", "1", "--warmup", "0", "--gen-tokens", "2",
            "--device", "cpu"]


def run_bench(argv, capsys):
    threads = torch.get_num_threads()
    try:
        code = bench.main(argv)
    except SystemExit as stop:
        code = stop.code
    finally:
        torch.set_num_threads(threads)
    return (code, *capsys.readouterr())


def test_default_output_is_a_new_file_never_the_reference(tmp_path, capsys):
    from course_lib.paths import REPO_ROOT

    reference = REPO_ROOT / "outputs" / "bench.json"
    before = reference.read_bytes() if reference.exists() else None
    first = run_bench(TINY_RUN, capsys)
    second = run_bench(TINY_RUN, capsys)
    assert first[0] == second[0] == 0
    written = sorted((tmp_path / "outputs" / "bench").glob("bench-*.json"))
    assert len(written) == 2  # two runs, two files: the second never replaces the first
    assert all(json.loads(p.read_text())["rows"] for p in written)
    assert f"written: {written[0]}" in first[1] + second[1]
    assert not (tmp_path / "outputs" / "bench.json").exists()
    assert (reference.read_bytes() if reference.exists() else None) == before


@pytest.fixture
def no_benchmarks(monkeypatch):
    """Any benchmark that starts fails the test: the checks must come first."""
    def refuse(*args, **kwargs):
        raise AssertionError("a benchmark ran before --output was checked")

    monkeypatch.setattr(bench, "bench_case", refuse)


@pytest.mark.parametrize("make, message", [
    (lambda tmp: tmp, "is a folder"),
    (lambda tmp: (tmp / "old.json").write_text("{}") and tmp / "old.json", "already exists: pass --force"),
    (lambda tmp: (tmp / "f").write_text("x") and tmp / "f" / "bench.json", "cannot create the folder"),
])
def test_output_is_checked_before_any_benchmark(make, message, tmp_path, capsys, no_benchmarks):
    target = make(tmp_path)
    code, out, err = run_bench([*TINY_RUN, "--output", str(target)], capsys)
    assert code == 2 and err.startswith("error:") and message in err and err.count("\n") == 1
    assert "done:" not in out
    if target.is_file():
        assert target.read_text() == "{}"  # untouched


def test_force_replaces_an_explicit_output(tmp_path, capsys):
    target = tmp_path / "bench.json"
    target.write_text("{}")
    assert run_bench([*TINY_RUN, "--output", str(target), "--force"], capsys)[0] == 0
    assert json.loads(target.read_text())["rows"]


@pytest.mark.parametrize("argv, message", [
    (["--device", "gpu"], "Unknown device 'gpu'"),
    (["--device", "cuda:99"], "cuda"),
    (["--threads", "0"], "--threads"),
    (["--peak-tflops", "-3"], "--peak-tflops"),
    (["--profiles", "huge"], "Unknown profile 'huge'"),
])
def test_bad_options_are_one_line(argv, message, capsys, no_benchmarks):
    code, _, err = run_bench([*TINY_RUN[:-2], *argv], capsys)
    assert code == 2 and err.startswith("error:") and message in err and "Traceback" not in err
