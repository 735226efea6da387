"""Photo translation: the pix2pix loader, the environment, its losses, the size table, and the scripts."""
import csv
import math
import os

import numpy as np
import pytest
import torch
import torch.nn as nn
from PIL import Image

from actor import VectorActor
from extras.benchmark import Pix2PixUNet, agent_size, count_flops
from conftest import one_line_error, run_script
from data import DataError, PairedImages
from extras.datasets import make_edges2photo
from env import PhotoEnv
from losses import auxiliary_loss_photo, total_variation_squared
from planner import VectorPlanner

TINY = ["--task", "photo", "--image-size", "32", "--num-envs", "4", "--batch-size", "4", "--total-steps", "8",
        "--max-episode-steps", "2", "--learning-starts", "4", "--test-steps", "2", "--set", "gan_warmup=0.5"]


def write_pair(path, a: np.ndarray, b: np.ndarray) -> None:
    """Save A | B side by side, as pix2pix's aligned images: a, b (H, H, 3) uint8."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(np.concatenate([a, b], axis=1)).save(path)


def make_layout(root, n=3, size=32, test="test"):
    """root/train and root/<test>: A a red square, B a blue one, both with a left-to-right ramp."""
    ramp = np.linspace(0, 255, size)[None, :, None].repeat(size, 0).astype(np.uint8)
    zero = np.zeros_like(ramp)
    red, blue = np.concatenate([ramp, zero, zero], 2), np.concatenate([zero, zero, ramp], 2)
    for split in ("train", test):
        for i in range(n):
            write_pair(os.path.join(root, split, f"{i}.png"), red, blue)


@pytest.mark.parametrize("direction, source, target", [("AtoB", 0, 2), ("BtoA", 2, 0)])
def test_loader_splits_a_and_b_in_both_directions(tmp_path, direction, source, target):
    make_layout(tmp_path)
    pairs = PairedImages(str(tmp_path), "test", 32, direction).fixed(2)  # (2, 6, 32, 32)
    assert pairs.shape == (2, 6, 32, 32)
    means = pairs.mean((0, 2, 3))  # per channel: only the red (A) or the blue (B) channel is lit
    assert means[source] > 0.4 and means[3 + target] > 0.4
    assert means[[c for c in range(3) if c != source]].max() < 0.01
    assert means[[3 + c for c in range(3) if c != target]].max() < 0.01


def test_training_jitter_shifts_and_flips_both_halves_alike(tmp_path):
    make_layout(tmp_path, n=2)
    pairs = PairedImages(str(tmp_path), "train", 32).sample(16, torch.Generator().manual_seed(0))
    assert torch.allclose(pairs[:, 0], pairs[:, 5], atol=1e-6)  # A's red ramp == B's blue ramp, pixel by pixel
    rising = (pairs[:, 0, :, -1] > pairs[:, 0, :, 0]).all(1)
    assert rising.any() and not rising.all()  # some flipped, some not


def test_val_folder_is_the_test_split_when_there_is_no_test(tmp_path):
    make_layout(tmp_path, n=2, test="val")
    test = PairedImages(str(tmp_path), "test", 16)
    assert test.names == [os.path.join("val", "0.png"), os.path.join("val", "1.png")]


def test_bad_layouts_are_refused(tmp_path):
    with pytest.raises(DataError, match="no such folder"):
        PairedImages(str(tmp_path / "nope"), "train", 32)
    with pytest.raises(DataError, match="no train/ folder"):
        PairedImages(str(tmp_path), "train", 32)
    make_layout(tmp_path / "notest", test="other")
    with pytest.raises(DataError, match="no test/ or val/ folder"):
        PairedImages(str(tmp_path / "notest"), "test", 32)
    make_layout(tmp_path / "square")
    Image.new("RGB", (40, 32)).save(tmp_path / "square" / "train" / "odd.png")
    with pytest.raises(DataError, match=r"odd.png: 40x32 is not an A\|B pair"):
        PairedImages(str(tmp_path / "square"), "train", 32)
    make_layout(tmp_path / "small", size=16)
    with pytest.raises(DataError, match="smaller than the working size"):
        PairedImages(str(tmp_path / "small"), "train", 32)


def test_builtin_edges2photo_layout_is_deterministic_and_disjoint(tmp_path):
    a, b = make_edges2photo(str(tmp_path / "a"), (2, 1), 32), make_edges2photo(str(tmp_path / "b"), (2, 1), 32)
    for split, n in (("train", 12), ("test", 6)):
        files = sorted(os.listdir(os.path.join(a, split)))
        assert len(files) == n
        for f in files:
            x, y = (np.asarray(Image.open(os.path.join(r, split, f))) for r in (a, b))
            assert x.shape == (32, 64, 3) and np.array_equal(x, y)
    edges = np.asarray(Image.open(os.path.join(a, "train", "0000.jpg")))[:, :32]
    assert (edges > 200).mean() > 0.7  # black lines on white
    pairs = PairedImages(a, "train", 32)
    assert pairs.fixed(1).shape == (1, 6, 32, 32)


def test_transition_replaces_the_output_and_keeps_the_source():
    env = PhotoEnv()
    pair = torch.rand(2, 6, 16, 16)
    s0 = env.reset(pair)
    assert s0.shape == (2, 6, 16, 16)
    assert torch.allclose(s0[:, :3], pair[:, :3] * 2 - 1) and torch.allclose(s0[:, 3:], s0[:, :3])  # y_0 = x
    action = torch.rand(2, 3, 16, 16) * 2 - 1
    s1, _, _ = env.step(action)
    assert torch.equal(s1[:, :3], s0[:, :3]) and torch.equal(s1[:, 3:], action)
    assert torch.allclose(env.to_image(s1), (action + 1) / 2)
    assert torch.allclose(env.extras()["target"], pair[:, 3:] * 2 - 1)


def test_noise_initial_output_is_uniform_seeded_and_repeatable():
    pair = torch.rand(4, 6, 16, 16)
    first, second = PhotoEnv(init="noise", seed=3).reset(pair), PhotoEnv(init="noise", seed=3).reset(pair)
    assert torch.equal(first, second)
    noise = first[:, 3:]
    assert noise.min() >= -1 and noise.max() <= 1 and abs(noise.mean()) < 0.1 and noise.std() > 0.5
    assert not torch.equal(noise, PhotoEnv(init="noise", seed=4).reset(pair)[:, 3:])
    with pytest.raises(ValueError):
        PhotoEnv(init="zeros")


def test_reward_is_a_hand_computed_psnr_with_bonus_and_done():
    env = PhotoEnv(success_psnr=30.0, bonus=10.0, reward_scale=1.0)
    target = torch.zeros(2, 3, 8, 8)
    env.reset(torch.cat([torch.rand(2, 3, 8, 8), (target + 1) / 2], 1))
    action = torch.stack([torch.full((3, 8, 8), 0.5), torch.full((3, 8, 8), 0.01)])  # errors 0.5 and 0.01
    _, reward, done = env.step(action)
    expected = [10 * math.log10(4 / 0.25), 10 * math.log10(4 / 1e-4) + 10]  # 12.04 dB; 46.02 dB + bonus
    assert torch.allclose(reward, torch.tensor(expected), atol=1e-3)
    assert done.tolist() == [0.0, 1.0]
    env.reward_scale = 0.01
    assert torch.allclose(env.step(action)[1], 0.01 * torch.tensor(expected), atol=1e-5)


def test_squared_total_variation_and_the_auxiliary_loss_on_hand_numbers():
    image = torch.zeros(1, 1, 2, 3)
    image[..., 1, :] = 1.0  # two rows: 0 0 0 / 1 1 1
    assert torch.allclose(total_variation_squared(image), torch.tensor([1.0]))  # dx^2 mean 0, dy^2 mean 1
    image[..., 0, 1] = 2.0  # row 0: 0 2 0
    # dx: (2, -2, 0, 0) -> mean 8/4 = 2; dy: (1, -1, 1) -> mean 3/3 = 1
    assert torch.allclose(total_variation_squared(image), torch.tensor([3.0]))
    action, target = torch.full((1, 3, 4, 4), 0.5), torch.zeros(1, 3, 4, 4)
    loss, parts = auxiliary_loss_photo(action, target, None)  # during the warm-up: L1 alone
    assert torch.isclose(loss, torch.tensor(0.5)) and parts["adv"] == 0 and parts["tv"] == 0
    logits = torch.zeros(1)  # D(a) = 1/2: L_adv = log 2
    loss, parts = auxiliary_loss_photo(action, target, logits, 1.0, 0.02, 0.1)
    assert torch.isclose(loss, torch.tensor(0.5 + 0.02 * math.log(2)))  # a flat image has TV 0
    loss, _ = auxiliary_loss_photo(image.repeat(1, 3, 1, 1), torch.zeros(1, 3, 2, 3), logits, 1.0, 0.02, 0.1)
    assert torch.isclose(loss, torch.tensor(5 / 6 + 0.02 * math.log(2) + 0.1 * 3.0))  # L1: (0+2+0+1+1+1)/6


def test_full_size_actor_has_one_more_up_block_and_a_tanh_output():
    planner = VectorPlanner(6, 32, 16, 8)
    actor = VectorActor(planner.widths, 16, tanh=True)
    dist, features = planner(torch.randn(2, 6, 32, 32))
    action = actor(dist.rsample() * 100, features)
    assert action.shape == (2, 3, 32, 32) and action.abs().max() < 1
    patch = VectorActor(planner.widths, 16, patch=True)
    extra = sum(p.numel() for p in actor.parameters()) - sum(p.numel() for p in patch.parameters())
    w = planner.widths[0]
    assert extra == 9 * w * w + w + 2 * w  # the top block: 3x3 conv w -> w with bias, and its batch norm


def test_size_table_counts_match_the_networks():
    for task, size, plan_dim, width, channels in (("photo", 64, 256, 32, 6), ("inpaint", 64, 128, 16, 3)):
        planner = VectorPlanner(channels, size, plan_dim, width)
        actor = VectorActor(planner.widths, plan_dim, patch=task == "inpaint", tanh=task == "photo")
        params, flops = agent_size(task, size, plan_dim, width)
        assert params == sum(p.numel() for m in (planner, actor) for p in m.parameters())
        assert flops > 0
    assert sum(p.numel() for p in Pix2PixUNet().parameters()) == 54_413_955  # pix2pix prints 54.414 M
    conv = nn.Conv2d(3, 8, 4, 2, 1)
    assert count_flops(conv, torch.zeros(1, 3, 16, 16)) == 2 * 8 * 8 * 8 * 3 * 4 * 4  # 2 x out pixels x Cin x Cout x k^2


def test_benchmark_sizes_prints_the_table():
    result = run_script("extras.benchmark", "sizes")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "| pix2pix U-Net generator (8 downs) | 256 x 256 | 54,413,955 |" in result.stdout
    photo = [line for line in result.stdout.splitlines() if line.startswith("| RL-I2IT photo translation | 128")]
    assert len(photo) == 1 and int(photo[0].split("|")[3].replace(",", "")) < 54_413_955 / 5


def test_train_and_evaluate_photo(tmp_path):
    runs = tmp_path / "runs"
    result = run_script("train.py", *TINY, "--run-dir", str(runs), cwd=str(tmp_path))  # built-in pairs
    assert result.returncode == 0, result.stderr[-2000:]
    assert len(os.listdir(tmp_path / "builtin" / "edges2photo" / "test")) == 48  # written where it runs
    assert (runs / "photo-seed1" / "grid.png").is_file() and (runs / "photo-seed1" / "eval.csv").is_file()
    with open(runs / "photo-seed1" / "progress.csv") as f:
        rows = list(csv.DictReader(f))
    assert rows[-1]["critic_loss"] and rows[-1]["disc_loss"] and rows[-1]["tv"]  # GAN and TV after the warm-up
    make_layout(tmp_path / "pairs", n=4)
    result = run_script("train.py", *TINY, "--run-dir", str(runs), "--name", "folder", "--data-root",
                        str(tmp_path / "pairs"), "--direction", "BtoA", "--set", "init=noise", "--rl", "off",
                        "--max-episode-steps", "1")
    assert result.returncode == 0, result.stderr[-2000:]
    result = run_script("evaluate.py", "--checkpoint", str(runs / "photo-seed1" / "checkpoint.pt"), "--steps", "1", "2",
                        cwd=str(tmp_path))
    assert result.returncode == 0, result.stderr[-2000:]
    table = [line.split() for line in result.stdout.splitlines() if line.strip()[:1].isdigit()]
    assert [row[0] for row in table] == ["0", "1", "2"] and len(table[0]) == 4  # step, PSNR, SSIM, L1
    grid = Image.open(runs / "photo-seed1" / "evaluate" / "eval_grid.png")
    assert grid.size[0] > 4 * 128  # source | step 1 | step 2 | target, shown at 128
    result = run_script("evaluate.py", "--compare", str(runs / "photo-seed1"), str(runs / "folder"))
    assert result.returncode == 0, result.stderr[-2000:]
    assert "| photo --rl off, T_max 1, init=noise | 1 | 1 |" in result.stdout, result.stdout
    one_line_error(run_script("evaluate.py", "--checkpoint", str(runs / "photo-seed1" / "checkpoint.pt"),
                              "--image-size", "64", cwd=str(tmp_path)), "do not fit --image-size 64")
