"""Deformable registration (--task register): k-means, label Dice, Jacobian folding, the phantom data, the OASIS
reader, bad inputs, and the scripts."""
import math
import re

import numpy as np

import pytest
import torch

from conftest import one_line_error, run_script
from data import DataError
from env import RegistrationEnv
from losses import (compose, folding_fraction, jacobian_determinant, kmeans_labels, mean_dice, ncc, warp,
                    warp_labels)
from extras.registration import RegistrationPairs, invert_field, phantom_atlas, read_oasis_subject, read_pair

TINY = ["--task", "register", "--image-size", "32", "--num-envs", "4", "--batch-size", "4", "--total-steps", "12",
        "--max-episode-steps", "3", "--learning-starts", "4", "--test-steps", "3", "--buffer-size", "200"]


def two_regions(size: int = 16) -> torch.Tensor:
    """A dark left half (0.2) and a bright right half (0.8), with a little noise: (1, 1, S, S)."""
    image = torch.full((1, 1, size, size), 0.2)
    image[..., size // 2:] = 0.8
    return image + 0.01 * torch.randn(image.shape, generator=torch.Generator().manual_seed(0))


def test_kmeans_labels_of_a_two_region_image_are_its_regions_darkest_first():
    labels = kmeans_labels(two_regions(), 2)
    assert labels.dtype == torch.int64 and labels.shape == (1, 1, 16, 16)
    assert (labels[..., :8] == 0).all() and (labels[..., 8:] == 1).all()
    flipped = kmeans_labels(1 - two_regions(), 2)                       # now the left half is the bright one
    assert (flipped[..., :8] == 1).all() and (flipped[..., 8:] == 0).all()


def test_mean_dice_on_hand_built_label_maps():
    reference = torch.zeros(1, 1, 4, 4, dtype=torch.long)
    reference[..., :2, :] = 1                                           # label 1: the top 8 pixels
    reference[..., 3, 3] = 2                                            # label 2: one pixel
    labels = reference.clone()
    labels[..., 0, :] = 0                                               # 4 of the 8 label-1 pixels lost
    # label 1: 2 * 4 / (4 + 8) = 2/3; label 2: 1; the background is not counted
    assert torch.allclose(mean_dice(labels, reference), torch.tensor([(2 / 3 + 1) / 2]))
    assert torch.allclose(mean_dice(reference, reference), torch.ones(1))


def test_dice_reward_of_a_known_shift():
    """A bar moved 2 pixels: the k-means Dice reward is that of the shifted masks, and a field that shifts it
    back earns the full reward."""
    fixed = torch.zeros(1, 1, 16, 16)
    fixed[..., 4:12, 4:8] = 1.0                                         # a bar 8 high, 4 wide
    moving = torch.roll(fixed, 2, dims=-1)                              # 2 pixels to the right
    pair = torch.cat([fixed, moving, kmeans_labels(fixed, 2).float(), kmeans_labels(moving, 2).float()], 1)
    env = RegistrationEnv(max_step=2.0, reward_scale=1.0, classes=2)
    env.reset(pair)
    _, reward, _ = env.step(torch.zeros(1, 2, 16, 16))                  # no move: overlap 2 of 4 columns
    assert torch.allclose(reward, torch.tensor([10 * 2 * 16 / (32 + 32)]))
    env.reset(pair)
    shift = torch.zeros(1, 2, 16, 16)
    shift[:, 0] = 2.0                                                   # fetch from 2 pixels to the right
    state, reward, done = env.step(shift)
    assert torch.allclose(reward, torch.tensor([10.0])) and torch.allclose(state[:, 1:], fixed, atol=1e-6)


def test_jacobian_of_the_identity_is_one_and_a_folding_field_is_counted():
    zero = torch.zeros(2, 2, 12, 12)
    assert torch.allclose(jacobian_determinant(zero), torch.ones(2, 1, 12, 12))
    assert torch.equal(folding_fraction(zero), torch.zeros(2))
    scale = torch.zeros(1, 2, 12, 12)
    scale[:, 0] = 0.5 * torch.arange(12.0)                              # p -> 1.5 p along x: det 1.5
    assert torch.allclose(jacobian_determinant(scale), torch.full((1, 1, 12, 12), 1.5))
    fold = torch.zeros(1, 2, 12, 12)
    fold[:, 0, :, 6:] = -3.0                                            # columns 6.. fetch from 3 to the left
    det = jacobian_determinant(fold)
    # at the jump, d(x + u)/dx = 1 - 3/2 (central difference) < 0 on the columns 5 and 6 of each row
    assert (det[..., 5:7] < 0).all() and (det[..., :5] == 1).all() and (det[..., 7:] == 1).all()
    assert torch.allclose(folding_fraction(fold), torch.tensor([2 / 12]))


@pytest.mark.parametrize("matrix", [((1.2, 0.3), (0.1, 0.8)),                      # shear and scale: det 0.93
                                    ((1.2 * math.cos(0.5), -1.2 * math.sin(0.5)),     # rotation by 0.5 rad and
                                     (1.2 * math.sin(0.5), 1.2 * math.cos(0.5)))])    # scale 1.2: det 1.44
def test_jacobian_of_an_affine_map_is_its_determinant(matrix):
    """p -> A p, i.e. Omega(p) = (A - I) p with x along columns (channel 0) and y along rows (channel 1): every
    pixel's det(I + grad Omega) is det A. Both channels depend on both axes, so swapping a channel's derivatives
    or flipping the cross term's sign changes the answer."""
    (a, b), (c, d) = matrix
    y, x = torch.meshgrid(torch.arange(12.0), torch.arange(12.0), indexing="ij")
    field = torch.stack([(a - 1) * x + b * y, c * x + (d - 1) * y])[None]     # (1, 2, 12, 12)
    assert torch.allclose(jacobian_determinant(field), torch.full((1, 1, 12, 12), a * d - b * c), atol=1e-5)


def test_phantom_labels_match_its_regions():
    from skimage.data import shepp_logan_phantom

    image, labels = phantom_atlas(400)                                  # the phantom's own size: no resampling
    assert torch.allclose(image[0], torch.from_numpy(shepp_logan_phantom()).float())
    values = {int(c): image[labels == c].unique() for c in labels.unique()}
    brain = max(values, key=lambda c: int((labels == c).sum()) if c else -1)
    assert all(len(v) == 1 for c, v in values.items() if c != brain)   # one intensity a region, exactly
    assert len(values) >= 5 and values[0].item() == 0 and (labels[0, 0] == 0).all()   # the border: background
    assert len({v[0].item() for v in values.values()}) >= 4            # distinct intensities (the dark one twice:
    assert values[1].item() == 0                                        # outside, and the dark regions inside)
    image, labels = phantom_atlas(64)
    assert image.shape == labels.shape == (1, 64, 64) and labels.dtype == torch.int64
    assert labels.unique().tolist() == list(range(int(labels.max()) + 1)) and labels.max() >= 3
    centre = ((torch.arange(64) + 0.5) * 400 / 64).long()              # at 64: the phantom at the pixel centres
    sampled = torch.from_numpy(shepp_logan_phantom()).float()[centre][:, centre]
    brain = max(range(1, int(labels.max()) + 1), key=lambda c: int((labels == c).sum()))
    assert all(len(sampled[labels[0] == c].unique()) == 1 for c in labels.unique() if c != brain)


def test_builtin_pairs_and_their_true_field():
    train = RegistrationPairs(None, "train", 32, classes=3, subjects=16)
    test = RegistrationPairs(None, "test", 32, classes=3, subjects=16)   # 4 held-out subjects
    assert not torch.equal(train.subjects[0][:2], test.subjects[0][:2])          # other deformations
    batch = train.sample(5, torch.Generator().manual_seed(0))
    assert batch.shape == (5, 4, 32, 32) and 0 <= batch[:, :2].min() and batch[:, :2].max() <= 1
    assert set(batch[:, 2:].unique().tolist()) <= {0.0, 1.0, 2.0}
    pairs = test.fixed(4)
    assert torch.equal(pairs, test.fixed(4)) and torch.equal(pairs[:2], test.fixed(2))   # the same list every time
    truth = test.truth
    fixed, moving = truth["fixed_labels"], truth["moving_labels"]
    identity, registered = mean_dice(moving, fixed), mean_dice(warp_labels(moving, truth["field"]), fixed)
    assert (registered > identity).all() and registered.mean() > 0.9, (identity, registered)
    u = train.subjects[2][:3]
    assert compose(u, invert_field(u)).abs().max() < 0.1                         # the inverse undoes u


def write_subject(folder, image=None, labels=None, shape=(20, 24)):
    import nibabel

    folder.mkdir(parents=True)
    rng = np.random.default_rng(len(str(folder)))
    image = rng.random(shape) * 3 if image is None else image               # OASIS norm slices are not in [0, 1]
    labels = rng.integers(0, 4, shape) if labels is None else labels
    for name, array in (("slice_norm.nii.gz", image), ("slice_seg24.nii.gz", labels)):
        nibabel.save(nibabel.Nifti1Image(np.asarray(array, dtype=np.float32), np.eye(4)), str(folder / name))


def test_held_out_pairs_use_every_subject_once():
    """Drawn with replacement, 40 held-out pairs covered only 29 subjects; every held-out subject is the
    moving image exactly once; with --pair-mode subject each is also the fixed image once."""
    atlas = RegistrationPairs(None, "test", 32, classes=3, subjects=40)       # 10 held-out subjects
    pairs = atlas.fixed(10)
    subject_images = atlas.subjects[0]
    moving = [int((subject_images - p[1]).abs().flatten(1).sum(1).argmin()) for p in pairs]
    assert sorted(moving) == list(range(10))                                   # each subject once
    assert all(torch.equal(p[0], atlas.atlas[0][0, 0]) for p in pairs)        # against the atlas
    assert torch.equal(atlas.truth["moving_labels"], atlas.subjects[1])
    subject = RegistrationPairs(None, "test", 32, classes=3, mode="subject", subjects=40)
    pairs = subject.fixed(10)
    fixed = [int((subject_images - p[0]).abs().flatten(1).sum(1).argmin()) for p in pairs]
    moving = [int((subject_images - p[1]).abs().flatten(1).sum(1).argmin()) for p in pairs]
    assert sorted(fixed) == sorted(moving) == list(range(10)) and all(f != m for f, m in zip(fixed, moving))
    with pytest.raises(ValueError, match="10 subjects"):
        atlas.fixed(11)


def test_the_dice_column_uses_the_true_labels(tmp_path):
    """evaluate_register's "Dice" at step 0 (no field yet) is the true labels' Dice, which on the phantoms differs
    from the k-means labels' (the reward's): a table built on the k-means labels would fail here."""
    from extras.cli import parse_args
    from evaluate import evaluate_register
    from tasks import build

    args, _ = parse_args(["--task", "register", "--image-size", "32"])
    torch.manual_seed(0)
    task = build(args, torch.device("cpu"))
    pairs = task["test_data"].fixed(6)
    table = evaluate_register(task, pairs, [1], str(tmp_path / "grid.png"))
    truth = task["test_data"].truth
    true_dice = mean_dice(truth["moving_labels"], truth["fixed_labels"]).mean().item()
    kmeans = pairs[:, 2:4].long()
    kmeans_dice = mean_dice(kmeans[:, 1:], kmeans[:, :1], args.kmeans).mean().item()
    assert abs(true_dice - kmeans_dice) > 0.01  # the two label sets tell apart
    assert table[0]["Dice"] == pytest.approx(true_dice) and table[0]["k-means Dice"] == pytest.approx(kmeans_dice)


def test_oasis_reader_on_files_written_with_nibabel(tmp_path):
    image = np.zeros((20, 24), dtype=np.float32)
    image[5:15, 6:18] = 2.0                                                  # a bright block on black
    labels = (image > 0).astype(np.float32) * 7
    write_subject(tmp_path / "OASIS_OAS1_0001_MR1", image[..., None], labels[..., None])  # stored (H, W, 1)
    picture, seg = read_oasis_subject(str(tmp_path / "OASIS_OAS1_0001_MR1"), 24)
    assert picture.shape == seg.shape == (1, 24, 24) and seg.dtype == torch.int64
    assert picture.max() == 1.0 and picture.min() == 0.0                     # rescaled to [0, 1]
    assert set(seg.unique().tolist()) == {0, 7} and (seg[0, :2] == 0).all()  # padded to a square with background
    assert torch.equal(seg > 0, picture > 0.5)                               # labels stay on their pixels
    for i in range(2, 13):
        write_subject(tmp_path / f"OASIS_OAS1_{i:04d}_MR1")
    train = RegistrationPairs(str(tmp_path), "train", 16, mode="subject")
    test = RegistrationPairs(str(tmp_path), "test", 16, mode="subject")
    assert len(train.sources) + len(test.sources) == 11 and not set(train.names) & set(test.names)
    assert test.fixed(3).shape == (3, 4, 16, 16) and test.truth["field"] is None
    pair, truth = read_pair(str(tmp_path / "OASIS_OAS1_0002_MR1"), str(tmp_path / "OASIS_OAS1_0003_MR1"), 16, 3)
    assert pair.shape == (1, 4, 16, 16) and truth["moving_labels"].shape == (1, 1, 16, 16)


def test_bad_oasis_inputs_give_one_line_errors(tmp_path):
    write_subject(tmp_path / "missing")
    (tmp_path / "missing" / "slice_seg24.nii.gz").unlink()
    write_subject(tmp_path / "sizes", labels=np.zeros((18, 24)))
    write_subject(tmp_path / "volume", image=np.random.default_rng(0).random((20, 24, 5)),
                  labels=np.zeros((20, 24, 5)))
    for name, text in (("missing", "slice_seg24.nii.gz: no such file"), ("sizes", "they must match"),
                       ("volume", "a 3-D array of shape (20, 24, 5)"), ("nowhere", "no such file")):
        with pytest.raises(DataError, match=re.escape(text)):
            read_oasis_subject(str(tmp_path / name), 16)
    with pytest.raises(DataError, match="pairs need at least 2"):
        RegistrationPairs(str(tmp_path / "volume"), "train", 16)


def test_train_and_evaluate_register(tmp_path):
    result = run_script("train.py", *TINY, "--run-dir", str(tmp_path))
    assert result.returncode == 0, result.stderr[-2000:]
    for name in ("grid.png", "eval.csv", "checkpoint.pt"):
        assert (tmp_path / "register-seed1" / name).is_file(), name
    result = run_script("train.py", *TINY, "--run-dir", str(tmp_path), "--rl", "off", "--name", "onestep",
                        "--max-episode-steps", "1")
    assert result.returncode == 0, result.stderr[-2000:]
    result = run_script("evaluate.py", "--checkpoint", str(tmp_path / "register-seed1"), "--steps", "1", "2",
                        "--baseline", str(tmp_path / "onestep"), "--num-images", "6")
    assert result.returncode == 0, result.stderr[-2000:]
    rows = [line.split() for line in result.stdout.splitlines() if line.split()[:1] in (["RL-I2IT"], ["one-step"])]
    assert [(r[0], r[2]) for r in rows] == [("RL-I2IT", s) for s in "012"] + [("one-step", s) for s in "012"]
    identity = [float(r[3]) for r in rows if r[2] == "0"]
    assert identity[0] == identity[1]                                   # the same pairs for both models
    assert "EPE" in result.stdout and (tmp_path / "register-seed1" / "evaluate" / "eval_grid_baseline.png").is_file()
    for i in (1, 2):
        write_subject(tmp_path / "oasis" / f"s{i}")
    result = run_script("evaluate.py", "--checkpoint", str(tmp_path / "register-seed1"), "--steps", "1",
                        "--pair", str(tmp_path / "oasis" / "s1"), str(tmp_path / "oasis" / "s2"))
    assert result.returncode == 0 and "the pair" in result.stdout, result.stderr[-2000:]
    one_line_error(run_script("evaluate.py", "--checkpoint", str(tmp_path / "register-seed1"), "--pair",
                              str(tmp_path / "oasis" / "s1"), str(tmp_path / "nowhere")), "no such file")


@pytest.mark.parametrize("argv, text", [
    (["--task", "register", "--pair-mode", "cross"], "--task register pairs are atlas or subject"),
    (["--task", "digits", "--pair-mode", "atlas"], "--task digits pairs are cross, same or affine"),
    (["--task", "register", "--image-size", "30"], "multiple of 4"),
    (["--task", "register", "--set", "kmeans=1"], "--set kmeans=1: must be from 2 to 16"),
    (["--task", "style", "--set", "kmeans=3"], "--set kmeans is for --task register"),
    (["--task", "register", "--data-root", "/nowhere"], "/nowhere: no such folder"),
])
def test_bad_register_flags(argv, text):
    one_line_error(run_script("train.py", *argv, "--total-steps", "1"), text)


def test_ncc_is_one_for_an_image_with_itself_and_a_brighter_copy():
    image = two_regions()
    assert torch.allclose(ncc(image, 2 * image + 1), torch.ones(1), atol=1e-5)
    assert torch.allclose(ncc(image, warp(image, torch.zeros(1, 2, 16, 16))), torch.ones(1), atol=1e-5)
