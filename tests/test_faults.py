"""Surviving faults: atomic checkpoints, SIGKILL then --resume, Ctrl-C, and non-finite losses."""
import csv
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

import runlog
import train
from conftest import ROOT, TINY
from train import Args


def tiny_modules():
    torch.manual_seed(0)
    net = torch.nn.Linear(3, 2)
    return {"planner": net, "planner_opt": torch.optim.Adam(net.parameters())}


def save(path, step, modules):
    runlog.save_checkpoint(str(path), Args(), modules, torch.tensor(0.0), step, 1, 1, torch.Generator(),
                           torch.Generator())


def test_a_partly_written_checkpoint_never_replaces_a_good_one(tmp_path, monkeypatch):
    path = tmp_path / "checkpoint.pt"
    modules = tiny_modules()
    save(path, 10, modules)
    good = path.read_bytes()

    def crash_halfway(state, f):  # the disk fills, or the process dies, in the middle of writing
        f.write(b"PK\x03\x04 half of a checkpoint")
        raise OSError("No space left on device")
    monkeypatch.setattr(runlog.torch, "save", crash_halfway)
    with pytest.raises(OSError):
        save(path, 20, modules)
    assert path.read_bytes() == good
    assert runlog.read_checkpoint(str(path))["step"] == 10
    assert os.listdir(tmp_path) == ["checkpoint.pt"]  # the temporary file is cleaned up


def read_steps(run):
    with open(os.path.join(run, "progress.csv"), newline="") as f:
        return [int(r["step"]) for r in csv.DictReader(f)]


def start(argv, **kw):
    return subprocess.Popen([sys.executable, os.path.join(ROOT, "train.py"), *argv], cwd=ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, "OMP_NUM_THREADS": "1"},
                            **kw)


def wait_for_checkpoint(process, path, timeout=120):
    deadline = time.time() + timeout
    while not os.path.isfile(path):
        assert process.poll() is None, process.communicate()[1][-2000:]
        assert time.time() < deadline, "no checkpoint written"
        time.sleep(0.05)


def test_sigkill_mid_training_then_resume_continues(tmp_path):
    run = str(tmp_path / "k")
    process = start([*TINY, "--total-steps", "3000", "--run-dir", str(tmp_path), "--name", "k", "--no-progress"])
    wait_for_checkpoint(process, os.path.join(run, "checkpoint.pt"))
    time.sleep(0.5)                       # a few more episodes, some of them past the last checkpoint
    process.send_signal(signal.SIGKILL)
    process.communicate()
    assert process.returncode == -signal.SIGKILL
    saved = runlog.read_checkpoint(os.path.join(run, "checkpoint.pt"))["step"]
    assert 0 < saved < 3000
    result = subprocess.run([sys.executable, os.path.join(ROOT, "train.py"), "--resume", run, "--total-steps",
                             str(saved + 6)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"at step {saved} " in result.stdout
    steps = read_steps(run)
    assert steps == sorted(set(steps)) and steps[-1] == saved + 6  # rows after the checkpoint were dropped
    assert runlog.read_checkpoint(os.path.join(run, "checkpoint.pt"))["step"] == saved + 6


def test_ctrl_c_saves_a_checkpoint_and_says_how_to_resume(tmp_path):
    run = str(tmp_path / "c")
    process = start([*TINY, "--total-steps", "3000", "--run-dir", str(tmp_path), "--name", "c", "--no-progress"])
    wait_for_checkpoint(process, os.path.join(run, "checkpoint.pt"))
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 1
    assert err.strip().splitlines()[-1].startswith("interrupted at step") and f"--resume {run}" in err
    saved = runlog.read_checkpoint(os.path.join(run, "checkpoint.pt"))["step"]
    assert 0 < saved and read_steps(run)[-1] <= saved   # saved where it stopped, mid-episode or not


def test_a_non_finite_loss_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch, capsys):
    calls = []

    def critic_loss_going_nan(q1, q2, target):  # the 4th critic update (at step 4) goes NaN
        calls.append(1)
        loss = train_critic_loss(q1, q2, target)
        return loss * float("nan") if len(calls) >= 4 else loss
    train_critic_loss = train.critic_loss
    monkeypatch.setattr(train, "critic_loss", critic_loss_going_nan)
    with pytest.raises(SystemExit) as stop:
        train.main([*TINY, "--total-steps", "12", "--run-dir", str(tmp_path), "--name", "n", "--no-progress"])
    message = str(stop.value.code)
    assert len(message.splitlines()) == 1
    assert message.startswith("error: critic_loss is nan at step 4: training stopped; the last good checkpoint is")
    state = runlog.read_checkpoint(str(tmp_path / "n" / "checkpoint.pt"))
    assert state["step"] == 3                                  # episode 1 (steps 1-3); episode 2 was not saved
    assert all(torch.isfinite(v).all() for v in state["planner"].values())
    assert all(torch.isfinite(v).all() for v in state["critic"].values())
