"""course_lib.bench: the smoke run writes a row for every model family and measurement, MFU stays
"n/a" on CPU, and the FLOPs and peak tables say what they should."""

import json

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
