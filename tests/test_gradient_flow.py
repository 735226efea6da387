"""The planner's RL gradient (E6) must reach psi through Q: true with rsample(), false with the
authors' sample(). Also E9: J_Aux reaches both planner and actor."""
import torch

from actor import MapActor
from critic import Critic
from losses import planner_loss
from planner import MapPlanner


def planner_grad_norm(use_rsample: bool) -> float:
    torch.manual_seed(0)
    planner, critic = MapPlanner(), Critic(3, 32, (1, 8, 8))
    state = torch.randn(4, 3, 32, 32)
    dist, _ = planner(state)
    plan = dist.rsample() if use_rsample else dist.sample()
    # alpha = 0 isolates the -min Q term of E6: the only path into psi is through the plan.
    loss = planner_loss(dist.log_prob(plan), *critic(state, plan), alpha=0.0)
    loss.backward()
    grads = [p.grad for p in planner.parameters() if p.grad is not None]
    return float(sum(g.norm() ** 2 for g in grads) ** 0.5) if grads else 0.0


def test_q_gradient_reaches_planner_with_rsample():
    assert planner_grad_norm(use_rsample=True) > 1e-6


def test_q_gradient_does_not_reach_planner_with_sample():
    assert planner_grad_norm(use_rsample=False) == 0.0


def test_auxiliary_gradient_reaches_planner_mean_and_std_and_actor():
    torch.manual_seed(0)
    planner, actor = MapPlanner(), MapActor()
    dist, features = planner(torch.randn(2, 3, 32, 32))
    action = actor(dist.rsample(), features)
    action.square().mean().backward()
    # the log-variance half of the residual block's output only influences the action through sigma
    assert planner.res1.conv2.conv2d.weight.grad[32:].abs().sum() > 0
    assert planner.conv1.conv2d.weight.grad.abs().sum() > 0
    assert all(p.grad is not None for n, p in actor.named_parameters() if not n.startswith("in1_d"))


def test_vector_plan_q_gradient_needs_rsample():
    from planner import VectorPlanner

    norms = []
    for use_rsample in (True, False):
        torch.manual_seed(0)
        planner, critic = VectorPlanner(3, 32, plan_dim=8, width=8), Critic(3, 32, (8,))
        state = torch.randn(4, 3, 32, 32)
        dist, _ = planner(state)
        plan = dist.rsample() if use_rsample else dist.sample()
        planner_loss(dist.log_prob(plan), *critic(state, plan), alpha=0.0).backward()
        grads = [p.grad.norm() for p in planner.parameters() if p.grad is not None]
        norms.append(float(sum(grads)) if grads else 0.0)
    assert norms[0] > 1e-6 and norms[1] == 0.0
