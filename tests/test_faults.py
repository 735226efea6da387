"""Surviving faults: atomic checkpoints, SIGKILL then --resume, Ctrl-C, and non-finite losses."""
import csv
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from extras import runlog
import train
from conftest import ROOT, TINY, run_script
from test_photo import TINY as TINY_PHOTO
from train import Args


def tiny_modules():
    torch.manual_seed(0)
    net = torch.nn.Linear(3, 2)
    return {"planner": net, "planner_opt": torch.optim.Adam(net.parameters())}


def save(path, step, modules, generators=None):
    generators = generators or {"data_rng": torch.Generator(), "sample_rng": torch.Generator()}
    runlog.save_checkpoint(str(path), Args(), modules, torch.tensor(0.0), step, 1, 1,
                           [runlog.rank_state(generators, torch.device("cpu"))])


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


@pytest.mark.filterwarnings("ignore:for (weight|bias). copying from a non-meta parameter")
def test_resume_restores_random_states_on_the_cpu_whatever_the_training_device(tmp_path):
    path = tmp_path / "checkpoint.pt"
    generators = {"data_rng": torch.Generator().manual_seed(1), "sample_rng": torch.Generator().manual_seed(2)}
    for g in generators.values():
        torch.rand(3, generator=g)                       # states that a fresh seed would not give
    torch.manual_seed(3)
    save(path, 10, tiny_modules(), generators)
    saved = {k: g.get_state() for k, g in generators.items()}, torch.get_rng_state()
    # The run resumes on another device: "meta" stands in for a GPU, whose tensors are not CPU tensors either.
    # Generator.set_state and torch.set_rng_state take CPU ByteTensors only (on CUDA the old map_location
    # raised "RNG state must be a torch.ByteTensor").
    net = torch.nn.Linear(3, 2).to("meta")
    modules = {"planner": net, "planner_opt": torch.optim.Adam(net.parameters())}
    fresh = {k: torch.Generator().manual_seed(0) for k in generators}
    torch.manual_seed(0)
    assert runlog.load_checkpoint(str(path), modules, torch.zeros((), device="meta"), fresh) == (10, 1, 1)
    assert all(torch.equal(g.get_state(), saved[0][k]) for k, g in fresh.items())
    assert torch.equal(torch.get_rng_state(), saved[1])


def test_resume_saves_and_restores_the_gpu_generator_that_draws_the_plans(tmp_path, monkeypatch):
    # No GPU here: torch.cuda's generator state functions are stood in for, and log alpha says it is on
    # cuda:0. This checks the plumbing (what is saved, that it comes back as a CPU tensor for that device),
    # not CUDA itself.
    class LogAlphaOnGpu:
        device = torch.device("cuda", 0)

        def __init__(self, value):
            self.value = torch.tensor(value)

        def detach(self):
            return self.value

        def copy_(self, x):
            self.value = x.clone()

    gpu_state, restored = [torch.arange(16, dtype=torch.uint8)], []
    monkeypatch.setattr(torch.cuda, "get_rng_state", lambda device: gpu_state[0].clone())
    monkeypatch.setattr(torch.cuda, "set_rng_state", lambda state, device: restored.append((state, device)))
    path = str(tmp_path / "checkpoint.pt")
    runlog.save_checkpoint(path, Args(), tiny_modules(), LogAlphaOnGpu(0.5), 10, 1, 1,
                           [runlog.rank_state({"data_rng": torch.Generator()}, LogAlphaOnGpu.device)])
    gpu_state[0] = torch.zeros(16, dtype=torch.uint8)  # the plans drawn after the checkpoint
    log_alpha = LogAlphaOnGpu(0.0)
    runlog.load_checkpoint(path, tiny_modules(), log_alpha, {"data_rng": torch.Generator()})
    assert len(restored) == 1 and restored[0][1] == torch.device("cuda", 0)
    assert restored[0][0].device.type == "cpu" and torch.equal(restored[0][0], torch.arange(16, dtype=torch.uint8))
    assert log_alpha.value == 0.5


def read_steps(run):
    with open(os.path.join(run, "progress.csv"), newline="") as f:
        return [int(r["step"]) for r in csv.DictReader(f)]


def start(argv, **kw):
    return subprocess.Popen([sys.executable, os.path.join(ROOT, "train.py"), *argv], cwd=ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, "OMP_NUM_THREADS": "1"},
                            **kw)


def wait_for_checkpoint(process, path, timeout=300):
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
    # Started as a shell starts a background job (`python train.py ... &`, a CI runner): with SIGINT ignored,
    # which Python keeps unless train.py sets its own handler (before, the run ignored Ctrl-C and hung here).
    process = start([*TINY, "--total-steps", "3000", "--run-dir", str(tmp_path), "--name", "c", "--no-progress"],
                    preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    wait_for_checkpoint(process, os.path.join(run, "checkpoint.pt"))
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=120)
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


def differences(a, b, name=""):
    """Names of the entries of two checkpoints (nested dicts and lists of tensors) that are not bitwise equal."""
    if isinstance(a, dict) and isinstance(b, dict) and a.keys() == b.keys():
        return [d for k in a for d in differences(a[k], b[k], f"{name}/{k}")]
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)) and len(a) == len(b):
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in differences(x, y, f"{name}/{i}")]
    same = torch.equal(a, b) if torch.is_tensor(a) and torch.is_tensor(b) else a == b
    return [] if same else [name]


def test_resume_with_the_buffer_continues_bitwise_as_if_never_stopped(tmp_path):
    # photo translation from noise, GAN on from the start: every network, optimiser, log alpha, batch-norm
    # statistics, the data, sampling, plan and noise generators, and the buffer must come back
    argv = [*TINY_PHOTO, "--set", "init=noise", "--set", "gan_warmup=0", "--set", "save_buffer=true", "--set", "save_every=1",
            "--run-dir", str(tmp_path), "--no-progress"]
    assert run_script("train.py", *argv, "--name", "whole").returncode == 0            # steps 1-8
    assert run_script("train.py", *argv, "--name", "split", "--total-steps", "4").returncode == 0   # 1-4
    result = run_script("train.py", "--resume", str(tmp_path / "split"), "--total-steps", "8")     # 5-8
    assert result.returncode == 0, result.stderr[-2000:]
    assert "at step 4 (episode 2); the replay buffer holds its 16 transitions" in result.stdout
    whole, split = (runlog.read_checkpoint(str(tmp_path / n / "checkpoint.pt")) for n in ("whole", "split"))
    assert whole["step"] == split["step"] == 8 and whole["updates"] == split["updates"] > 4
    assert differences({k: v for k, v in whole.items() if k != "args"},
                       {k: v for k, v in split.items() if k != "args"}) == []
    with open(tmp_path / "whole" / "progress.csv") as a, open(tmp_path / "split" / "progress.csv") as b:
        rows = [[{k: v for k, v in r.items() if k != "seconds"} for r in csv.DictReader(f)] for f in (a, b)]
    assert rows[0] == rows[1] and len(rows[0]) == 4
