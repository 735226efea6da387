"""train.py and evaluate.py as a user runs them: smoke runs, determinism, resume, bad input."""
import csv
import os

import numpy as np
import pytest
from PIL import Image

from conftest import TINY, one_line_error, run_script
from test_digits import TINY as TINY_DIGITS
from test_inpaint import TINY as TINY_INPAINT
from test_photo import TINY as TINY_PHOTO
from test_video import TINY as TINY_VIDEO


def read_progress(run):
    with open(os.path.join(run, "progress.csv")) as f:
        return list(csv.DictReader(f))


def test_train_then_evaluate(tmp_path, tiny):
    result = run_script("train.py", *tiny, "--run-dir", str(tmp_path), "--name", "a")
    assert result.returncode == 0, result.stderr[-2000:]
    run = tmp_path / "a"
    for name in ("config.json", "progress.csv", "checkpoint.pt", "grid.png", "curves.png"):
        assert (run / name).is_file(), name
    rows = read_progress(run)
    assert [int(r["step"]) for r in rows] == [3, 6]
    assert rows[-1]["critic_loss"] and rows[-1]["aux_loss"] and rows[-1]["planner_loss"]
    assert "done: " in result.stdout.strip().splitlines()[-1]
    result = run_script("evaluate.py", "--task", "style", "--checkpoint", str(run / "checkpoint.pt"),
                        "--steps", "1", "2", "--num-images", "2")
    assert result.returncode == 0, result.stderr[-2000:]
    table = [line.split() for line in result.stdout.splitlines() if line.strip()[:1].isdigit()]
    assert [row[0] for row in table] == ["0", "1", "2"]
    assert float(table[0][3]) == 1.0  # step 0 is the content itself: SSIM 1
    grid = Image.open(run / "evaluate" / "eval_grid.png")  # apart from the final report's grid.png
    with open(run / "evaluate" / "eval.csv") as f:
        assert [r["step"] for r in csv.DictReader(f)] == ["0", "1", "2"]
    assert grid.width > 4 * 32  # content | step 1 | step 2 | style


def test_stylise_one_photo(tmp_path, tiny):
    """evaluate.py --image: one PNG per step and the strip, the photo's short side at the training size."""
    result = run_script("train.py", *tiny, "--run-dir", str(tmp_path), "--name", "a", "--no-progress")
    assert result.returncode == 0, result.stderr[-2000:]
    photo = tmp_path / "me.png"  # 50 x 37, RGBA: short side 37 -> 32, long side 50 -> 43 -> cropped to 40
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (37, 50, 4), dtype=np.uint8), "RGBA").save(photo)
    out = tmp_path / "out"
    result = run_script("evaluate.py", "--checkpoint", str(tmp_path / "a"), "--image", str(photo),
                        "--steps", "2", "1", "--out", str(out))
    assert result.returncode == 0, result.stderr[-2000:]
    assert sorted(os.listdir(out)) == ["me_step1.png", "me_step2.png", "me_steps.csv", "me_steps.png"]
    with open(out / "me_steps.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["step"] for r in rows] == ["0", "1", "2"] and all(r["style relu3_3"] for r in rows)  # layer by layer
    for k in (1, 2):
        step = Image.open(out / f"me_step{k}.png")
        assert step.size == (40, 32) and step.mode == "RGB"
    strip = Image.open(out / "me_steps.png")
    assert strip.width >= 4 * 40 and strip.height >= 32  # input | step 1 | step 2 | style
    table = [line.split() for line in result.stdout.splitlines() if line.strip()[:1].isdigit()]
    assert [row[0] for row in table] == ["0", "1", "2"] and float(table[0][3]) == 1.0
    # steps 1 and 2 differ from each other and from the photo (the agent acted)
    s1, s2 = (np.asarray(Image.open(out / f"me_step{k}.png"), dtype=float) for k in (1, 2))
    assert np.abs(s1 - s2).mean() > 0
    # a larger short side on request
    result = run_script("evaluate.py", "--checkpoint", str(tmp_path / "a"), "--image", str(photo),
                        "--steps", "1", "--image-size", "48", "--out", str(out))
    assert result.returncode == 0, result.stderr[-2000:]
    assert Image.open(out / "me_step1.png").size == (64, 48)  # 50 x 48/37 = 64.9 -> 64
    # bad input: the loaders' one-line errors, before any network is built
    (tmp_path / "notes.jpg").write_text("not an image")
    for argv, text in (([str(tmp_path / "missing.jpg")], "missing.jpg"), ([str(tmp_path / "notes.jpg")], "notes.jpg"),
                       ([str(photo), "--image-size", "30"], "multiple of 4")):
        one_line_error(run_script("evaluate.py", "--checkpoint", str(tmp_path / "a"), "--steps", "1", "--image", *argv),
                       text)


TINY_RUNS = {"style": TINY, "inpaint": TINY_INPAINT, "photo": [*TINY_PHOTO, "--set", "init=noise"], "digits": TINY_DIGITS,
             "video": TINY_VIDEO}


@pytest.mark.parametrize("task", TINY_RUNS)
def test_seeded_runs_are_identical(tmp_path, task):
    for name in ("a", "b"):  # separate processes, as a user runs them
        result = run_script("train.py", *TINY_RUNS[task], "--run-dir", str(tmp_path), "--name", name)
        assert result.returncode == 0, result.stderr[-2000:]
    columns = ("return", "critic_loss", "planner_loss", "temperature_loss", "aux_loss", "alpha")
    a, b = read_progress(tmp_path / "a"), read_progress(tmp_path / "b")
    assert a[-1]["planner_loss"] and [[r[c] for c in columns] for r in a] == [[r[c] for c in columns] for r in b]
    assert (tmp_path / "a" / "eval.csv").read_text() == (tmp_path / "b" / "eval.csv").read_text()
    if task == "style":
        result = run_script("train.py", *TINY, "--run-dir", str(tmp_path), "--name", "c", "--seed", "2")
        assert [r["aux_loss"] for r in read_progress(tmp_path / "c")] != [r["aux_loss"] for r in a]
        # eval.csv also holds E13 layer by layer (colour in relu1_2, texture deeper); the printed table does not
        rows = list(csv.DictReader(open(tmp_path / "c" / "eval.csv")))
        layers = [f"style relu{n}" for n in ("1_2", "2_2", "3_3", "4_3")]
        assert all(abs(sum(float(r[k]) for k in layers) - float(r["style loss"])) <= 1e-6 * float(r["style loss"])
                   for r in rows) and float(rows[1]["style relu4_3"]) > 0
        assert "relu" not in result.stdout.split("held-out evaluation")[-1]


def test_resume_continues_from_the_saved_step(tmp_path, tiny):
    assert run_script("train.py", *tiny, "--run-dir", str(tmp_path), "--name", "r").returncode == 0
    result = run_script("train.py", "--resume", str(tmp_path / "r"), "--total-steps", "12")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "resumed from" in result.stdout and "at step 6" in result.stdout
    steps = [int(r["step"]) for r in read_progress(tmp_path / "r")]
    assert steps == [3, 6, 9, 12]


def test_grey_and_rgba_content_images_train(tmp_path, tiny):
    folder = tmp_path / "content"
    folder.mkdir()
    Image.fromarray(np.full((40, 40), 90, np.uint8)).save(folder / "grey.png")
    Image.fromarray(np.full((40, 40, 4), 200, np.uint8)).save(folder / "rgba.png")
    result = run_script("train.py", *tiny, "--content-dir", str(folder), "--run-dir", str(tmp_path), "--name", "g")
    assert result.returncode == 0, result.stderr[-2000:]


def test_an_evaluation_every_n_updates_writes_the_curve_and_leaves_training_as_it_was(tmp_path, tiny):
    """--set eval_every=2: the final report's held-out table after every second update, between episodes, in
    eval_curve.csv (layer by layer); the training itself is bitwise the run without it."""
    for name, extra in (("plain", []), ("curve", ["--set", "eval_every=2"])):
        result = run_script("train.py", *tiny, *extra, "--run-dir", str(tmp_path), "--name", name, "--no-progress")
        assert result.returncode == 0, result.stderr[-2000:]
    with open(tmp_path / "curve" / "eval_curve.csv") as f:
        rows = list(csv.DictReader(f))
    updates = sorted({int(r["updates"]) for r in rows})
    assert updates == [3, 6]  # the ends of the episodes that passed 2 and 4 (and 6) updates: 3 updates an episode
    assert [r["step"] for r in rows[:3]] == ["0", "1", "2"] and rows[0]["style relu3_3"]
    drop = lambda rows: [{k: v for k, v in r.items() if k != "seconds"} for r in rows]  # noqa: E731
    assert drop(read_progress(tmp_path / "plain")) == drop(read_progress(tmp_path / "curve"))
    assert (tmp_path / "curve" / "curve_grid.png").is_file()
    result = run_script(os.path.join("docs", "style_curve.py"), str(tmp_path / "curve"), "--out", str(tmp_path / "c.png"))
    assert result.returncode == 0, result.stderr[-2000:]
    printed = [line.split() for line in result.stdout.splitlines() if line.strip()[:1].isdigit()]
    final = {r["step"]: r for r in rows if r["updates"] == "6"}  # the curve's last point, step T = 2 over step 0
    assert [int(r[0]) for r in printed] == [3, 6]
    assert float(printed[-1][1]) == pytest.approx(float(final["2"]["style loss"]) / float(final["0"]["style loss"]), abs=1e-3)
    assert (tmp_path / "c.png").is_file()
