"""Shared test helpers: the repo root on sys.path, and a tiny train.py configuration."""
import os
import subprocess
import sys

import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
torch.set_num_threads(2)

# A run small enough for a smoke test: 32x32 images, random VGG, a few steps.
TINY = ["--task", "style", "--set", "vgg=random", "save_every=1", "--image-size", "32", "--num-envs", "2", "--batch-size", "2",
        "--total-steps", "6", "--max-episode-steps", "3", "--learning-starts", "2", "--test-steps", "2"]


def run_script(script: str, *argv: str, cwd: str | None = None) -> subprocess.CompletedProcess:
    """A script of the repository (train.py) or a module (extras.benchmark), as a user runs it."""
    command = [os.path.join(ROOT, script)] if script.endswith(".py") else ["-m", script]
    return subprocess.run([sys.executable, *command, *argv], capture_output=True, text=True, cwd=cwd or ROOT,
                          timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": ROOT})


def one_line_error(result: subprocess.CompletedProcess, text: str) -> None:
    """The run failed with exactly one line on stderr, holding `text`, and no traceback."""
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert text in lines[0], lines[0]


@pytest.fixture
def tiny():
    return list(TINY)
