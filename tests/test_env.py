"""StyleEnv: E10 transition, E11 reward, extras and buffer layout."""
import torch

from env import StyleEnv
from vgg import denormalize, normalize
from losses import style_loss
from vgg import load_vgg16


def make_env(reward_scale=1e6):
    torch.manual_seed(0)
    return StyleEnv(load_vgg16("random"), torch.rand(3, 32, 32), reward_scale=reward_scale)


def test_reset_is_the_normalised_content():
    env = make_env()
    content = torch.rand(2, 3, 32, 32)
    state = env.reset(content)
    assert torch.allclose(denormalize(state), content, atol=1e-6)
    assert torch.equal(env.extras()["content"], state)


def test_step_state_is_the_action_clamped_to_valid_pixels():
    env = make_env()
    env.reset(torch.rand(2, 3, 32, 32))
    action = normalize(torch.rand(2, 3, 32, 32))
    action[0, 0, 0, 0] = 100.0  # far outside the image range: clamped to white
    state, reward, done = env.step(action)
    assert torch.allclose(state[1], action[1], atol=1e-5)
    assert torch.isclose(denormalize(state)[0, 0, 0, 0], torch.tensor(1.0))
    assert torch.equal(done, torch.zeros(2))


def test_reward_is_minus_the_reward_scale_times_the_style_loss():
    env = make_env(reward_scale=3.0)
    env.reset(torch.rand(2, 3, 32, 32))
    state, reward, _ = env.step(normalize(torch.rand(2, 3, 32, 32)))
    by_hand = -3.0 * style_loss(env.vgg(state), env.style_grams)
    assert reward.shape == (2,) and torch.allclose(reward, by_hand)
    assert torch.all(reward < 0)


def test_the_style_image_itself_has_zero_style_loss():
    torch.manual_seed(0)
    style = torch.rand(3, 32, 32)
    env = StyleEnv(load_vgg16("random"), style)
    env.reset(torch.rand(1, 3, 32, 32))
    _, reward, _ = env.step(normalize(style[None]))
    assert abs(reward.item()) < 1e-3 * abs(env.step(normalize(torch.rand(1, 3, 32, 32)))[1].item())


def test_auxiliary_loss_uses_the_original_content():
    env = make_env()
    content = normalize(torch.rand(2, 3, 32, 32))
    state = normalize(torch.rand(2, 3, 32, 32))  # the paper's transition (E10): a_t alone is scored
    loss_same, parts_same = env.auxiliary_loss(content, {"content": content, "state": state})
    loss_other, parts_other = env.auxiliary_loss(content, {"content": normalize(torch.rand(2, 3, 32, 32)), "state": state})
    assert parts_same["content"].item() == 0 and parts_other["content"].item() > 0


def test_buffer_columns_cover_the_transition():
    env = make_env()
    fields = env.buffer_columns(32, (1, 8, 8))
    assert set(fields) == {"state", "plan", "reward", "next_state", "done", "content"}
    assert fields["state"].dtype == torch.uint8 and fields["plan"].shape == (1, 8, 8)
