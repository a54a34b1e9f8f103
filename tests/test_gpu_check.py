"""`make gpu-check` (course_lib/gpu_check.py) is prepared for a GPU machine that may be lent for a
few minutes only: its stages must already run end to end here, in the tiny --quick mode."""

import json

from course_lib import gpu_check


def test_quick_run_passes_every_stage_and_writes_its_report(tmp_path, capsys):
    out = tmp_path / "check.json"
    assert gpu_check.main(["--quick", "--device", "cpu", "--output", str(out)]) == 0
    result = json.loads(out.read_text())
    assert set(result["stages"]) == set(gpu_check.STAGES)
    assert all("error" not in stage for stage in result["stages"].values())
    assert result["stages"]["train_gpt2"]["sample"].startswith("The tide")
    assert "gpu-check summary" in capsys.readouterr().out


def test_without_a_gpu_it_says_so_instead_of_running(tmp_path, capsys):
    assert gpu_check.main(["--device", "cpu", "--output", str(tmp_path / "x.json")]) == 2
    assert "needs a CUDA GPU" in capsys.readouterr().err
    assert not (tmp_path / "x.json").exists()


def test_a_folder_as_output_is_refused_before_any_work(tmp_path, capsys):
    assert gpu_check.main(["--quick", "--device", "cpu", "--output", str(tmp_path)]) == 2
    assert "is a folder" in capsys.readouterr().err
