"""Adaptive stopping (O3, O4, ours): the rule on hand-built predictions, the threshold rule, the table, the
reward head's isolation from the rest of the update, and evaluate.py --stop end to end with its bad flags."""
import contextlib
import copy
import csv

import pytest
import torch

import train
from conftest import TINY as TINY_STYLE
from conftest import one_line_error, run_script
from critic import RewardHead
from losses import reward_head_loss
from extras import stopping
from extras.stopping import adaptive_stop, agreement, stopping_table, threshold_stop
from test_digits import TINY as TINY_DIGITS
from test_register import TINY as TINY_REGISTER
from test_update import SIZE, Replayed, agent, batch, snapshot


class Counting(torch.nn.Module):
    """A stand-in for the planner and its environment, whose states are known: s_t is the constant image t."""

    def __init__(self) -> None:
        super().__init__()
        self.state = None

    def forward(self, state):  # as planner
        return torch.distributions.Normal(state.mean((1, 2, 3)), 1.0), []

    def reset(self, source):
        self.state = torch.zeros_like(source)
        return self.state

    def extras(self):
        return {}

    def step(self, action):
        self.state = self.state + 1  # s_t+1 = s_t + 1
        return self.state, None, None


class Quality(torch.nn.Module):
    """A reward head set by hand: r-hat(s) = -(t - peak)^2 on the state s_t, the best state is s_peak."""

    def __init__(self, peak: float) -> None:
        super().__init__()
        self.peak = peak

    def forward(self, state):
        return -(state.mean((1, 2, 3)) - self.peak) ** 2


class Echo(torch.nn.Module):
    def forward(self, plan, features):  # the actor: the environment ignores its action
        return plan


@pytest.mark.parametrize("peak, expected", [(2.0, 2), (0.0, 1), (3.0, 3), (9.0, 5)])
def test_the_rule_end_to_end_scores_each_state_with_its_own_prediction(peak, expected):
    """evaluate.rollout with a reward head set by hand: predicted[t] must be r-hat of s_t+1, the state the step
    from s_t reached (an off-by-one to s_t would stop one step late), and O4 stops at s_t for the first t >= 1
    whose next state is no better: at the best state itself (never before step 1, never past 5)."""
    from evaluate import rollout

    agent, predicted = Counting(), []
    states = rollout(agent, Echo(), agent, torch.zeros(2, 3, 4, 4), 5, reward_head=Quality(peak),
                     predicted=predicted)
    assert [s.mean().item() for s in states] == [0, 1, 2, 3, 4, 5]
    assert torch.stack(predicted)[:, 0].tolist() == [-(t + 1 - peak) ** 2 for t in range(5)]
    assert adaptive_stop(torch.stack(predicted), 5).tolist() == [expected, expected]


def test_adaptive_stop_at_the_first_step_not_expected_to_gain():
    predicted = torch.tensor([[1.0, 1.0, 1.0, 9.0],    # r-hat(s_1), the step from s_0
                              [2.0, 0.5, 2.0, 1.0],    # r-hat(s_2), the step from s_1
                              [3.0, 0.7, 3.0, 1.0],
                              [2.5, 0.9, 4.0, 1.0],
                              [4.0, 1.1, 5.0, 1.0]])   # (K = 5, N = 4)
    # image 0 gains until t = 3 (2.5 <= 3); image 1 not at t = 1 (0.5 <= 1); image 2 always gains; image 3's
    # first prediction is the largest: it still takes step 1 (never stop before step 1)
    assert adaptive_stop(predicted, 5).tolist() == [3, 1, 5, 1]
    assert adaptive_stop(predicted, 2).tolist() == [2, 1, 2, 1]            # never past max_steps
    assert adaptive_stop(predicted, 1).tolist() == [1, 1, 1, 1]
    tie = torch.ones(4, 1)
    assert adaptive_stop(tie, 4).tolist() == [1]                           # no gain expected: stop
    with pytest.raises(ValueError):
        adaptive_stop(predicted, 6)                                        # no prediction for step 6


def test_threshold_stop_and_its_bounds():
    values = torch.tensor([[0.1, 0.9], [0.5, 0.8], [0.2, 0.7], [0.25, 0.6]])  # a loss at steps 0 ... 3
    assert threshold_stop(values, 0.3, 3).tolist() == [2, 3]               # step 0's 0.1 does not count
    assert threshold_stop(values, 10.0, 3).tolist() == [1, 1]
    assert threshold_stop(values, 0.0, 2).tolist() == [2, 2]
    with pytest.raises(ValueError):
        threshold_stop(values, -1.0, 3)


def test_stopping_table_on_hand_values():
    values = torch.tensor([[0.0, 0.0], [1.0, 3.0], [2.0, 1.0]])            # metric (higher is better), K = 2, N = 2
    table, images = stopping_table(values, torch.tensor([2, 2]), True, "Dice", "rule")
    rows = {r["rule"]: r for r in table}
    assert rows["rule"]["Dice"] == pytest.approx(1.5) and rows["rule"]["steps"] == 2
    assert rows["best fixed k = 1"]["Dice"] == pytest.approx(2.0)          # k = 1: (1 + 3) / 2, k = 2: 1.5
    assert rows["oracle (each image's best k)"]["Dice"] == pytest.approx(2.5)  # image 0 at k = 2, image 1 at k = 1
    assert rows["oracle (each image's best k)"]["steps"] == pytest.approx(1.5)
    assert rows["always k = 2"]["Dice"] == pytest.approx(1.5) and rows["identity (step 0)"]["Dice"] == 0
    assert [r["oracle step"] for r in images] == [2, 1]
    table, _ = stopping_table(-values, torch.tensor([1, 1]), False, "loss", "rule")  # lower is better: the same picks
    assert {r["rule"] for r in table} >= {"best fixed k = 1"}
    # agreement: the head expects a gain at step 2 for image 0 (right) and for image 1 (wrong)
    assert agreement(torch.tensor([[0.0, 0.0], [1.0, 1.0]]), values, True) == pytest.approx(0.5)


def test_the_reward_head_learns_from_its_own_loss_only():
    """One update with and without the reward head from the same start: planner, actor and critics end
    bitwise the same, their gradients too, and only the head's own loss moved the head."""
    results = []
    for with_head in (False, True):
        args, m, log_alpha, target_entropy = agent(planner_every=1)
        if with_head:
            with torch.random.fork_rng(devices=[]):                      # as tasks.build: no draw of the others'
                head = RewardHead(6, SIZE)
            m.update(reward_head=head, reward_head_opt=torch.optim.Adam(head.parameters(), 1e-3))
            before = snapshot(head)
        out = train.update(args, {"env": Replayed()}, Replayed(), m, log_alpha, target_entropy, 2, None, False)
        results.append({k: snapshot(m[k]) for k in ("planner", "actor", "critic")} |
                       {f"{k} grad": [p.grad.clone() for p in m[k].parameters() if p.grad is not None]
                        for k in ("planner", "actor", "critic")})
    without, with_ = results
    for k in ("planner", "actor", "critic"):
        assert all(torch.equal(v, with_[k][n]) for n, v in without[k].items()), k
        assert len(without[f"{k} grad"]) and all(torch.equal(a, b) for a, b in zip(without[f"{k} grad"], with_[f"{k} grad"]))
    assert "head_loss" in out and any(not torch.equal(v, head.state_dict()[n]) for n, v in before.items())
    # the head's gradient is that of O3 alone
    head.zero_grad()
    b = batch()
    reward_head_loss(head(b["next_state"]), b["reward"]).backward()
    assert all(p.grad is not None for p in head.parameters())
    assert out["head_loss"] > 0


def test_the_reward_head_learns_the_score_of_the_state_reached():
    """O3 as extras.stopping.update_reward_head runs it: r-hat(s_t+1) regressed on r_t, the state the stored step reached
    (not s_t, which a step has not yet changed, and no plan): one SGD step equals one by hand."""
    torch.manual_seed(0)
    head = RewardHead(6, SIZE)
    twin, b = copy.deepcopy(head), batch()
    stopping.update_reward_head(b, {"reward_head": head, "reward_head_opt": torch.optim.SGD(head.parameters(), 0.1)},
                             contextlib.nullcontext)
    reward_head_loss(twin(b["next_state"]), b["reward"]).backward()
    for p, q in zip(head.parameters(), twin.parameters()):
        torch.testing.assert_close(p, q - 0.1 * q.grad)


def stops(folder):
    with open(folder / "evaluate" / "stop_per_image.csv", newline="") as f:
        return [int(r["stop"]) for r in csv.DictReader(f)]


@pytest.mark.parametrize("name, tiny", [("digits", TINY_DIGITS), ("register", TINY_REGISTER)])
def test_stop_adaptive_end_to_end(tmp_path, name, tiny):
    result = run_script("train.py", *tiny, "--run-dir", str(tmp_path), "--name", name)
    assert result.returncode == 0, result.stderr[-2000:]
    result = run_script("evaluate.py", "--checkpoint", str(tmp_path / name), "--stop", "adaptive", "--max-steps", "3",
                        "--num-images", "12")
    assert result.returncode == 0, result.stderr[-2000:]
    for row in ("adaptive (reward head, O4)", "best fixed k =", "oracle (each image's best k)", "always k = 3"):
        assert row in result.stdout, row
    assert len(stops(tmp_path / name)) == 12 and set(stops(tmp_path / name)) <= {1, 2, 3}
    assert (tmp_path / name / "evaluate" / "stop_hist.png").is_file() and (tmp_path / name / "evaluate" / "stop_eval.csv").is_file()
    # registration's head learns the k-means Dice of its reward, so its agreement with that is reported too
    assert ("of the reward's k-means Dice, which it learns" in result.stdout) == (name == "register")


def test_stop_style_loss_end_to_end_and_bad_flags(tmp_path):
    run = tmp_path / "style"
    result = run_script("train.py", *TINY_STYLE, "--run-dir", str(tmp_path), "--name", "style")
    assert result.returncode == 0, result.stderr[-2000:]
    for threshold, expected in (("1e9", {1}), ("0", {2})):                 # every loss is below 1e9; none below 0
        result = run_script("evaluate.py", "--checkpoint", str(run), "--stop", "style-loss", threshold, "--max-steps", "2")
        assert result.returncode == 0, result.stderr[-2000:]
        assert set(stops(run)) == expected and f"style loss < {float(threshold):g}" in result.stdout
    for argv, text in ((["--stop", "adaptive", "--steps", "1", "2"], "give --max-steps, not --steps"),
                       (["--stop", "style-loss", "-1"], "must not be negative"),
                       (["--stop", "style-loss", "much"], "must be a number"),
                       (["--stop", "sometimes"], "give 'adaptive' or 'style-loss X'"),
                       (["--stop", "adaptive", "now"], "give 'adaptive' or 'style-loss X'"),
                       (["--max-steps", "3"], "--max-steps goes with --stop"),
                       (["--stop", "adaptive", "--max-steps", "-2"], "--max-steps must be positive"),
                       (["--stop", "adaptive", "--image", "x.png"], "--stop works on the held-out images")):
        one_line_error(run_script("evaluate.py", "--checkpoint", str(run), *argv), text)
    # another --image-size: the reward head (whose layers depend on the size) no longer fits; only --stop
    # adaptive needs it (no other evaluation stops with "its networks do not fit")
    result = run_script("evaluate.py", "--checkpoint", str(run), "--image-size", "64", "--steps", "1")
    assert result.returncode == 0 and "at 64x64" in result.stdout, result.stderr[-2000:]
    one_line_error(run_script("evaluate.py", "--checkpoint", str(run), "--image-size", "64", "--stop", "adaptive"),
                   "its reward head does not fit --image-size 64 (trained at 32)")
    state = torch.load(run / "checkpoint.pt", weights_only=False)
    del state["reward_head"], state["reward_head_opt"]                     # as written before adaptive stopping
    torch.save(state, tmp_path / "old.pt")
    one_line_error(run_script("evaluate.py", "--checkpoint", str(tmp_path / "old.pt"), "--stop", "adaptive"),
                   "no reward head in it")
    result = run_script("train.py", "--resume", str(tmp_path / "old.pt"), "--total-steps", "8")
    assert result.returncode == 0 and "the reward head starts untrained" in result.stdout, result.stderr[-2000:]


def test_stop_style_loss_is_for_style_tasks(tmp_path):
    result = run_script("train.py", *TINY_DIGITS, "--run-dir", str(tmp_path), "--name", "d")
    assert result.returncode == 0, result.stderr[-2000:]
    one_line_error(run_script("evaluate.py", "--checkpoint", str(tmp_path / "d"), "--stop", "style-loss", "1e-4"),
                   "--stop style-loss is for --task style or video")


def test_a_checkpoint_with_the_older_reward_head_resumes_with_a_fresh_one(tmp_path, capsys):
    """Checkpoints of an older version hold r-hat(s_t, p_t), of other shapes: --resume starts the state's head
    afresh with a message instead of failing, and keeps everything else."""
    from extras import runlog
    from train import Args

    torch.manual_seed(0)
    older, planner = torch.nn.Linear(3, 2), torch.nn.Linear(2, 2)
    saved = {"planner": planner, "reward_head": older, "reward_head_opt": torch.optim.Adam(older.parameters())}
    path = str(tmp_path / "checkpoint.pt")
    runlog.save_checkpoint(path, Args(), saved, torch.tensor(0.0), 7, 1, 1, [runlog.rank_state({}, torch.device("cpu"))])
    head, fresh_planner = RewardHead(6, SIZE), torch.nn.Linear(2, 2)
    before = snapshot(head)
    modules = {"planner": fresh_planner, "reward_head": head, "reward_head_opt": torch.optim.Adam(head.parameters())}
    assert runlog.load_checkpoint(path, modules, torch.zeros(()), {}) == (7, 1, 1)
    assert "the reward head r-hat(s) starts untrained" in capsys.readouterr().out
    assert all(torch.equal(v, head.state_dict()[k]) for k, v in before.items())
    assert torch.equal(fresh_planner.weight, planner.weight)
