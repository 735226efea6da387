"""Bad flags and bad data, across the tasks: each must end the run with one line naming the problem
(no traceback, no usage block), as a user running train.py or evaluate.py sees it."""
import numpy as np
import pytest
import torch
from PIL import Image

from conftest import TINY, one_line_error, run_script
from test_digits import TINY as TINY_DIGITS
from test_inpaint import TINY as TINY_INPAINT
from test_inpaint import make_faces
from test_photo import TINY as TINY_PHOTO
from test_photo import make_layout


@pytest.fixture
def bad(tmp_path):
    """A folder of bad things: {name} placeholders in the cases below are paths in it."""
    (tmp_path / "empty").mkdir()
    (tmp_path / "notrain").mkdir()
    (tmp_path / "garbage.jpg").write_bytes(b"\x00garbage")
    Image.fromarray(np.full((8, 8, 3), 90, np.uint8)).save(tmp_path / "tiny.png")
    make_faces(tmp_path / "smallfaces", 2, size=20)
    make_layout(tmp_path / "oddpairs")
    Image.new("RGB", (33, 32)).save(tmp_path / "oddpairs" / "train" / "odd.png")
    (tmp_path / "badidx").mkdir()
    for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
                 "t10k-labels-idx1-ubyte"):
        (tmp_path / "badidx" / name).write_bytes(b"\x00\x00\x0d\x01\x00\x00\x00\x01")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "checkpoint.pt").write_bytes(b"PK\x03\x04 half a zip file")
    paths = {p.name.split(".")[0]: str(p) for p in tmp_path.iterdir()}  # garbage.jpg -> {garbage}
    return paths | {"missing": str(tmp_path / "nope"), "root": str(tmp_path)}


NO_CUDA = pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is present")


def case(name: str, script: str, argv: list[str], text: str, marks=()):
    return pytest.param(script, argv, text, id=name, marks=marks)


CASES = [  # case(id, script, arguments, text the one line must hold)
    # style transfer: data and flags
    case("style empty content folder", "train.py", [*TINY, "--content-dir", "{empty}"], "no images"),
    case("style unreadable style image", "train.py", [*TINY, "--style-image", "{garbage}"], "cannot read as an image"),
    case("style 8x8 style image", "train.py", [*TINY, "--style-image", "{tiny}"], "smaller than 16x16"),
    case("unknown task", "train.py", ["--task", "nope"], "argument --task: invalid choice: 'nope'"),
    case("style size not a multiple of 4", "train.py", [*TINY, "--image-size", "30"], "multiple of 4"),
    case("missing VGG weights", "train.py", [*TINY, "--set", "vgg=torchvision", "--vgg-weights", "{missing}"], "no such file"),
    case("zero environments", "train.py", [*TINY, "--num-envs", "0"], "--num-envs 0: must be at least 1"),
    case("buffer larger than memory", "train.py", [*TINY, "--buffer-size", "100000000000"],
     "the replay buffer alone needs at least"),
    case("cuda without a GPU", "train.py", [*TINY, "--device", "cuda"], "no CUDA device is available", NO_CUDA),
    # checkpoints
    case("resume from an empty folder", "train.py", ["--resume", "{empty}"], "no checkpoint.pt"),
    case("resume from a broken checkpoint", "train.py", ["--resume", "{broken}"], "cannot read it as a checkpoint"),
    case("evaluate a missing checkpoint", "evaluate.py", ["--checkpoint", "{missing}"], "no such file"),
    case("evaluate a broken checkpoint", "evaluate.py", ["--checkpoint", "{broken}/checkpoint.pt"],
     "cannot read it as a checkpoint"),
    # face inpainting
    case("inpaint empty folder", "train.py", [*TINY_INPAINT, "--data-root", "{empty}"], "no images"),
    case("inpaint missing folder", "train.py", [*TINY_INPAINT, "--data-root", "{missing}"], "no such folder"),
    case("inpaint faces smaller than the size", "train.py", [*TINY_INPAINT, "--data-root", "{smallfaces}"],
     "smaller than the working size"),
    case("inpaint bad --rl", "train.py", [*TINY_INPAINT, "--rl", "maybe"], "invalid choice: 'maybe'"),
    case("one-step ablation with T_max 3", "train.py", [*TINY_INPAINT, "--rl", "off", "--max-episode-steps", "3"],
     "--max-episode-steps must be 1"),
    case("inpaint size not a power of two", "train.py", [*TINY_INPAINT, "--image-size", "48"], "power of two"),
    case("a flag that is not one", "train.py", ["--task", "style", "--step-anchor", "1.5"], "unrecognized arguments"),
    case("--set of an unknown setting", "train.py", ["--task", "style", "--set", "step_anchor=1"], "--set step_anchor=1"),
    case("warm-up longer than the buffer", "train.py", [*TINY_INPAINT, "--buffer-size", "8", "--learning-starts", "9"],
         "--learning-starts 9 is larger than --buffer-size 8"),
    case("more environments than buffer slots", "train.py", [*TINY_INPAINT, "--buffer-size", "3", "--learning-starts", "2"],
         "--num-envs 4 is larger than --buffer-size 3"),
    case("style flag with inpaint", "train.py", [*TINY_INPAINT, "--content-dir", "{empty}"],
     "--content-dir is for --task style"),
    # photo translation
    case("photo missing folder", "train.py", [*TINY_PHOTO, "--data-root", "{missing}"], "no such folder"),
    case("photo folder without train/", "train.py", [*TINY_PHOTO, "--data-root", "{notrain}"], "no train/ folder"),
    case("photo image that is not A|B", "train.py", [*TINY_PHOTO, "--data-root", "{oddpairs}"], "is not an A|B pair"),
    case("photo bad direction", "train.py", [*TINY_PHOTO, "--direction", "AtoC"], "invalid choice: 'AtoC'"),
    case("photo bad init", "train.py", [*TINY_PHOTO, "--set", "init=zeros"], "init takes one of source, noise"),
    case("photo flag with inpaint", "train.py", ["--task", "inpaint", "--direction", "BtoA"],
     "--direction is for --task photo"),
    case("GAN-task flag with style", "train.py", ["--task", "style", "--set", "plan_dim=64"],
     "--set plan_dim is for --task inpaint or photo, not --task style"),
    case("style flag with digits", "train.py", ["--task", "digits", "--style-weight", "10"],
     "--style-weight is for --task style or video, not --task digits"),
    # digit transform
    case("digits missing folder", "train.py", [*TINY_DIGITS, "--data-root", "{missing}"], "no such folder"),
    case("digits folder without MNIST", "train.py", [*TINY_DIGITS, "--data-root", "{empty}"], "no train-images-idx3-ubyte"),
    case("digits files that are not idx", "train.py", [*TINY_DIGITS, "--data-root", "{badidx}"], "not an idx file"),
    case("digits not at 28 x 28", "train.py", [*TINY_DIGITS, "--image-size", "32"], "28 x 28"),
    case("digits bad pair mode", "train.py", [*TINY_DIGITS, "--pair-mode", "diagonal"], "invalid choice: 'diagonal'"),
]


@pytest.mark.parametrize("script, argv, text", CASES)
def test_bad_input_gives_one_line(bad, script, argv, text):
    argv = [a.format(**bad) for a in argv]
    if script == "train.py" and "--resume" not in argv:
        argv += ["--run-dir", bad["root"]]
    one_line_error(run_script(script, *argv), text)
