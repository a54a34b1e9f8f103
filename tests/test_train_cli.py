"""python -m course_lib.train: every family trains in the smoke profile and the result writes text
through the generator CLI; existing checkpoints are never replaced without --force; every user
error is one `error:` line, exit status 2, and nothing written.

Runs main() in this process (an interpreter start costs more than a smoke training)."""

import pytest
import torch

from course_lib import generate, train
from course_lib.checkpoints import read_meta


@pytest.fixture(autouse=True)
def keep_threads():
    """The CLI sets torch's thread count (1 for smoke sizes), as a notebook would: give it back."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def run(main, argv, capsys):
    """(exit status, stdout, stderr) of a command line, argparse's own exits included."""
    try:
        code = main(argv)
    except SystemExit as stop:
        code = stop.code
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_error_line(code, err, *fragments):
    assert code == 2
    assert "Traceback" not in err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and err.rstrip().endswith(errors[0]), err
    for fragment in fragments:
        assert fragment in errors[0], errors[0]


def generates(checkpoint, capsys, prompt="\n") -> str:
    code, out, err = run(generate.main, ["--checkpoint", str(checkpoint), "--prompt", prompt, "-n", "12",
                                         "--seed", "1"], capsys)
    assert code == 0, err
    assert out.startswith(prompt)
    return out


def test_help_lists_the_four_families(capsys):
    code, out, _ = run(train.main, ["--help"], capsys)
    assert code == 0
    for family, notebook in (("char", "08"), ("lstm", "09"), ("gpt2", "10"), ("finetune", "11")):
        assert family in out and f"notebook {notebook}" in out
    code, out, _ = run(train.main, ["finetune", "--help"], capsys)
    assert code == 0 and "--base" in out and "--profile" in out and "--force" in out


@pytest.mark.parametrize("family, name, options", [
    ("char", "dropout", ["--steps", "6"]),
    ("lstm", "lstm", ["--epochs", "1"]),
])
def test_family_trains_and_generates(family, name, options, tmp_path, capsys):
    code, out, err = run(train.main, [family, "--profile", "smoke", "--seed", "3", *options], capsys)
    assert code == 0, err
    weights = tmp_path / "outputs" / "checkpoints" / f"{name}.safetensors"  # the notebook's name
    meta = read_meta(weights)
    assert (meta["producer"], meta["profile"], meta["corpus"], meta["seed"]) == ("train", "smoke", "bundled", 3)
    assert f"--checkpoint {name}" in out
    assert len(generates(name, capsys)) > 3  # the prompt, some text, the final newline


def test_gpt2_then_finetune_from_it(tmp_path, capsys):
    base = tmp_path / "runs" / "base"
    code, _, err = run(train.main, ["gpt2", "--profile", "smoke", "--steps", "4", "--out", str(base)], capsys)
    assert code == 0, err
    assert read_meta(base)["preset"] == "gpt2-course-tiny"
    folder = tmp_path / "ft"
    folder.mkdir()  # an existing folder: the checkpoint goes to <folder>/model, like train_gpt2 --out
    code, out, err = run(train.main, ["finetune", "--profile", "smoke", "--steps", "3", "--base", str(base),
                                      "--out", str(folder)], capsys)
    assert code == 0, err
    assert "sorting accuracy" in out
    meta = read_meta(folder / "model")
    assert meta["base"] == str(base) and meta["finetune_config"]["max_steps"] == 3
    generates(folder, capsys, prompt="[SORTING] A quiet girl who reads.\nHall:")


def test_existing_checkpoint_is_never_replaced_without_force(tmp_path, capsys):
    argv = ["char", "--profile", "smoke", "--steps", "2", "--out", "mine"]  # a bare name: outputs/checkpoints/
    assert run(train.main, argv, capsys)[0] == 0
    weights = tmp_path / "outputs" / "checkpoints" / "mine.safetensors"
    before = weights.read_bytes()
    code, _, err = run(train.main, [*argv, "--seed", "5"], capsys)
    assert_one_error_line(code, err, "already exists", "--force")
    assert weights.read_bytes() == before
    assert run(train.main, [*argv, "--seed", "5", "--force"], capsys)[0] == 0
    assert weights.read_bytes() != before and read_meta(weights)["seed"] == 5


def _file(tmp_path):
    path = tmp_path / "a_file"
    path.write_text("not a folder")
    return path


ERRORS = [
    (["char", "--device", "gpu"], "Unknown device 'gpu'"),
    (["char", "--device", "tpu:0"], "Unknown device"),
    (["char", "--device", "cuda:99"], "cuda"),
    (["char", "--corpus", "no/such/book.txt"], "not found"),
    (["lstm", "--corpus", "  "], "corpus spec is empty"),
    (["char", "--seed", str(10**30)], "--seed"),
    (["char", "--seed", "-1"], "--seed"),
    (["gpt2", "--seed", "1.5"], "--seed"),
    (["char", "--steps", "0"], "--steps"),
    (["lstm", "--epochs", "-2"], "--epochs"),
    (["char", "--lr", "-1"], "--lr"),
    (["gpt2", "--lr", "nan"], "--lr"),
    (["char", "--batch-size", "0"], "--batch-size"),
    (["gpt2", "--block-size", "4096"], "longer than the gpt2-course-tiny model's context of 32"),
    (["char", "--block-size", "10000000"], "block_size"),
    (["finetune", "--base", "no_such_model"], "No trained checkpoint 'no_such_model'"),
    (["finetune"], "10_gpt2"),  # the default base (notebook 10's GPT-2) does not exist yet
    (["finetune", "--base", "gpt5"], "No trained checkpoint 'gpt5'"),
    (["char", "--profile", "huge"], "--profile"),
    (["rnn"], "invalid choice"),
    (["char", "--out", "{file}/inside"], "cannot create the folder"),
]


@pytest.mark.parametrize("argv, message", ERRORS)
def test_user_errors_are_one_line_and_write_nothing(argv, message, tmp_path, capsys):
    if argv[-1] == "cuda:99" and torch.cuda.device_count() > 99:
        pytest.skip("this machine has 100 GPUs")
    argv = [a.replace("{file}", str(_file(tmp_path))) for a in argv]
    code, _, err = run(train.main, [*argv[:1], "--profile", "smoke", *argv[1:]]
                       if "--profile" not in argv else argv, capsys)
    assert_one_error_line(code, err, message)
    assert not list((tmp_path / "outputs").rglob("*.safetensors"))


def test_cuda_on_a_cpu_only_machine(capsys):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    code, _, err = run(train.main, ["char", "--profile", "smoke", "--device", "cuda"], capsys)
    assert_one_error_line(code, err, "no CUDA GPU")


def test_a_character_model_is_no_finetuning_base(tmp_path, capsys):
    assert run(train.main, ["char", "--profile", "smoke", "--steps", "2"], capsys)[0] == 0
    code, _, err = run(train.main, ["finetune", "--profile", "smoke", "--base", "dropout"], capsys)
    assert_one_error_line(code, err, "GPT-2's BPE tokenizer")
    assert not (tmp_path / "outputs" / "checkpoints" / "finetuned.safetensors").exists()


def test_unexpected_errors_are_one_line_too(monkeypatch, capsys):
    def broken(*args, **kwargs):
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr(train, "TRAINERS", {**train.TRAINERS, "char": broken})
    code, _, err = run(train.main, ["char", "--profile", "smoke"], capsys)
    assert_one_error_line(code, err, "ZeroDivisionError", "COURSE_DEBUG=1")
    monkeypatch.setenv("COURSE_DEBUG", "1")
    with pytest.raises(ZeroDivisionError):
        train.main(["char", "--profile", "smoke", "--force"])
