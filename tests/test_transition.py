"""The style transition: the paper's E10 (s_t+1 = a_t) and ours, O1 (s_t+1 = s_t + a_t from an actor whose last
layer starts at zero), which the --task style and video presets use; and --amp auto."""
import pytest
import torch

from actor import MapActor, VideoActor
from config import Args, resolve_amp
from extras.cli import parse_args
from env import StyleEnv
from vgg import denormalize, normalize
from evaluate import rollout
from planner import MapPlanner
from tasks import PRESETS, networks
from vgg import load_vgg16


def make_env(residual: bool) -> StyleEnv:
    torch.manual_seed(0)
    return StyleEnv(load_vgg16("random"), torch.rand(3, 32, 32), residual=residual)


@pytest.mark.parametrize("actor_class", [MapActor, VideoActor])
def test_a_zero_initialised_actor_acts_zero_whatever_the_plan(actor_class):
    torch.manual_seed(0)
    planner, actor = MapPlanner(), actor_class(zero_init=True)
    dist, features = planner(torch.randn(2, 3, 32, 32))
    assert torch.equal(actor(dist.rsample(), features), torch.zeros(2, 3, 32, 32))
    assert actor.deconv3.conv2d.weight.abs().sum() > 0  # only the last layer starts at zero


def test_residual_step_adds_the_action_to_the_state_and_keeps_valid_pixels():
    env = make_env(residual=True)
    content = torch.rand(2, 3, 32, 32) * 0.5 + 0.25
    state = env.reset(content)
    action = torch.full((2, 3, 32, 32), 0.1)
    action[0, 0, 0, 0] = 100.0  # far outside the image range: clamped to white
    next_state, _, _ = env.step(action)
    assert torch.allclose(next_state[1], state[1] + 0.1, atol=1e-5)
    assert torch.isclose(denormalize(next_state)[0, 0, 0, 0], torch.tensor(1.0))
    again, _, _ = env.step(action)  # from the new state, not from s_0
    assert torch.allclose(again[1], state[1] + 0.2, atol=1e-5)


def test_paper_step_ignores_the_state():
    env = make_env(residual=False)
    env.reset(torch.rand(2, 3, 32, 32))
    action = normalize(torch.rand(2, 3, 32, 32))
    assert torch.allclose(env.step(action)[0], action, atol=1e-5)
    assert torch.allclose(env.step(action)[0], action, atol=1e-5)


def test_residual_auxiliary_loss_scores_the_state_plus_the_action():
    env = make_env(residual=True)
    content = normalize(torch.rand(2, 3, 32, 32))
    batch = {"content": content, "state": content}
    # a zero action leaves the content: no content loss; the paper's transition would score the zero image
    _, parts = env.auxiliary_loss(torch.zeros_like(content), batch)
    assert parts["content"].item() == 0
    _, paper_parts = make_env(residual=False).auxiliary_loss(torch.zeros_like(content), batch)
    assert paper_parts["content"].item() > 0
    # and its style terms are the ones of s + a, split by layer
    shifted = torch.rand(2, 3, 32, 32)
    _, parts = env.auxiliary_loss(shifted, batch)
    _, by_hand = make_env(residual=False).auxiliary_loss(content + shifted, batch)
    assert torch.allclose(parts["style"], by_hand["style"])
    assert torch.allclose(parts["style"], sum(parts[f"style_{n}"] for n in ("relu1_2", "relu2_2", "relu3_3", "relu4_3")))


def test_the_style_presets_start_at_the_identity_and_the_paper_flag_restores_e10():
    args, _ = parse_args(["--task", "style", "--set", "vgg=random", "--image-size", "32"])
    assert args.transition == "residual"
    planner, actor = networks(args)
    env = StyleEnv(load_vgg16("random"), torch.rand(3, 32, 32), residual=True)
    content = torch.rand(2, 3, 32, 32)
    states = rollout(planner, actor, env, content, 3)
    for state in states[1:]:  # an untrained agent keeps the photo at every step
        assert torch.allclose(denormalize(state), content, atol=1e-5)
    assert parse_args(["--task", "video"])[0].transition == "residual"
    assert parse_args(["--task", "style", "--transition", "paper"])[0].transition == "paper"
    assert Args().transition == "paper"  # what the released weights and older checkpoints are run with
    style = parse_args(["--task", "style", "--device", "cpu"])[0]  # difference 48: decay, reward scale, temperature
    assert (style.lr_decay, style.reward_scale, style.init_log_alpha) == ("linear", 1e3, -10.0) and Args().lr_decay == "off"
    assert PRESETS["style"]["all"]["reward_scale"] == 1e6 and "reward_scale" not in PRESETS["style"]["cuda"]  # the paper's c
    assert networks(Args(task="style"))[1].deconv1.conv2d.weight.abs().sum() > 0


def test_amp_auto_follows_the_hardware_and_on_off_are_obeyed():
    assert resolve_amp("on", "cpu")[0] is True and resolve_amp("off", "cpu")[0] is False
    assert resolve_amp(True, "cpu")[0] is True and resolve_amp(False, "cpu")[0] is False  # older checkpoints
    on, why = resolve_amp("auto", "cpu")
    assert on == torch.ops.mkldnn._is_mkldnn_bf16_supported() and why.startswith("auto")
    assert Args().amp == "auto"
    chosen = {task: parse_args(["--task", task, "--device", "cpu"])[0].amp for task in PRESETS}
    assert chosen == {"style": "auto", "photo": "auto", "video": "off", "inpaint": "off", "digits": "off",
                      "register": "off"}  # the CPU presets as measured on and off (docs/speed-and-faults.md)


def test_a_step_size_bounds_every_pixel_of_a_step():
    torch.manual_seed(0)
    env = StyleEnv(load_vgg16("random"), torch.rand(3, 32, 32), residual=True, step_size=0.25)
    state = env.reset(torch.rand(2, 3, 32, 32) * 0.5 + 0.25)
    action = torch.randn(2, 3, 32, 32) * 100
    next_state, _, _ = env.step(action)
    change = (next_state - state).abs()
    assert change.max() <= 0.25 + 1e-6 and change.max() > 0.24  # large actions move by eps, never more
    assert torch.allclose(env.next_image(state, torch.zeros_like(state)), state)  # tanh(0) = 0: still the identity
    small = torch.full_like(state, 1e-3)
    assert torch.allclose(env.next_image(state, small), state + 0.25 * torch.tanh(small))  # O2


def test_step_size_and_the_settings_are_checked_in_one_line():
    from conftest import one_line_error, run_script

    one_line_error(run_script("train.py", "--task", "style", "--transition", "paper", "--step-size", "0.5"),
                   "--step-size 0.5")
    one_line_error(run_script("train.py", "--task", "style", "--set", "style_size=8"), "style_size=8")
    for weights in ("1,1,1", "1,x,1,1", "1,-1,1,1", "0,0,0,0"):  # E13's four layer weights
        one_line_error(run_script("train.py", "--task", "style", "--set", f"style_layers={weights}"), "style_layers")
    one_line_error(run_script("train.py", "--task", "style", "--set", "no_such=1"), "--set no_such=1")
    one_line_error(run_script("train.py", "--task", "style", "--set", "lr=1"), "has a flag of its own, --lr")
    one_line_error(run_script("train.py", "--task", "style", "--set", "gamma=high"), "gamma takes float")
    one_line_error(run_script("train.py", "--task", "inpaint", "--transition", "residual"), "--transition is for")
