"""course_lib.train_gpt2: the same trajectory on 1 process and on 2 (torchrun, gloo, CPU), exact
resume after an interruption, checkpoints from rank 0 only, clear errors for bad arguments.

Kept fast for a 2-core CI: the tiny preset, T=16, a global batch of 4 sequences, 4 steps, one CPU
thread per process. The single-process and the torchrun runs are real command lines
(subprocesses); the interrupted and resumed runs call main() in this process, which saves two
interpreter starts (importing torch, torch._dynamo for the optimizer and datasets costs ~6 CPU
seconds each) and still builds model, optimizer and data afresh from the checkpoint file.
"""

import json
import os
import subprocess
import sys

import pytest
import torch

from course_lib import train_gpt2
from course_lib.checkpoints import load_model
from course_lib.models import GPT
from course_lib.models.gpt2 import gpt2_config
from course_lib.paths import REPO_ROOT

STEPS = 4
# global batch 4, micro batch 1: 4 accumulation steps on 1 process, 2 on each of 2 processes
COMMON = ["--preset", "gpt2-course-tiny", "--global-batch", "4", "--micro-batch", "1", "--block-size", "16",
          "--lr", "3e-3", "--seed", "7", "--log-every", "1", "--eval-batches", "2"]


def run_cli(out, *extra, nproc=None, cache=None, timeout=240):
    """Run the trainer as a user would; return the finished process (asserting it succeeded)."""
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    if cache is not None:  # module-scoped runs: keep the datasets cache out of the home folder
        env.update(COURSE_CACHE_DIR=str(cache), HF_DATASETS_CACHE=str(cache / "hf"))
    args = ["-m", "course_lib.train_gpt2", *COMMON, "--out", str(out), *extra]
    if nproc:
        # --standalone: torchrun starts its own rendezvous on a free port (it binds port 0), so
        # parallel CI jobs never collide on a fixed MASTER_PORT.
        args = ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}", *args]
    result = subprocess.run([sys.executable, *args], cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                            timeout=timeout)
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


def run_here(out, *extra) -> None:
    """main() in this process, with one thread like the subprocesses (so sums match bit for bit)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        train_gpt2.main([*COMMON, "--out", str(out), *extra])
    finally:
        torch.set_num_threads(threads)


def summary(out):
    return json.loads((out / "summary.json").read_text())


@pytest.fixture(scope="module")
def single(tmp_path_factory):
    out = tmp_path_factory.mktemp("single")
    run_cli(out, "--steps", str(STEPS), cache=tmp_path_factory.mktemp("cache"))
    return out


@pytest.fixture(scope="module")
def ddp(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp")
    result = run_cli(out, "--steps", str(STEPS), nproc=2, cache=tmp_path_factory.mktemp("cache"))
    return out, result.stdout


def test_two_processes_follow_the_single_process_trajectory(single, ddp):
    one, two = summary(single), summary(ddp[0])
    assert one["config"]["world_size"] == 1 and one["config"]["accumulation_steps"] == 4
    assert two["config"]["world_size"] == 2 and two["config"]["accumulation_steps"] == 2
    assert len(one["losses"]) == len(two["losses"]) == STEPS
    # Same global batches, same gradients (up to summation order): the same losses.
    torch.testing.assert_close(torch.tensor(two["losses"]), torch.tensor(one["losses"]), rtol=1e-4, atol=0)
    torch.testing.assert_close(torch.tensor(two["val_losses"]), torch.tensor(one["val_losses"]), rtol=1e-4, atol=0)
    assert one["losses"][-1] < one["losses"][0]  # and it learns something


def test_resume_continues_the_exact_trajectory(single, tmp_path, capsys):
    out = tmp_path / "interrupted"
    run_here(out, "--steps", str(STEPS), "--stop-after", str(STEPS // 2))  # as if pre-empted half-way
    assert f"checkpoint: {out / 'model.safetensors'} (step {STEPS // 2})" in capsys.readouterr().out
    assert summary(out)["finished"] is False and len(summary(out)["losses"]) == STEPS // 2
    run_here(out, "--steps", str(STEPS), "--resume")
    assert f"resumed from {out / 'model.safetensors'} at step {STEPS // 2}" in capsys.readouterr().out
    resumed, uninterrupted = summary(out), summary(single)
    assert resumed["finished"] is True and resumed["resumed_from"] == STEPS // 2
    torch.testing.assert_close(torch.tensor(resumed["losses"]), torch.tensor(uninterrupted["losses"]),
                               rtol=1e-5, atol=0)
    torch.testing.assert_close(torch.tensor(resumed["val_losses"]), torch.tensor(uninterrupted["val_losses"]),
                               rtol=1e-5, atol=0)


def test_only_rank_0_writes_one_complete_checkpoint(ddp):
    out, stdout = ddp
    # no per-rank or .tmp files
    assert sorted(p.name for p in out.iterdir()) == ["model.json", "model.resume.pt", "model.safetensors",
                                                     "summary.json"]
    assert stdout.count("checkpoint: ") == 1          # one writer, one save
    assert stdout.count(f"step {STEPS:6d} | loss") == 1  # and one copy of every log line
    loaded = load_model(out / "model", with_resume=True)
    payload = loaded.resume
    assert payload["step"] == STEPS and payload["rng"]["next_step"] == STEPS
    assert payload["config"]["world_size"] == 2 and payload["config"]["global_batch"] == 4
    assert payload["losses"] == summary(out)["losses"]
    model = loaded.model                             # rebuilt from the metadata alone
    assert model.config == gpt2_config("gpt2-course-tiny", block_size=16)
    assert torch.equal(model.lm_head.weight, model.tok_emb.weight)  # tied again after loading
    assert len(payload["optimizer"]["state"]) == len(list(model.parameters()))  # AdamW moments of each
    assert all(int(s["step"]) == STEPS for s in payload["optimizer"]["state"].values())


def test_existing_checkpoint_needs_resume(single, capsys):
    with pytest.raises(SystemExit, match="already exists. Pass --resume"):
        train_gpt2.main([*COMMON, "--steps", str(STEPS), "--out", str(single)])


def test_global_batch_must_split_into_whole_micro_steps(tmp_path, capsys):
    out = tmp_path / "run"
    with pytest.raises(SystemExit) as err:
        train_gpt2.main([*COMMON[:2], "--global-batch", "6", "--micro-batch", "4", "--out", str(out)])
    assert err.value.code == 2
    message = capsys.readouterr().err
    assert "--global-batch 6 is not a multiple of --micro-batch 4 x 1 process(es) = 4" in message
    assert not out.exists()  # refused before anything was written


def test_world_size_enters_the_divisibility_check(tmp_path, capsys, monkeypatch):
    # As torchrun would set them for rank 0 of 2; the check runs before any process group exists.
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(SystemExit):
        train_gpt2.main([*COMMON[:2], "--global-batch", "4", "--micro-batch", "4", "--out", str(tmp_path)])
    assert "--micro-batch 4 x 2 process(es) = 8" in capsys.readouterr().err


# ----------------------------------------------------------------------------- user errors, one line each

@pytest.fixture
def quick_tokens(monkeypatch):
    """Random BPE ids instead of the tokenized corpus: the error paths below do not need real text."""
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(50257, (3000,), generator=gen)
    monkeypatch.setattr(train_gpt2, "load_tokens", lambda spec: (ids[:2500], ids[2500:]))


@pytest.fixture
def finished(tmp_path, quick_tokens):
    out = tmp_path / "run"
    run_here(out, "--steps", "2", "--pad-vocab", "no")  # explicit: "auto" would pad on a GPU
    return out


def resume_error(out, capsys, *extra) -> str:
    """The one message with which `--resume` refuses the checkpoint in `out`."""
    with pytest.raises(SystemExit) as stop:
        run_here(out, "--steps", "2", "--resume", "--pad-vocab", "no", *extra)
    message = str(stop.value.code)
    assert message.startswith("error: ") and "\n" not in message and "Traceback" not in capsys.readouterr().err
    return message


def test_resume_refuses_corrupt_weights(finished, capsys):
    (finished / "model.safetensors").write_bytes(b"\x00" * 100)
    message = resume_error(finished, capsys)
    assert "cannot resume" in message and "not a readable course checkpoint" in message


def test_resume_refuses_a_corrupt_resume_state(finished, capsys):
    (finished / "model.resume.pt").write_bytes(b"not a torch file")
    assert "model.resume.pt is corrupt" in resume_error(finished, capsys)


def test_resume_refuses_a_checkpoint_without_resume_state(finished, capsys, tokenizer):
    from course_lib.models import GPTConfig
    from course_lib.checkpoints import save_model

    save_model(finished / "model", GPT(GPTConfig(tokenizer.vocab_size, 16, 16, 2, 1)), tokenizer)  # a char GPT
    assert "saved without a resume state" in resume_error(finished, capsys)


@pytest.mark.parametrize("resume", [{"foo": 1}, {"config": [1, 2], "step": 2, "losses": [], "val_losses": []},
                                    {"config": {"warmup_steps": "x"}, "step": 2, "losses": [], "val_losses": []}])
def test_resume_refuses_a_foreign_resume_state(finished, capsys, resume):
    from course_lib.checkpoints import load_model, save_model

    loaded = load_model(finished / "model")
    save_model(finished / "model", loaded.model, loaded.tokenizer, resume=resume)  # another tool's state
    assert "is not a train_gpt2 resume state" in resume_error(finished, capsys)


def test_resume_refuses_an_optimizer_state_of_another_model(finished, capsys):
    from course_lib.checkpoints import load_model, save_model

    loaded = load_model(finished / "model", with_resume=True)
    state = loaded.resume
    del state["save_id"]  # save_model pairs the new files itself
    state["optimizer"]["param_groups"][0]["params"] = [0]  # the group no longer matches this model
    save_model(finished / "model", loaded.model, loaded.tokenizer, resume=state)
    assert "is not a train_gpt2 resume state" in resume_error(finished, capsys)


def test_resume_with_another_vocabulary_padding_says_which_flag(finished, capsys):
    assert "pass --pad-vocab no" in resume_error(finished, capsys, "--pad-vocab", "yes")


def test_resume_with_other_settings_lists_them(finished, capsys):
    assert "seed: checkpoint 7 vs now 8" in resume_error(finished, capsys, "--seed", "8")


@pytest.mark.parametrize("extra, message", [
    (["--device", "gpu"], "Unknown device 'gpu'"),
    (["--device", "cuda:99"], "cuda"),
    (["--seed", str(10**30)], "argument --seed"),
    (["--seed", "-5"], "argument --seed"),
    (["--block-size", "4096"], "longer than the gpt2-course-tiny preset's context of 32"),
    (["--preset", "gpt2", "--block-size", "4096"], "longer than the gpt2 preset's context of 1024"),
    (["--corpus", "no/such/book.txt"], "not found"),
    (["--init", "gpt5"], "No published weights called 'gpt5'"),
    (["--out", "{file}"], "is a file"),
    (["--out", "{file}/inside"], "cannot create the --out folder"),
])
def test_user_errors_are_one_line(extra, message, tmp_path, capsys):
    file = tmp_path / "a_file"
    file.write_text("x")
    argv = [*COMMON, "--steps", "2", "--out", str(tmp_path / "run"), *extra]
    try:
        code = train_gpt2.main([a.replace("{file}", str(file)) for a in argv])
    except SystemExit as stop:
        code = stop.code
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and message in errors[0], err
    assert not (tmp_path / "run" / "model.safetensors").exists()
