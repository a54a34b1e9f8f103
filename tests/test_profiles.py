import pytest
import torch

from course_lib import profiles
from course_lib.profiles import resolve_profile, settings_for, setup_notebook


def test_every_notebook_has_all_three_profiles():
    for notebook, by_profile in profiles.SETTINGS.items():
        assert set(by_profile) == set(profiles.PROFILE_NAMES), notebook


def test_smoke_is_smaller_than_cpu_and_cpu_no_bigger_than_gpu():
    for notebook, by_profile in profiles.SETTINGS.items():
        for key in ("max_iters", "block_size", "n_embd"):
            if key in by_profile["cpu"]:
                assert by_profile["smoke"][key] <= by_profile["cpu"][key] <= by_profile["gpu"][key], (notebook, key)


def test_auto_follows_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_profile("auto") == "cpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_profile("auto") == "gpu"


def test_unknown_profile_names_the_choices():
    with pytest.raises(ValueError, match="smoke, cpu, gpu"):
        resolve_profile("huge")


def test_unknown_setting_lists_known_ones():
    cfg = settings_for("bigram", "smoke")
    with pytest.raises(AttributeError, match="batch_size"):
        cfg.n_layers


def test_environment_overrides_notebook_parameters(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("COURSE_PROFILE", "smoke")
    monkeypatch.setenv("COURSE_SEED", "7")
    monkeypatch.setenv("COURSE_OUTPUT_DIR", str(tmp_path / "elsewhere"))
    run = setup_notebook("bigram", profile="gpu", seed=1, output_dir=str(tmp_path / "ignored"))
    assert run.profile == "smoke" and run.seed == 7
    assert run.output_dir == (tmp_path / "elsewhere").resolve()
    assert run.cfg.max_iters == profiles.SETTINGS["bigram"]["smoke"]["max_iters"]
    assert "profile=smoke" in capsys.readouterr().out


def test_bad_seed_in_environment_is_explained(monkeypatch):
    monkeypatch.setenv("COURSE_SEED", "abc")
    with pytest.raises(ValueError, match="COURSE_SEED"):
        setup_notebook("bigram")
