"""Every setting checked before anything is built: each bad value ends in one line, with nothing run."""
import pytest

import train
from extras.cli import parse_args

STYLE, INPAINT, PHOTO = ["--task", "style"], ["--task", "inpaint"], ["--task", "photo"]
DIGITS, REGISTER, VIDEO = ["--task", "digits"], ["--task", "register"], ["--task", "video"]

BAD = [  # (arguments, text the one line must hold)
    (["--seed", "-1"], "--seed -1"),
    (["--seed", "99999999999"], "--seed 99999999999"),
    (["--lr", "-1e-3"], "--lr -0.001: must be positive"),
    (["--lr", "nan"], "--lr nan"),
    (["--lr", "inf"], "--lr inf"),
    (["--set", "critic_lr=-1e-3"], "critic_lr"),
    (["--set", "alpha_lr=0"], "alpha_lr"),
    (["--set", "beta1=1"], "beta1"),
    (["--set", "beta2=-0.1"], "beta2"),
    (["--set", "gamma=nan"], "gamma"),
    (["--set", "gamma=1.5"], "gamma"),
    (["--set", "tau=2"], "tau"),
    (["--set", "tau=0"], "tau"),
    (["--set", "init_log_alpha=inf"], "init_log_alpha"),
    (["--set", "kl_weight=-1"], "kl_weight"),
    (["--learning-starts", "-5"], "--learning-starts"),
    (["--reward-scale", "nan"], "--reward-scale"),
    (["--reward-scale", "0"], "--reward-scale"),
    (["--set", "tv_weight=nan"], "tv_weight"),
    (["--style-weight", "-1"], "--style-weight"),
    (["--step-size", "nan"], "--step-size"),
    (["--set", "style_size=100000"], "style_size=100000"),
    (["--image-size", "100000"], "at --image-size 100000: the replay buffer alone needs"),
    (["--test-steps", "1000000"], "--test-steps 1000000"),
    (["--name", "../../escape"], "--name ../../escape"),
    (["--name", "a/b"], "--name a/b"),
    (["--set", "save_every=0"], "save_every"),
    (["--set", "planner_every=0"], "planner_every"),
    (["--set", "target_entropy=inf"], "target_entropy"),
    (INPAINT + ["--set", "rec_weight=nan"], "rec_weight"),
    (INPAINT + ["--set", "adv_weight=-1"], "adv_weight"),
    (INPAINT + ["--set", "success_psnr=nan"], "success_psnr"),
    (INPAINT + ["--set", "gan_warmup=-3"], "gan_warmup"),
    (INPAINT + ["--set", "plan_dim=0"], "plan_dim"),
    (INPAINT + ["--set", "width=0"], "width"),
    (INPAINT + ["--set", "disc_lr=-1"], "disc_lr"),
    (PHOTO + ["--set", "tv2_weight=-0.1"], "tv2_weight"),
    (DIGITS + ["--max-step", "nan"], "--max-step"),
    (DIGITS + ["--set", "success_dice=nan"], "success_dice"),
    (DIGITS + ["--set", "success_dice=2"], "success_dice"),
    (DIGITS + ["--set", "smooth_weight=-1"], "smooth_weight"),
    (REGISTER + ["--set", "kmeans=100000"], "kmeans"),
    (VIDEO + ["--temporal-weight", "nan"], "--temporal-weight"),
]


@pytest.mark.parametrize("argv, text", BAD, ids=[" ".join(a) for a, _ in BAD])
def test_a_bad_value_is_refused_in_one_line(capsys, argv, text):
    if argv[0] != "--task":
        argv = STYLE + argv
    with pytest.raises(SystemExit) as exit_info:
        parse_args(argv + ["--device", "cpu"])
    assert exit_info.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and text in lines[0], lines


@pytest.mark.parametrize("argv, text", BAD, ids=[" ".join(a) for a, _ in BAD])
def test_a_bad_value_stops_before_the_task_is_built(monkeypatch, capsys, argv, text):
    """train.main with the task's building replaced by a failure: every bad value ends the run first."""
    def build(*_):
        raise AssertionError("the task was built")
    monkeypatch.setattr(train, "build", build)
    with pytest.raises(SystemExit):
        train.main((argv if argv[0] == "--task" else STYLE + argv) + ["--device", "cpu"])
    assert text in capsys.readouterr().err


def test_a_run_dir_that_is_a_file_is_refused(tmp_path, capsys):
    (tmp_path / "file").write_text("")
    with pytest.raises(SystemExit):
        parse_args(STYLE + ["--run-dir", str(tmp_path / "file"), "--device", "cpu"])
    assert "is a file" in capsys.readouterr().err


def test_good_values_pass():
    args, given = parse_args(STYLE + ["--lr", "1e-3", "--set", "gamma=0.9", "beta1=0.5", "tau=1", "--seed", "0",
                                      "--name", "my-run", "--device", "cpu"])
    assert (args.lr, args.gamma, args.beta1, args.tau, args.seed, args.name) == (1e-3, 0.9, 0.5, 1.0, 0, "my-run")
    assert given["gamma"] == 0.9 and "lr" in given
