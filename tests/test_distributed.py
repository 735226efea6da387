"""torchrun with two gloo processes on the CPU (extras/distributed.py, docs/distributed.md): the ranks hold
bitwise the same networks, two half batches make the update of one whole batch, only rank 0 writes files, a
killed run resumes as if never stopped, a dead rank ends the run, and a slow final report on rank 0 leaves
rank 1 to close cleanly. Every launch has a time limit."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from extras import distributed
from extras import runlog
from conftest import ROOT, TINY, one_line_error
from test_digits import TINY as TINY_DIGITS
from test_inpaint import TINY as TINY_INPAINT

TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
GRADIENT_TOLERANCE = 1e-5   # of each step's largest gradient (measured: 1.5e-6)
PARAMETER_TOLERANCE = 2.5e-4  # absolute, after one Adam step of lr 2e-3 (measured: 1.2e-4; see the test)
NETWORKS = ("planner", "actor", "critic", "critic_target", "reward_head", "discriminator")


def torchrun(*argv: str, script: str = "train.py", timeout: int = 300, env: dict | None = None
             ) -> subprocess.CompletedProcess:
    return subprocess.run([*TORCHRUN, os.path.join(ROOT, script), *argv], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, env={**ENV, **(env or {})})


def networks_digest(state: dict) -> str:
    return distributed.digest_of({k: state[k] for k in NETWORKS if k in state}, state["log_alpha"])


@pytest.mark.parametrize("name, tiny", [("style", TINY), ("inpaint", TINY_INPAINT), ("digits", TINY_DIGITS)])
def test_two_ranks_train_one_agent_and_rank_0_alone_writes(tmp_path, name, tiny):
    """Every parameter and buffer of every network bitwise equal on both ranks after the run (the digests each
    rank computed of its own networks, kept in the checkpoint), and one set of files, rank 0's."""
    result = torchrun(*tiny, "--run-dir", str(tmp_path), "--name", name, "--no-progress")
    assert result.returncode == 0, result.stderr[-3000:]
    state = runlog.read_checkpoint(str(tmp_path / name / "checkpoint.pt"))
    assert state["world_size"] == 2 and len(state["other_ranks"]) == 1 and state["updates"] > 0
    assert state["digests"][0] == state["digests"][1] == networks_digest(state)  # the digests cover what is saved
    assert not torch.equal(state["data_rng"], state["other_ranks"][0]["data_rng"])  # each rank its own draws
    assert sorted(os.listdir(tmp_path)) == [name]
    extra = ["grid_classes.csv"] if name == "digits" else []
    assert sorted(os.listdir(tmp_path / name)) == sorted(["checkpoint.pt", "config.json", "curves.png", "eval.csv",
                                                          "grid.png", "progress.csv", "split.json", *extra])
    assert result.stdout.count("torchrun: 2 processes") == 1 and result.stdout.count("held-out evaluation") == 1
    assert json.load(open(tmp_path / name / "config.json"))["world_size"] == 2


def test_a_slow_final_report_on_rank_0_leaves_rank_1_to_close_cleanly(tmp_path):
    """Every rank meets at a barrier after training and closes the process group with the others; rank 0 then
    writes the report, which makes no collective. Rank 1 neither aborts at its exit nor times out."""
    start = time.time()
    result = torchrun(*TINY_DIGITS, "--run-dir", str(tmp_path), "--name", "slow", "--no-progress",
                      script=os.path.join("tests", "slow_report.py"), env={"SLOW_REPORT_SECONDS": "20"})
    assert result.returncode == 0, result.stderr[-3000:]
    assert time.time() - start > 20 and "terminate called" not in result.stderr
    assert "held-out evaluation" in result.stdout and (tmp_path / "slow" / "eval.csv").is_file()


def test_two_half_batches_make_the_update_of_the_whole_batch(tmp_path):
    """torchrl's check: one update (critics, temperature, planner, actor, reward head) on a fixed batch of 8 with
    fixed noise, two ranks with 4 each against one process with 8. Measured on a 2-core CPU: the averaged gradients
    of every optimiser step within 1.5e-6 of that step's largest gradient (float rounding of the sums); the
    parameters within 1.2e-4: Adam's first step moves each parameter by about lr (2e-3) times the sign of its
    gradient, and the biases before an instance normalisation have a true gradient of 0, so rounding picks it."""
    one, two = tmp_path / "one", tmp_path / "two"
    one.mkdir(), two.mkdir()
    script = os.path.join(ROOT, "tests", "distributed_update.py")
    single = subprocess.run([sys.executable, script, str(one)], cwd=ROOT, capture_output=True, text=True,
                            timeout=300, env=ENV)
    assert single.returncode == 0, single.stderr[-3000:]
    result = torchrun(str(two), script=script)
    assert result.returncode == 0, result.stderr[-3000:]
    whole, rank0, rank1 = (torch.load(p, weights_only=False) for p in (one / "rank0.pt", two / "rank0.pt", two / "rank1.pt"))
    assert {"planner", "actor", "critic", "reward_head"} <= set(whole["moved"])  # the update changed each of them
    assert len(whole["gradients"]) == len(rank0["gradients"]) == 6               # six optimiser steps
    for g_whole, g_rank0, g_rank1 in zip(whole["gradients"], rank0["gradients"], rank1["gradients"]):
        scale = max(g.abs().max().item() for g in g_whole)
        for a, b, c in zip(g_whole, g_rank0, g_rank1):
            assert torch.equal(b, c)                                             # one average on both ranks
            torch.testing.assert_close(b, a, rtol=0, atol=GRADIENT_TOLERANCE * scale)
    for net in ("planner", "actor", "critic", "critic_target", "reward_head"):
        for k, v in whole[net].items():
            assert torch.equal(rank0[net][k], rank1[net][k]), (net, k)           # the ranks agree bit for bit
            torch.testing.assert_close(rank0[net][k], v, rtol=0, atol=PARAMETER_TOLERANCE, msg=f"{net}.{k}")
    torch.testing.assert_close(rank0["log_alpha"], whole["log_alpha"], rtol=0, atol=PARAMETER_TOLERANCE)


def wait_for(path: str, process: subprocess.Popen, timeout: float = 240) -> None:
    deadline = time.time() + timeout
    while not os.path.isfile(path):
        assert process.poll() is None, process.communicate()[1][-3000:]
        assert time.time() < deadline, f"{path} never appeared"
        time.sleep(0.05)


def test_a_killed_two_rank_run_resumes_as_if_never_stopped(tmp_path):
    """SIGTERM to the launcher: both ranks stop at the end of the episode with one checkpoint (their generators
    and buffers); resumed by torchrun, the run ends bitwise where an uninterrupted one ends. Plain python
    (one process) is refused in one line."""
    argv = [*TINY_DIGITS, "--total-steps", "240", "--max-episode-steps", "2", "--set", "save_every=1", "--set", "save_buffer=true",
            "--run-dir", str(tmp_path), "--no-progress"]
    whole = torchrun(*argv, "--name", "whole")
    assert whole.returncode == 0, whole.stderr[-3000:]
    process = subprocess.Popen([*TORCHRUN, os.path.join(ROOT, "train.py"), *argv, "--name", "cut"], cwd=ROOT,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    checkpoint = str(tmp_path / "cut" / "checkpoint.pt")
    wait_for(checkpoint, process)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=120)
    assert process.returncode != 0 and "interrupted at step" in err, err[-3000:]
    saved = runlog.read_checkpoint(checkpoint)
    assert 0 < saved["step"] < 240 and saved["other_ranks"][0]["buffer"]["size"] > 0
    refused = subprocess.run([sys.executable, os.path.join(ROOT, "train.py"), "--resume", str(tmp_path / "cut")],
                             cwd=ROOT, capture_output=True, text=True, timeout=300, env=ENV)
    one_line_error(refused, "written by 2 process(es), resumed with 1")
    resumed = torchrun("--resume", str(tmp_path / "cut"), "--no-progress")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"at step {saved['step']} " in resumed.stdout
    a, b = (runlog.read_checkpoint(str(tmp_path / n / "checkpoint.pt")) for n in ("whole", "cut"))
    assert a["step"] == b["step"] == 240 and a["updates"] == b["updates"]
    assert a["digests"] == b["digests"] and networks_digest(a) == networks_digest(b)


def test_a_rank_that_dies_ends_the_run(tmp_path):
    """SIGKILL to one worker: torchrun stops the other at once, long before the process group's timeout."""
    process = subprocess.Popen([*TORCHRUN, os.path.join(ROOT, "train.py"), *TINY_DIGITS, "--total-steps", "100000",
                                "--set", "save_every=1", "--run-dir", str(tmp_path), "--name", "d", "--no-progress"],
                               cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    wait_for(str(tmp_path / "d" / "checkpoint.pt"), process)
    workers = subprocess.run(["pgrep", "-P", str(process.pid)], capture_output=True, text=True).stdout.split()
    assert len(workers) == 2
    start = time.time()
    os.kill(int(workers[-1]), signal.SIGKILL)
    process.communicate(timeout=120)
    assert process.returncode != 0 and time.time() - start < 60
    assert subprocess.run(["pgrep", "-P", str(process.pid)], capture_output=True).returncode == 1  # none left
