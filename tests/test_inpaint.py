"""Face inpainting: transition, reward, weighted L1, discriminator, data, and the scripts end to end."""
import csv
import math
import os

import numpy as np
import pytest
import torch
from PIL import Image

from actor import VectorActor
from conftest import run_script
from data import DataError, FaceImages
from discriminator import Discriminator
from env import InpaintEnv, hole_geometry
from losses import auxiliary_loss_inpaint, discriminator_loss, generator_loss, overlap_weights, psnr, weighted_l1
from planner import VectorPlanner

TINY = ["--task", "inpaint", "--image-size", "32", "--num-envs", "4", "--batch-size", "4", "--total-steps", "8",
        "--max-episode-steps", "2", "--learning-starts", "4", "--test-steps", "2", "--set", "gan_warmup=0.5"]


def test_hole_geometry_is_the_papers_in_proportion():
    assert hole_geometry(128) == (32, 96, 4)  # patch [32:96], hole [36:92]
    assert hole_geometry(64) == (16, 48, 2)
    assert hole_geometry(32) == (8, 24, 1)


def test_transition_pastes_exactly_the_inner_region_into_the_original_masked_image():
    torch.manual_seed(0)
    env = InpaintEnv(32)
    x = torch.rand(2, 3, 32, 32)
    s0 = env.reset(x)
    rows, cols = env.hole  # [9:23]
    assert torch.equal(s0[..., rows, cols], torch.ones(2, 3, 14, 14))  # the hole is white
    outside = torch.ones(32, 32, dtype=torch.bool)
    outside[rows, cols] = False
    assert torch.allclose(s0[..., outside], (x * 2 - 1)[..., outside])
    assert torch.allclose(env.target, (x * 2 - 1)[..., 8:24, 8:24])
    first, second = torch.rand(2, 3, 16, 16) * 2 - 1, torch.rand(2, 3, 16, 16) * 2 - 1
    s1, _, _ = env.step(first)
    s2, _, _ = env.step(second)
    assert torch.equal(s1[..., rows, cols], first[..., 1:-1, 1:-1])
    assert torch.equal(s2[..., rows, cols], second[..., 1:-1, 1:-1])  # not cumulative
    for s in (s1, s2):
        assert torch.equal(s[..., outside], s0[..., outside])  # the ring and the face are untouched


def test_reward_is_a_hand_computed_psnr_with_bonus_and_done():
    env = InpaintEnv(32, success_psnr=26.0, bonus=10.0)
    env.reset(torch.full((2, 3, 32, 32), 0.75))  # target centre: 0.5 in [-1, 1], 191.25 on [0, 255]
    action = torch.stack([torch.zeros(3, 16, 16), torch.full((3, 16, 16), 0.51)])  # 127.5, and off by 0.01
    _, reward, done = env.step(action)
    # sample 0: MSE on [0, 255] = 63.75^2, PSNR = 10 log10(255^2 / 63.75^2) = 10 log10(16)
    assert reward[0].item() == pytest.approx(10 * math.log10(16), abs=1e-4) and done[0] == 0
    good = 10 * math.log10(255 ** 2 / (0.01 * 127.5) ** 2)  # 46.0 dB > 26: +10 and done
    assert reward[1].item() == pytest.approx(good + 10, abs=1e-3) and done[1] == 1
    assert psnr(action[:1], action[:1]).item() == pytest.approx(100.0)  # identical: capped


def test_reward_scale_multiplies_the_reward():
    env = InpaintEnv(32, reward_scale=0.01)
    env.reset(torch.full((1, 3, 32, 32), 0.75))
    assert env.step(torch.zeros(1, 3, 16, 16))[1].item() == pytest.approx(0.1 * math.log10(16), abs=1e-6)


def test_weighted_l1_on_a_hand_built_patch():
    w = overlap_weights(8, 1)  # inner 6x6 at 0.998, the 28 ring pixels at 5 * 0.998
    assert w.shape == (1, 1, 8, 8) and w[0, 0, 0, 0] == pytest.approx(4.99) and w[0, 0, 4, 4] == pytest.approx(0.998)
    target = torch.zeros(1, 3, 8, 8)
    assert weighted_l1(torch.ones(1, 3, 8, 8), target, w).item() == pytest.approx((36 * 0.998 + 28 * 4.99) / 64)
    one_inner, one_ring = target.clone(), target.clone()
    one_inner[0, 0, 3, 3], one_ring[0, 0, 0, 5] = 1.0, 1.0
    assert weighted_l1(one_inner, target, w).item() == pytest.approx(0.998 / 192)
    assert weighted_l1(one_ring, target, w).item() == pytest.approx(4.99 / 192)


def test_gan_losses_on_hand_numbers():
    zero = torch.zeros(4)
    assert discriminator_loss(zero, zero).item() == pytest.approx(2 * math.log(2))
    assert generator_loss(zero).item() == pytest.approx(math.log(2))
    assert discriminator_loss(torch.full((4,), 20.0), torch.full((4,), -20.0)).item() < 1e-8  # perfect D
    assert generator_loss(torch.full((4,), -20.0)).item() == pytest.approx(20.0, abs=1e-6)  # non-saturating
    w, a, y = overlap_weights(8, 1), torch.ones(2, 3, 8, 8), torch.zeros(2, 3, 8, 8)
    loss, parts = auxiliary_loss_inpaint(a, y, w, torch.zeros(2), rec_weight=1.2, adv_weight=0.001)
    assert loss.item() == pytest.approx(1.2 * parts["rec"].item() + 0.001 * math.log(2))
    loss_off, parts_off = auxiliary_loss_inpaint(a, y, w, None)
    assert parts_off["adv"].item() == 0 and loss_off.item() == pytest.approx(1.2 * parts["rec"].item())


def test_discriminator_shapes_and_spectral_norm():
    torch.manual_seed(0)
    d = Discriminator(3, 64)
    convs = [m for m in d.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == [32, 64, 128, 256, 1]  # 64-32-16-8-4, then 4x4 valid
    assert d(torch.randn(5, 3, 64, 64)).shape == (5,)
    assert Discriminator(3, 32)(torch.randn(2, 3, 32, 32)).shape == (2,)
    assert not hasattr(convs[0], "parametrizations")  # the first conv is plain
    for _ in range(20):  # power iterations run in train-mode forward passes
        d(torch.randn(2, 3, 64, 64))
    for conv in convs[1:]:
        sigma = torch.linalg.matrix_norm(conv.weight.detach().flatten(1), ord=2).item()
        assert sigma == pytest.approx(1.0, abs=0.05)
    with pytest.raises(ValueError):
        Discriminator(3, 48)


def test_patch_actor_outputs_the_centre_patch():
    planner = VectorPlanner(3, 64, plan_dim=16, width=8)
    actor = VectorActor(planner.widths, 16, patch=True)
    dist, features = planner(torch.randn(2, 3, 64, 64))
    assert actor(dist.rsample(), features).shape == (2, 3, 32, 32)


def test_builtin_faces_split_is_disjoint_and_deterministic():
    train, test = FaceImages(None, "train", 32), FaceImages(None, "test", 32)
    assert len(train.sources) == 80 and len(test.sources) == 20 and not set(train.names) & set(test.names)
    a = train.sample(4, torch.Generator().manual_seed(3))
    assert a.shape == (4, 3, 32, 32) and 0 <= a.min() and a.max() <= 1
    assert torch.equal(a, train.sample(4, torch.Generator().manual_seed(3)))
    assert torch.equal(test.fixed(3), FaceImages(None, "test", 32).fixed(3))


def make_faces(folder, n, size=40, mode="RGB"):
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        shape = (size, size + 8, 4) if mode == "RGBA" else (size, size + 8) if mode == "L" else (size, size + 8, 3)
        Image.fromarray(rng.integers(0, 255, shape, dtype=np.uint8)).save(os.path.join(folder, f"f{i:02d}.png"))


def test_face_folder_split_grey_rgba_and_small_images(tmp_path):
    make_faces(tmp_path / "rgb", 12)
    train, test = FaceImages(str(tmp_path / "rgb"), "train", 32), FaceImages(str(tmp_path / "rgb"), "test", 32)
    assert test.names == ["f00.png", "f10.png"] and len(train.names) == 10
    assert train.sample(2, torch.Generator().manual_seed(0)).shape == (2, 3, 32, 32)
    for mode in ("L", "RGBA"):
        make_faces(tmp_path / mode, 3, mode=mode)
        assert FaceImages(str(tmp_path / mode), "test", 32).fixed(1).shape == (1, 3, 32, 32)
    make_faces(tmp_path / "small", 3, size=20)
    with pytest.raises(DataError, match="smaller than the working size"):
        FaceImages(str(tmp_path / "small"), "train", 32)


def test_train_and_evaluate_inpaint_with_rl_on_and_off(tmp_path):
    for rl, t_max in (("on", "2"), ("off", "1")):
        argv = [t_max if previous == "--max-episode-steps" else a for previous, a in zip([""] + TINY, TINY)]
        result = run_script("train.py", *argv, "--rl", rl, "--run-dir", str(tmp_path), "--name", rl)
        assert result.returncode == 0, result.stderr[-2000:]
        for name in ("config.json", "split.json", "progress.csv", "checkpoint.pt", "eval.csv", "grid.png"):
            assert (tmp_path / rl / name).is_file(), name
    with open(tmp_path / "on" / "progress.csv") as f:
        on = list(csv.DictReader(f))
    with open(tmp_path / "off" / "progress.csv") as f:
        off = list(csv.DictReader(f))
    assert on[-1]["critic_loss"] and on[-1]["rec"] and on[-1]["disc_loss"]  # GAN on after the warm-up
    assert all(not r["critic_loss"] for r in off) and off[-1]["rec"]
    assert on[-1]["updates"] == off[-1]["updates"]  # the same number of J_Aux updates
    result = run_script("evaluate.py", "--checkpoint", str(tmp_path / "on" / "checkpoint.pt"), "--steps", "1", "3")
    assert result.returncode == 0, result.stderr[-2000:]
    table = [line.split() for line in result.stdout.splitlines() if line.strip()[:1].isdigit()]
    assert [row[0] for row in table] == ["0", "1", "3"] and len(table[0]) == 9  # step, 4 metrics x 2 regions
    assert float(table[1][5]) > float(table[0][5])  # hole PSNR: any filling beats the white hole
    result = run_script("evaluate.py", "--compare", str(tmp_path / "on"), str(tmp_path / "off"))
    assert result.returncode == 0 and "| inpaint --rl off, T_max 1 | 1 | 1 |" in result.stdout, result.stdout
