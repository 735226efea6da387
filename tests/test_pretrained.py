"""`python -m extras.pretrained`: a style run's planner and actor as a small file with its own per-step table on
the held-out photos (float32), which evaluate.py reads and reproduces.
"""
import csv
import os

import pytest
import torch

from conftest import run_script
from extras.pretrained import KEPT

SSIM_TOLERANCE = 2e-3  # absolute, on the mean SSIM of the held-out photos: room for other CPUs' float32 kernels
LOSS_TOLERANCE = 1e-2  # relative, on each loss: the same


def read_csv(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def reproduce(model: str, out, vgg: str) -> list[dict]:
    """evaluate.py on `model` at the steps of its own table, its eval.csv as rows."""
    table = torch.load(model, weights_only=True)["table"]
    steps = [str(row["step"]) for row in table if row["step"] > 0]
    result = run_script("evaluate.py", "--checkpoint", model, "--steps", *steps, "--vgg", vgg, "--out", str(out))
    assert result.returncode == 0, result.stderr[-2000:]
    rows = read_csv(out / "eval.csv")
    assert [int(r["step"]) for r in rows] == [row["step"] for row in table]
    return rows


def compare(stored: list[dict], rows: list[dict]) -> None:
    for want, got in zip(stored, rows):
        for key, value in want.items():
            if key == "SSIM to content":
                assert float(got[key]) == pytest.approx(value, abs=SSIM_TOLERANCE), (want["step"], key)
            elif key != "step":
                assert float(got[key]) == pytest.approx(value, rel=LOSS_TOLERANCE, abs=1e-12), (want["step"], key)


def test_a_run_exported_then_evaluated_gives_the_exported_table(tmp_path, tiny):
    """The export on a tiny run (random VGG, so every column is compared): the file evaluate.py reads."""
    result = run_script("train.py", *tiny, "--run-dir", str(tmp_path), "--name", "a", "--no-progress")
    assert result.returncode == 0, result.stderr[-2000:]
    model = str(tmp_path / "small.pt")
    result = run_script("extras.pretrained", str(tmp_path / "a"), model, "--steps", "1", "2")
    assert result.returncode == 0, result.stderr[-2000:]
    assert (tmp_path / "a" / "pretrained_grid.png").is_file()
    stored = torch.load(model, weights_only=True)
    assert set(stored) == {*KEPT, "table", "vgg"} and stored["vgg"] == "random"
    assert [row["step"] for row in stored["table"]] == [0, 1, 2]
    assert os.path.getsize(model) < os.path.getsize(tmp_path / "a" / "checkpoint.pt") / 2  # no critic, optimisers
    compare(stored["table"], reproduce(model, tmp_path / "eval", "random"))


def test_only_a_style_run_is_exported(tmp_path):
    result = run_script("extras.pretrained", str(tmp_path), str(tmp_path / "x.pt"))
    assert result.returncode != 0 and "no checkpoint.pt" in result.stderr and "Traceback" not in result.stderr
