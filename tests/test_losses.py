"""E4 to E8 and the style losses (E12 to E14) on hand-computed numbers."""
import math

import pytest
import torch
import torch.nn as nn

from critic import Critic, target_copy
from losses import (auxiliary_loss_style, critic_loss, gram_matrix, planner_loss, soft_bellman_target,
                    soft_update, style_loss, temperature_loss, total_variation)
from vgg import VGGFeatures


def test_soft_bellman_target_by_hand():
    reward, done = torch.tensor([1.0, 2.0]), torch.tensor([0.0, 1.0])
    next_q1, next_q2 = torch.tensor([5.0, 7.0]), torch.tensor([4.0, 9.0])
    next_log_prob = torch.tensor([-2.0, 3.0])
    y = soft_bellman_target(reward, done, next_q1, next_q2, next_log_prob, alpha=0.5, gamma=0.9)
    # first: 1 + 0.9 * (min(5, 4) - 0.5 * -2) = 1 + 0.9 * 5 = 5.5; second: done, so just r = 2
    assert torch.allclose(y, torch.tensor([5.5, 2.0]))
    assert not y.requires_grad


def test_soft_bellman_target_has_no_gradient():
    q = torch.tensor([1.0], requires_grad=True)
    y = soft_bellman_target(torch.zeros(1), torch.zeros(1), q, q, torch.zeros(1), 0.1, 0.99)
    assert not y.requires_grad


def test_critic_loss_by_hand():
    q1, q2, y = torch.tensor([1.0, 3.0]), torch.tensor([2.0, 2.0]), torch.tensor([2.0, 4.0])
    # q1: ((1-2)^2 + (3-4)^2) / 2 = 1; q2: (0 + 4) / 2 = 2
    assert math.isclose(critic_loss(q1, q2, y).item(), 3.0)


def test_planner_loss_by_hand():
    log_prob, q1, q2 = torch.tensor([-1.0, 2.0]), torch.tensor([3.0, 0.0]), torch.tensor([4.0, -1.0])
    # alpha 0.5: (0.5 * -1 - 3 + 0.5 * 2 - (-1)) / 2 = (-3.5 + 2) / 2 = -0.75
    assert math.isclose(planner_loss(log_prob, q1, q2, 0.5).item(), -0.75)
    kl = torch.tensor([2.0, 4.0])
    assert math.isclose(planner_loss(log_prob, q1, q2, 0.5, kl=kl, kl_weight=0.01).item(), -0.72, rel_tol=1e-6)


def test_temperature_loss_by_hand_and_direction():
    log_alpha = torch.tensor(0.2, requires_grad=True)
    log_prob = torch.tensor([-3.0, -1.0], requires_grad=True)
    loss = temperature_loss(log_alpha, log_prob, target_entropy=-4.0)
    # -(0.2 * ((-3 - 4) + (-1 - 4)) / 2) = -(0.2 * -6) = 1.2
    assert math.isclose(loss.item(), 1.2, rel_tol=1e-6)
    loss.backward()
    assert log_prob.grad is None  # log pi is detached in E7
    # entropy (-log pi = 2) is above the target (-4): alpha should fall, so dJ/dlog_alpha > 0
    assert log_alpha.grad.item() > 0


def test_soft_update_lerps_parameters_and_copies_buffers():
    source, target = nn.BatchNorm1d(2), nn.BatchNorm1d(2)
    with torch.no_grad():
        source.weight.fill_(1.0), target.weight.fill_(3.0)
        source.running_mean.fill_(7.0)
    soft_update(target, source, tau=0.25)
    assert torch.allclose(target.weight, torch.full((2,), 0.25 * 1 + 0.75 * 3))
    assert torch.allclose(target.running_mean, torch.full((2,), 7.0))


def test_target_copy_is_frozen_and_equal():
    critic = Critic(3, 16, (1, 4, 4))
    target = target_copy(critic)
    assert not target.training and all(not p.requires_grad for p in target.parameters())
    s, p = torch.randn(2, 3, 16, 16), torch.randn(2, 1, 4, 4)
    critic.eval()
    assert all(torch.equal(a, b) for a, b in zip(critic(s, p), target(s, p)))


def test_gram_by_hand():
    f = torch.tensor([[1.0, 2.0], [0.0, 3.0]]).view(1, 2, 1, 2)  # C=2, H=1, W=2
    # F F^T = [[1+4, 0+6], [6, 9]], divided by C H W = 4
    assert torch.allclose(gram_matrix(f), torch.tensor([[[5.0, 6.0], [6.0, 9.0]]]) / 4)


def test_total_variation_by_hand():
    x = torch.tensor([[0.0, 1.0], [3.0, 1.0]]).view(1, 1, 2, 2)
    # horizontal: |1-0| + |1-3| = 3; vertical: |3-0| + |1-1| = 3
    assert total_variation(x).item() == 6.0


def features(*tensors):
    return VGGFeatures(*tensors)


def test_style_loss_is_zero_on_the_style_and_positive_elsewhere():
    torch.manual_seed(0)
    f = features(*[torch.rand(2, 4, 3, 3) for _ in range(4)])
    grams = {n: gram_matrix(getattr(f, n))[:1] for n in f._fields}
    loss = style_loss(f, grams)
    assert loss.shape == (2,) and loss[0] == 0 and loss[1] > 0


def test_auxiliary_loss_weights():
    torch.manual_seed(0)
    f = features(*[torch.rand(1, 2, 2, 2) for _ in range(4)])
    content = features(None, torch.zeros(1, 2, 2, 2), None, None)
    grams = {n: torch.zeros(1, 2, 2) for n in f._fields}
    image = torch.tensor([[0.0, 1.0], [0.0, 1.0]]).view(1, 1, 2, 2)
    loss, parts = auxiliary_loss_style(image, f, content, grams, style_weight=10.0, tv_weight=0.5)
    expected = f.relu2_2.pow(2).mean() + 10 * sum(gram_matrix(t).pow(2).mean() for t in f) + 0.5 * 2.0
    assert torch.allclose(loss, expected)
    assert parts["tv"].item() == 2.0


def test_the_parts_report_e13_layer_by_layer():
    """By hand: one-value features 1, 2, 3, 4 against zero Grams give terms 1, 16, 81, 256; the content
    term MSE(1, 2) = 1 at relu2_2 against the original content x."""
    f = features(*[torch.full((1, 1, 1, 1), float(v)) for v in (1, 2, 3, 4)])
    grams = {n: torch.zeros(1, 1, 1) for n in f._fields}
    image, content = torch.zeros(1, 1, 2, 2), features(None, torch.full((1, 1, 1, 1), 1.0), None, None)
    loss, parts = auxiliary_loss_style(image, f, content, grams, 2.0, 0.0)
    assert loss.item() == pytest.approx(1 + 2 * (1 + 16 + 81 + 256))  # E14 with lambda 2
    assert parts["style"].item() == pytest.approx(1 + 16 + 81 + 256)   # E13
    assert [parts[f"style_{n}"].item() for n in f._fields] == [1, 16, 81, 256]
    assert parts["content"].item() == 1.0


def test_layer_weights_weigh_e13_in_the_loss_not_in_its_parts():
    """The same terms 1, 16, 81, 256 with w = (0.5, 1, 2, 0): L_ST = 0.5 + 16 + 162 = 178.5; the parts stay
    E13's unweighted terms, and style_loss (the reward's) weighs like J_Aux."""
    f = features(*[torch.full((1, 1, 1, 1), float(v)) for v in (1, 2, 3, 4)])
    grams = {n: torch.zeros(1, 1, 1) for n in f._fields}
    image, content = torch.zeros(1, 1, 2, 2), features(None, torch.full((1, 1, 1, 1), 2.0), None, None)
    loss, parts = auxiliary_loss_style(image, f, content, grams, 2.0, 0.0, layer_weights=(0.5, 1, 2, 0))
    assert loss.item() == pytest.approx(2 * 178.5) and parts["style"].item() == pytest.approx(178.5)
    assert [parts[f"style_{n}"].item() for n in f._fields] == [1, 16, 81, 256]
    assert style_loss(f, grams, (0.5, 1, 2, 0)).item() == pytest.approx(178.5)


def test_kl_to_standard_normal_matches_torch():
    from torch.distributions import Normal, kl_divergence

    from planner import PlanDistribution

    mean, std = torch.tensor([[0.0, 1.0], [2.0, -1.0]]), torch.tensor([[1.0, 0.5], [2.0, 1.0]])
    expected = kl_divergence(Normal(mean, std), Normal(0.0, 1.0)).sum(1)
    assert torch.allclose(PlanDistribution(mean, std).kl_to_standard_normal(), expected)
    # by hand, first sample: 0 (standard normal) + 1/2 (0.25 + 1 - 1 - log 0.25) = 0.125 + 0.6931
    assert PlanDistribution(mean, std).kl_to_standard_normal()[0].item() == pytest.approx(0.125 + math.log(2))
