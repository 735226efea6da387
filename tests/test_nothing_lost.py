"""Nothing lost, nothing run that was not asked for: a run folder is never overwritten by mistake, a checkpoint
cannot run code, a foreign, older or partial checkpoint ends in one line before anything is built, weights
are checked before a save, the progress log survives a torn row."""
import csv
import os

import pytest
import torch

import train
from conftest import TINY, one_line_error, run_script
from extras import runlog
from extras.runlog import Bookkeeper, NonFiniteLoss, ProgressLog
from test_inpaint import TINY as TINY_INPAINT


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """One finished tiny style run: its folder."""
    root = tmp_path_factory.mktemp("runs")
    result = run_script("train.py", *TINY, "--run-dir", str(root), "--name", "a", "--no-progress")
    assert result.returncode == 0, result.stderr[-2000:]
    return root / "a"


def test_a_folder_that_holds_a_run_is_refused_and_named(run):
    before = (run / "progress.csv").read_bytes(), (run / "checkpoint.pt").read_bytes()
    result = run_script("train.py", *TINY, "--run-dir", str(run.parent), "--name", "a", "--no-progress")
    one_line_error(result, f"{run} holds a run: continue it with --resume {run}")
    assert "--set overwrite=true" in result.stderr and "--name NEW" in result.stderr
    assert ((run / "progress.csv").read_bytes(), (run / "checkpoint.pt").read_bytes()) == before


def test_overwrite_starts_over_on_purpose(tmp_path):
    argv = [*TINY, "--run-dir", str(tmp_path), "--name", "b", "--no-progress", "--total-steps", "3"]
    assert run_script("train.py", *argv).returncode == 0
    result = run_script("train.py", *argv, "--set", "overwrite=true")
    assert result.returncode == 0, result.stderr[-2000:]


class Crafted:
    """What a crafted .pt file holds: an object whose unpickling runs code."""

    def __reduce__(self):
        return print, ("CODE RAN FROM THE CHECKPOINT",)


def test_a_crafted_checkpoint_is_refused_without_running_its_code(tmp_path):
    path = tmp_path / "checkpoint.pt"
    torch.save({"args": {"task": "style"}, "planner": Crafted()}, path)
    for script, argv in (("evaluate.py", ["--checkpoint", str(path)]), ("train.py", ["--resume", str(path)])):
        result = run_script(script, *argv)
        one_line_error(result, "cannot read it as a checkpoint")
        assert "CODE RAN" not in result.stdout + result.stderr


def edited(run, tmp_path, edit) -> str:
    """A copy of the run's checkpoint, changed by `edit(state)`, in a folder of its own."""
    state = runlog.read_checkpoint(str(run / "checkpoint.pt"))
    edit(state)
    folder = tmp_path / "edited"
    folder.mkdir()
    torch.save(state, folder / "checkpoint.pt")
    return str(folder / "checkpoint.pt")


@pytest.mark.parametrize("edit, text", [
    (lambda s: s["args"].update(from_the_future=1), "written by another version of the code"),
    (lambda s: s.pop("planner"), "no planner in it"),
    (lambda s: s.pop("critic"), "no critic"),
], ids=["unknown setting", "no networks", "no critic"])
def test_a_foreign_or_partial_checkpoint_ends_in_one_line(run, tmp_path, edit, text):
    path = edited(run, tmp_path, edit)
    one_line_error(run_script("train.py", "--resume", path), text)
    if text != "no critic":  # evaluation needs no critic
        one_line_error(run_script("evaluate.py", "--checkpoint", path), text)


@pytest.mark.parametrize("argv, text", [
    (["--image-size", "64"], "--image-size 64 would change the networks"),
    (["--rl", "off"], "--rl off would change the networks"),
    (["--set", "gamma=2"], "--set gamma=2.0: must be in [0, 1]"),
], ids=["image size", "rl", "a bad value"])
def test_resume_refuses_a_flag_that_changes_the_networks_and_checks_the_rest(run, argv, text):
    one_line_error(run_script("train.py", "--resume", str(run), *argv), text)


def test_resume_of_a_one_step_run_with_rl_on_is_refused(tmp_path):
    result = run_script("train.py", *TINY_INPAINT, "--rl", "off", "--max-episode-steps", "1", "--run-dir",
                        str(tmp_path), "--name", "off", "--no-progress")
    assert result.returncode == 0, result.stderr[-2000:]
    one_line_error(run_script("train.py", "--resume", str(tmp_path / "off"), "--rl", "on"), "--rl on would change")


def test_resume_from_inside_the_run_folder(run, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(run, copy)
    result = run_script("train.py", "--resume", "checkpoint.pt", "--total-steps", "9", "--no-progress", cwd=str(copy))
    assert result.returncode == 0, result.stderr[-2000:]
    assert "resumed from checkpoint.pt at step 6" in result.stdout
    assert runlog.read_checkpoint(str(copy / "checkpoint.pt"))["step"] == 9


def test_evaluate_writes_apart_from_the_final_report(run):
    before = {name: (run / name).read_bytes() for name in ("grid.png", "eval.csv")}
    result = run_script("evaluate.py", "--checkpoint", str(run), "--steps", "1")
    assert result.returncode == 0, result.stderr[-2000:]
    assert (run / "evaluate" / "eval_grid.png").is_file()
    assert {name: (run / name).read_bytes() for name in before} == before


def test_a_non_finite_weight_stops_before_the_save_and_keeps_the_checkpoint_before(tmp_path):
    net = torch.nn.Linear(2, 2)
    modules = {"planner": net, "planner_opt": torch.optim.Adam(net.parameters())}
    books = Bookkeeper.__new__(Bookkeeper)  # the bookkeeping alone, without a task
    books.modules, books.step, books.checkpoint_path = modules, 7, str(tmp_path / "checkpoint.pt")
    (tmp_path / "checkpoint.pt").write_bytes(b"the good one")
    with torch.no_grad():
        net.weight[0, 0] = float("nan")
    with pytest.raises(NonFiniteLoss, match="planner is not finite at step 7"):
        books.checkpoint()
    assert (tmp_path / "checkpoint.pt").read_bytes() == b"the good one"


def test_the_progress_log_drops_a_torn_row_and_rewrites_atomically(tmp_path):
    path = tmp_path / "progress.csv"
    log = ProgressLog(str(path))
    for step in (3, 6, 9):
        log.write({"episode": step // 3, "step": step})
    with open(path, "a") as f:
        f.write("4,12,0")  # the process died in the middle of a row
    ProgressLog(str(path), resume_step=6)
    with open(path) as f:
        assert [r["step"] for r in csv.DictReader(f)] == ["3", "6"]
    assert os.listdir(tmp_path) == ["progress.csv"]


def test_two_writers_never_share_a_temporary_file(tmp_path):
    names = []
    with runlog.atomic_file(str(tmp_path / "checkpoint.pt"), "wb") as a, \
            runlog.atomic_file(str(tmp_path / "checkpoint.pt"), "wb") as b:
        names = [a.name, b.name]
        a.write(b"a"), b.write(b"b")
    assert len(set(names)) == 2 and os.listdir(tmp_path) == ["checkpoint.pt"]


def test_train_main_refuses_a_resume_with_a_bad_flag_before_building(run, monkeypatch):
    monkeypatch.setattr(train, "build", lambda *_: pytest.fail("the task was built"))
    with pytest.raises(SystemExit) as exit_info:
        train.main(["--resume", str(run), "--image-size", "64"])
    assert "would change the networks" in str(exit_info.value.code)
