"""The digit transform: fields, warping, Dice, NCC, idx parsing, the environment, and the scripts."""
import gzip
import math
import os
import struct

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from conftest import run_script
from data import DataError, DigitPairs
from extras.datasets import read_idx
from env import RegistrationEnv
from losses import auxiliary_loss_digits, compose, dice, identity_grid, local_ncc_squared, warp

TINY = ["--task", "digits", "--num-envs", "4", "--batch-size", "4", "--total-steps", "12", "--max-episode-steps", "3",
        "--learning-starts", "4", "--test-steps", "3"]


def test_composing_two_constant_fields_gives_their_sum():
    a = torch.zeros(1, 2, 12, 12)
    a[:, 0], a[:, 1] = 0.3, -0.2
    b = torch.zeros(1, 2, 12, 12)
    b[:, 0], b[:, 1] = -0.1, 0.4
    assert torch.allclose(compose(a, b), a + b, atol=1e-6)


def test_warping_with_a_zero_field_is_the_identity_and_a_whole_pixel_shift_moves_by_one():
    image = torch.rand(2, 1, 10, 10)
    assert torch.allclose(warp(image, torch.zeros(2, 2, 10, 10)), image, atol=1e-6)
    shift = torch.zeros(2, 2, 10, 10)
    shift[:, 0] = 1.0                                              # sample one pixel to the right
    assert torch.allclose(warp(image, shift)[..., :-1], image[..., 1:], atol=1e-6)
    assert torch.equal(warp(image, shift)[..., -1], torch.zeros(2, 1, 10))  # zeros come in from outside
    grid = identity_grid(3, 4)
    assert grid.shape == (1, 2, 3, 4) and grid[0, 0, 2, 3] == 3 and grid[0, 1, 2, 3] == 2


def test_composed_fields_warp_like_two_warps_in_a_row():
    torch.manual_seed(0)
    smooth = lambda x, k: F.avg_pool2d(x, k, 1, k // 2)  # noqa: E731 (smooth random image and fields)
    image = smooth(torch.rand(1, 1, 32, 32), 5)
    first, second = smooth((torch.rand(1, 2, 32, 32) - 0.5) * 4, 7), smooth((torch.rand(1, 2, 32, 32) - 0.5) * 4, 7)
    once = warp(image, compose(first, second))
    twice = warp(warp(image, first), second)
    inside = (..., slice(4, -4), slice(4, -4))                    # away from the border
    assert (once - twice)[inside].abs().max() < 0.05              # equal up to bilinear interpolation


def test_composition_order_with_fields_that_do_not_commute():
    # a shear A p and a rotation by 0.3 rad about the centre (R - I) p: linear fields, so the exact composite
    # of "first the shear, then the rotation" is (A + B + A B) p, and bilinear interpolation is exact on them
    grid = identity_grid(32, 32)
    p = grid - 15.5                                                     # (1, 2, 32, 32), from the centre
    a, b = torch.tensor([[0.0, 0.3], [0.0, 0.0]]), torch.tensor([[math.cos(0.3) - 1, -math.sin(0.3)],
                                                                 [math.sin(0.3), math.cos(0.3) - 1]])
    linear = lambda m: torch.einsum("ij,njhw->nihw", m, p)              # noqa: E731, (1, 2, 32, 32)
    shear, rotation = linear(a), linear(b)
    assert not torch.allclose(a @ b, b @ a)
    inside = (..., slice(8, -8), slice(8, -8))                         # where the rotation stays in the image
    exact = linear(a + b + a @ b)
    assert (compose(shear, rotation) - exact)[inside].abs().max() < 1e-4
    image = torch.sin(grid[:, :1] / 3) * torch.cos(grid[:, 1:] / 4)     # smooth, (1, 1, 32, 32)
    twice = warp(warp(image, shear), rotation)
    assert (warp(image, compose(shear, rotation)) - twice)[inside].abs().max() < 0.05  # measured 0.024
    for wrong in (compose(rotation, shear), shear + rotation):          # the other order; the plain sum
        assert (wrong - exact)[inside].abs().max() > 0.5                # measured 0.66 and 0.77 pixels
        assert (warp(image, wrong) - twice)[inside].abs().max() > 0.15  # measured 0.19 and 0.19
    # the environment (E25 in step) and J_Aux (E25, E26 on a replayed Omega_t) compose in that order too
    env = RegistrationEnv(max_step=10.0)                                       # no clamping of these fields
    env.reset(torch.cat([image.clamp(0, 1), image.clamp(0, 1)], 1))
    env.step(shear)
    state, _, _ = env.step(rotation)
    assert (env.field - exact)[inside].abs().max() < 1e-4
    assert torch.equal(state[:, 1:], warp(image.clamp(0, 1), env.field))
    batch = {"moving": image, "field": shear, "state": torch.cat([image, image], 1)}
    loss, _ = env.auxiliary_loss(rotation, batch)
    assert loss == auxiliary_loss_digits(warp(image, compose(shear, rotation)), image, rotation)[0]
    assert loss != auxiliary_loss_digits(warp(image, compose(rotation, shear)), image, rotation)[0]


def test_dice_on_hand_built_masks():
    a = torch.zeros(2, 1, 4, 4, dtype=torch.bool)
    b = torch.zeros(2, 1, 4, 4, dtype=torch.bool)
    a[0, 0, 0, :2] = True            # 2 pixels
    b[0, 0, 0, 1:4] = True           # 3 pixels, 1 shared: 2 * 1 / 5
    assert torch.allclose(dice(a, b), torch.tensor([0.4, 1.0]))  # both empty: 1


def test_ncc_of_an_image_with_itself_is_one_and_with_its_negative_too():
    torch.manual_seed(0)
    image = torch.rand(2, 1, 20, 20)
    assert torch.allclose(local_ncc_squared(image, image), torch.ones(2), atol=5e-3)  # 1 up to eps / var^2
    assert torch.allclose(local_ncc_squared(image, -image), torch.ones(2), atol=5e-3)  # squared: sign-blind
    noise = torch.rand(2, 1, 20, 20)
    assert local_ncc_squared(image, noise).max() < 0.3
    loss, parts = auxiliary_loss_digits(image, image, torch.zeros(2, 2, 20, 20))
    assert torch.isclose(loss, -parts["ncc"]) and parts["smooth"] == 0


def write_idx(path, array: np.ndarray, compress: bool) -> None:
    raw = bytes([0, 0, 8, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape) + array.astype(np.uint8).tobytes()
    with (gzip.open if compress else open)(path, "wb") as f:
        f.write(raw)


def make_mnist(root, n=20, compress=False):
    rng = np.random.default_rng(0)
    os.makedirs(root, exist_ok=True)
    ext = ".gz" if compress else ""
    for split, prefix in (("train", "train"), ("test", "t10k")):
        write_idx(os.path.join(root, f"{prefix}-images-idx3-ubyte{ext}"), rng.integers(0, 256, (n, 28, 28)), compress)
        write_idx(os.path.join(root, f"{prefix}-labels-idx1-ubyte{ext}"), np.arange(n) % 10, compress)


@pytest.mark.parametrize("compress", [False, True])
def test_idx_parsing_plain_and_gzip(tmp_path, compress):
    array = np.arange(2 * 3 * 4).reshape(2, 3, 4).astype(np.uint8)
    path = str(tmp_path / ("x.idx.gz" if compress else "x.idx"))
    write_idx(path, array, compress)
    assert np.array_equal(read_idx(path), array)
    make_mnist(tmp_path / "mnist", compress=compress)
    pairs = DigitPairs(str(tmp_path / "mnist"), "test")
    assert pairs.images.shape == (20, 28, 28) and pairs.labels.tolist() == [i % 10 for i in range(20)]


def test_bad_idx_files_are_refused(tmp_path):
    (tmp_path / "bad").write_bytes(b"\x00\x00\x0d\x01\x00\x00\x00\x01")
    with pytest.raises(DataError, match="not an idx file"):
        read_idx(str(tmp_path / "bad"))
    (tmp_path / "short").write_bytes(bytes([0, 0, 8, 1]) + struct.pack(">I", 10) + b"\x01\x02")
    with pytest.raises(DataError, match="holds 2 values"):
        read_idx(str(tmp_path / "short"))
    with pytest.raises(DataError, match="no t10k-images-idx3-ubyte"):
        DigitPairs(str(tmp_path), "test")


@pytest.mark.parametrize("mode", ["cross", "same", "affine"])
def test_pair_modes(mode):
    pairs = DigitPairs(None, "test", mode)
    x = pairs.fixed(40)
    assert x.shape == (40, 2, 28, 28) and x.min() >= 0 and x.max() <= 1
    classes = pairs.fixed_classes
    if mode == "cross":
        assert all(f != m for f, m in classes)
    else:
        assert all(f == m for f, m in classes)
    assert torch.equal(pairs.fixed(40), x)  # the same held-out pairs every time
    if mode == "affine":
        assert not torch.equal(x[:, 0], x[:, 1])


def test_builtin_split_is_disjoint():
    train, test = DigitPairs(None, "train"), DigitPairs(None, "test")
    assert len(train.labels) == 4000 and len(test.labels) == 1000
    assert torch.bincount(test.labels).tolist() == [100] * 10
    train_set = {tuple(x.flatten().tolist()[::7]) for x in train.images[:500]}
    assert not any(tuple(x.flatten().tolist()[::7]) in train_set for x in test.images[:200])


def test_environment_warps_the_original_moving_digit_and_rewards_dice():
    env = RegistrationEnv(max_step=0.5, reward_scale=1.0)
    fixed, moving = torch.zeros(1, 1, 8, 8), torch.zeros(1, 1, 8, 8)
    fixed[..., 2:5, 3:5] = 1.0
    moving[..., 2:5, 2:4] = 1.0                       # the same bar, one pixel to the left
    s0 = env.reset(torch.cat([fixed, moving], 1))
    assert torch.equal(s0, torch.cat([fixed, moving], 1))
    step = torch.zeros(1, 2, 8, 8)
    step[:, 0] = -0.5                                  # sample half a pixel to the left: content moves right
    _, _, _ = env.step(step)
    stored = env.extras()                              # what the next transition stores with s_1
    s2, reward, done = env.step(step * 5)              # clamped to -0.5 again: one pixel in all
    assert torch.allclose(env.field[:, 0], torch.full((1, 8, 8), -1.0)) and torch.allclose(env.field[:, 1], torch.zeros(1, 8, 8))
    assert torch.allclose(s2[:, 1:], fixed, atol=1e-6)   # exactly on the fixed bar
    assert torch.allclose(reward, torch.tensor([10.0])) and done.item() == 1.0
    assert torch.allclose(stored["field"][:, 0], torch.full((1, 8, 8), -0.5))  # Omega_t of s_t
    assert env.to_image(s2).shape == (1, 3, 8, 8)


def test_train_and_evaluate_digits(tmp_path):
    result = run_script("train.py", *TINY, "--run-dir", str(tmp_path))
    assert result.returncode == 0, result.stderr[-2000:]
    for name in ("grid.png", "grid_classes.csv", "eval.csv", "checkpoint.pt"):
        assert (tmp_path / "digits-seed1" / name).is_file(), name
    make_mnist(tmp_path / "mnist", compress=True)
    result = run_script("train.py", *TINY, "--run-dir", str(tmp_path), "--name", "idx", "--data-root",
                        str(tmp_path / "mnist"), "--pair-mode", "affine")
    assert result.returncode == 0, result.stderr[-2000:]
    result = run_script("evaluate.py", "--checkpoint", str(tmp_path / "digits-seed1" / "checkpoint.pt"),
                        "--steps", "1", "2", "--num-images", "50")
    assert result.returncode == 0, result.stderr[-2000:]
    table = [line.split() for line in result.stdout.splitlines() if line.strip()[:1].isdigit()]
    steps = [row for row in table if len(row) == len(table[-1])]
    assert [row[0] for row in steps[-3:]] == ["0", "1", "2"]
    assert (tmp_path / "digits-seed1" / "evaluate" / "eval_grid.png").is_file()
