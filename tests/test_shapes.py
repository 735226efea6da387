"""Shapes of planner, actor, critic; the plan distribution; the authors' released-weights format."""
import pytest
import torch
from torch.distributions import Normal

from actor import MapActor
from critic import Critic
from extras.evaluation import load_released_weights
from data import DataError
from planner import PlanDistribution, MapPlanner, squash_log_variance

PLANNER_SHAPES = {
    "conv1.conv2d.weight": (16, 3, 9, 9), "conv1.conv2d.bias": (16,), "in1_e.weight": (16,), "in1_e.bias": (16,),
    "conv2.conv2d.weight": (32, 16, 3, 3), "conv2.conv2d.bias": (32,), "in2_e.weight": (32,), "in2_e.bias": (32,),
    "conv3.conv2d.weight": (64, 32, 3, 3), "conv3.conv2d.bias": (64,), "in3_e.weight": (64,), "in3_e.bias": (64,),
    "res1.conv1.conv2d.weight": (64, 64, 3, 3), "res1.conv1.conv2d.bias": (64,),
    "res1.in1.weight": (64,), "res1.in1.bias": (64,),
    "res1.conv2.conv2d.weight": (64, 64, 3, 3), "res1.conv2.conv2d.bias": (64,),
    "res1.in2.weight": (64,), "res1.in2.bias": (64,),
}
ACTOR_SHAPES = {
    "deconv3.conv2d.weight": (64, 65, 3, 3), "deconv3.conv2d.bias": (64,), "in3_d.weight": (64,), "in3_d.bias": (64,),
    "deconv2.conv2d.weight": (32, 96, 3, 3), "deconv2.conv2d.bias": (32,), "in2_d.weight": (32,), "in2_d.bias": (32,),
    "deconv1.conv2d.weight": (3, 48, 9, 9), "deconv1.conv2d.bias": (3,), "in1_d.weight": (3,), "in1_d.bias": (3,),
}


@pytest.mark.parametrize("size", [32, 64])
def test_style_networks_shapes(size):
    planner, actor, critic = MapPlanner(), MapActor(), Critic(3, size, (1, size // 4, size // 4))
    state = torch.randn(3, 3, size, size)
    dist, (f1, f2, f3) = planner(state)
    plan = dist.rsample()
    assert plan.shape == (3, 1, size // 4, size // 4) == dist.mean.shape
    assert f1.shape == (3, 16, size, size) and f2.shape == (3, 32, size // 2, size // 2)
    assert f3.shape == (3, 64, size // 4, size // 4)
    assert dist.log_prob(plan).shape == (3,)
    assert actor(plan, [f1, f2, f3]).shape == (3, 3, size, size)
    q1, q2 = critic(state, plan)
    assert q1.shape == q2.shape == (3,)


def test_parameter_count_matches_paper_scale():
    n = sum(p.numel() for m in (MapPlanner(), MapActor()) for p in m.parameters())
    assert 170_000 < n < 185_000  # the paper's networks: about 178 k


@pytest.mark.parametrize("batch", [1, 5])
def test_critic_scalar_q_for_vector_plan_any_batch(batch):
    critic = Critic(6, 64, (256,))
    q1, q2 = critic(torch.randn(batch, 6, 64, 64), torch.randn(batch, 256))
    assert q1.shape == q2.shape == (batch,)


def test_squash_log_variance_box():
    u = torch.tensor([-1e6, -1.0, 0.0, 1.0, 1e6])
    v = squash_log_variance(u)
    assert v[0] == -10 and v[-1] == 2 and torch.isclose(v[2], torch.tensor(-4.0))
    assert torch.all(v[1:] >= v[:-1])


@pytest.mark.parametrize("shape", [(4, 7), (4, 1, 3, 3)])
def test_plan_log_prob_is_sum_of_normal_log_densities(shape):
    torch.manual_seed(0)
    mean, std = torch.randn(shape), torch.rand(shape) + 0.1
    dist = PlanDistribution(mean, std)
    plan = dist.rsample()
    by_hand = (-((plan - mean) ** 2) / (2 * std ** 2) - std.log() - 0.5 * torch.log(torch.tensor(2 * torch.pi)))
    assert torch.allclose(dist.log_prob(plan), by_hand.flatten(1).sum(1), atol=1e-5)
    assert torch.allclose(dist.entropy(), Normal(mean, std).entropy().flatten(1).sum(1))


def released_state(shapes):
    torch.manual_seed(0)
    return {k: torch.randn(v) for k, v in shapes.items()}


def test_our_names_and_shapes_are_the_authors():
    assert {k: tuple(v.shape) for k, v in MapPlanner().state_dict().items()} == PLANNER_SHAPES
    assert {k: tuple(v.shape) for k, v in MapActor().state_dict().items()} == ACTOR_SHAPES


def test_released_weights_load(tmp_path):
    for cls, shapes, wrap in [(MapPlanner, PLANNER_SHAPES, lambda s: s),
                              (MapActor, ACTOR_SHAPES, lambda s: {f"module.{k}": v for k, v in s.items()})]:
        state = released_state(shapes)
        path = tmp_path / f"{cls.__name__}.pth"
        torch.save(wrap(state), path)
        module = cls()
        load_released_weights(module, str(path))
        assert all(torch.equal(module.state_dict()[k], v) for k, v in state.items())


def test_released_weights_wrong_file_is_a_clear_error(tmp_path):
    path = tmp_path / "actor.pth"
    torch.save(released_state(ACTOR_SHAPES), path)
    with pytest.raises(DataError, match="not a MapPlanner file"):
        load_released_weights(MapPlanner(), str(path))
    bad = released_state(PLANNER_SHAPES)
    bad["conv1.conv2d.weight"] = torch.zeros(16, 3, 3, 3)
    torch.save(bad, path)
    with pytest.raises(DataError, match="has shape"):
        load_released_weights(MapPlanner(), str(path))


@pytest.mark.parametrize("size,width,plan_dim", [(64, 8, 16), (128, 16, 32)])
def test_vector_plan_networks_shapes(size, width, plan_dim):
    from actor import VectorActor
    from planner import VectorPlanner

    planner = VectorPlanner(6, size, plan_dim, width)
    actor, critic = VectorActor(planner.widths, plan_dim), Critic(6, size, planner.plan_shape(size))
    state = torch.randn(3, 6, size, size)
    dist, features = planner(state)
    plan = dist.rsample()
    assert plan.shape == dist.mean.shape == (3, plan_dim) and dist.log_prob(plan).shape == (3,)
    assert [f.shape[-1] for f in features][-1] == 4 and features[0].shape[-1] == size // 2
    action = actor(plan, features)
    assert action.shape == (3, 3, size, size) and action.abs().max() <= 1
    assert critic(state, plan)[0].shape == (3,)


def test_vector_planner_refuses_odd_sizes():
    from planner import VectorPlanner

    with pytest.raises(ValueError, match="power of two"):
        VectorPlanner(3, 96)
