"""One update of Algorithm 1 (A1.11, A1.12) on tiny networks and a hand-built batch, the storing of
transitions (A1.8, A1.15) in a real training loop, and inference with the plan mean."""
import functools

import torch

import train
from actor import VectorActor
from buffer import Column
from critic import Critic
from env import PhotoEnv
from evaluate import rollout
from planner import VectorPlanner
from extras.runlog import read_checkpoint
from train import Args

SIZE, PLAN = 16, 8


def agent(**flags):
    """A tiny photo-translation agent (batch-norm planner and actor, vector plan) and its optimisers."""
    torch.manual_seed(0)
    args = Args(task="photo", image_size=SIZE, plan_dim=PLAN, width=8, lr=1e-3, critic_lr=1e-3, alpha_lr=1e-2, **flags)
    planner = VectorPlanner(6, SIZE, PLAN, 8)
    task = dict(planner=planner, actor=VectorActor(planner.widths, PLAN, tanh=True), critic=Critic(6, SIZE, (PLAN,)),
                plan_shape=(PLAN,))
    modules, log_alpha, target_entropy = train.initialise(args, task, torch.device("cpu"))
    return args, modules, log_alpha, target_entropy


def batch(n=6):
    g = torch.Generator().manual_seed(1)
    image = lambda: torch.rand(n, 6, SIZE, SIZE, generator=g) * 2 - 1  # noqa: E731
    return dict(state=image(), plan=torch.randn(n, PLAN, generator=g), reward=torch.rand(n, generator=g),
                next_state=image(), done=torch.tensor([0.0, 1.0, 0.0, 0.0, 1.0, 0.0])[:n], target=image()[:, :3])


def update_rl(args, modules, log_alpha, target_entropy, updates):
    amp = functools.partial(train.autocast, args, torch.device("cpu"))
    return train.update_rl(args, batch(), modules, log_alpha, target_entropy, updates, amp)


def snapshot(module):
    return {k: v.clone() for k, v in module.state_dict().items()}


def moved(before, module):
    return any(not torch.equal(v, module.state_dict()[k]) for k, v in before.items())


def test_the_planner_step_follows_q_through_the_reparameterised_plan():
    # alpha = e^-60: E6 is -min Q alone, which reaches psi only through p~ = m + sigma * eps (rsample, E2)
    args, m, log_alpha, target_entropy = agent(init_log_alpha=-60.0, kl_weight=0.0, planner_every=1)
    before = snapshot(m["planner"])
    update_rl(args, m, log_alpha, target_entropy, updates=1)
    grad = torch.cat([p.grad.flatten() for p in m["planner"].parameters() if p.grad is not None])
    assert grad.norm() > 1e-3                    # sample() instead of rsample() leaves about alpha * 1e1 = 1e-25
    assert moved(before, m["planner"])


def test_the_critic_step_leaves_the_planner_alone_and_moves_the_target_by_e8():
    args, m, log_alpha, target_entropy = agent(planner_every=4, tau=0.05)
    planner, alpha = snapshot(m["planner"]), log_alpha.item()
    for updates in (1, 2, 3):  # critic steps only
        critic, target = snapshot(m["critic"]), snapshot(m["critic_target"])
        update_rl(args, m, log_alpha, target_entropy, updates)
        assert moved(critic, m["critic"])
        for (k, new), old in zip(m["critic"].named_parameters(), m["critic_target"].parameters()):
            assert torch.equal(old, torch.lerp(target[k], new, args.tau)), k  # E8: tau theta + (1 - tau) theta-bar
        assert not torch.equal(m["critic_target"].state_dict()["q1.head.2.weight"], target["q1.head.2.weight"])
    assert all(p.grad is None for p in m["planner"].parameters())  # no gradient of J_Q reached psi
    assert not moved(planner, m["planner"])                       # nor its running statistics
    assert log_alpha.item() == alpha


def test_planner_and_temperature_update_on_every_planner_every_th_update_only():
    args, m, log_alpha, target_entropy = agent(planner_every=3)
    steps = {"planner": [], "alpha": [], "critic": []}
    for updates in range(1, 7):
        planner, critic, alpha = snapshot(m["planner"]), snapshot(m["critic"]), log_alpha.item()
        out = update_rl(args, m, log_alpha, target_entropy, updates)
        steps["planner"].append(moved(planner, m["planner"]))
        steps["alpha"].append(log_alpha.item() != alpha)
        steps["critic"].append(moved(critic, m["critic"]))
        assert ("planner_loss" in out) == (updates % 3 == 0)
    assert steps["planner"] == steps["alpha"] == [False, False, True, False, False, True]
    assert all(steps["critic"])


class Replayed(PhotoEnv):
    """The hand-built batch as the replay buffer's minibatch, already unpacked."""

    def sample(self, batch_size, generator):
        return batch()

    def unpack(self, stored):
        return stored


def test_e4_and_e6_use_the_acting_planner_and_only_j_aux_moves_its_statistics():
    args, m, log_alpha, target_entropy = agent(planner_every=1)
    planner, modes = m["planner"], []
    forward = planner.forward
    planner.forward = lambda state: (modes.append(planner.training), forward(state))[1]
    statistics = {k: v.clone() for k, v in planner.state_dict().items() if "running" in k}
    update_rl(args, m, log_alpha, target_entropy, updates=1)
    assert modes == [False, False]   # E4's p' ~ pi(. | s') and E6's p~: eval mode, as collect() acts
    assert planner.training          # back in train mode for J_Aux
    assert all(torch.equal(v, planner.state_dict()[k]) for k, v in statistics.items())
    train.update(args, {"env": Replayed()}, Replayed(), m, log_alpha, target_entropy, 2, None, False)
    assert modes[2:] == [False, False, True]  # E4, E6, then J_Aux (E9) in train mode
    assert all(not torch.equal(v, planner.state_dict()[k]) for k, v in statistics.items())


class ScriptedEnv:
    """Four episodes of 16 x 16 six-channel states. Episode 0 reaches a terminal state at its first step,
    episode 1 at its second; 2 and 3 never do. The reward names the transition: 10 t + episode."""

    def reset(self, source):
        self.t = 0
        return source

    def extras(self):
        return {}

    def step(self, action):
        self.t += 1
        done = torch.tensor([float(self.t >= 1), float(self.t >= 2), 0.0, 0.0])
        return torch.zeros(4, 6, SIZE, SIZE), 10 * self.t + torch.arange(4.0), done

    def pack(self, transition):
        return {k: transition[k] for k in ("plan", "reward", "done")}

    def buffer_columns(self, image_size, plan_shape):
        return {"plan": Column(plan_shape), "reward": Column(()), "done": Column(())}


class Images:
    names = ["a", "b"]

    def sample(self, n, generator):
        return torch.rand(n, 6, SIZE, SIZE, generator=generator)


def test_the_loop_stores_running_episodes_only_and_a_time_limit_as_not_done(tmp_path, monkeypatch):
    def build(args, device):
        planner = VectorPlanner(6, SIZE, PLAN, 8)
        return dict(env=ScriptedEnv(), planner=planner, actor=VectorActor(planner.widths, PLAN, tanh=True),
                    critic=Critic(6, SIZE, (PLAN,)), plan_shape=(PLAN,), train_data=Images(), test_data=Images())
    monkeypatch.setattr(train, "build", build)
    args, _ = train.parse_args(["--task", "photo", "--image-size", str(SIZE), "--set", f"plan_dim={PLAN}", "--num-envs", "4",
                                "--max-episode-steps", "3", "--total-steps", "3", "--buffer-size", "64",
                                "--learning-starts", "64", "--set", "save_buffer=true", "--run-dir", str(tmp_path), "--no-progress"])
    run, _ = train.train(args)   # one episode of T_max = 3, no update
    stored = read_checkpoint(f"{run}/checkpoint.pt")["buffer"]
    assert stored["size"] == 1 + 2 + 3 + 3
    reward, done = stored["storage"]["reward"].tolist(), stored["storage"]["done"].tolist()
    assert dict(zip(reward, done)) == {10: 1, 11: 0, 12: 0, 13: 0,   # t = 1: episode 0 ends (terminal)
                                       21: 1, 22: 0, 23: 0,          # t = 2: episode 1 ends; 0 is not stored
                                       32: 0, 33: 0}                 # t = 3 = T_max: cut, stored as not done


def test_inference_acts_with_the_plan_mean():
    torch.manual_seed(0)
    planner = VectorPlanner(6, SIZE, PLAN, 8)
    actor = VectorActor(planner.widths, PLAN, tanh=True)
    with torch.no_grad():
        planner.head.bias[PLAN:] = 10.0  # sigma = e at every state: a sampled plan would change every action
    pairs = torch.rand(3, 6, SIZE, SIZE)
    runs = []
    for seed in (1, 2):
        torch.manual_seed(seed)
        runs.append(rollout(planner, actor, PhotoEnv(), pairs, steps=2))
    env, planner_eval = PhotoEnv(), planner.eval()
    states = [env.reset(pairs)]
    with torch.no_grad():
        for _ in range(2):  # E1 at inference by hand: p_t = m_psi(s_t)
            dist, features = planner_eval(states[-1])
            states.append(env.step(actor.eval()(dist.mean, features))[0])
    for a, b, c in zip(*runs, states):
        assert torch.equal(a, b) and torch.equal(a, c)
    assert not torch.allclose(states[1], states[2], atol=1e-3)  # the steps do act


def test_lr_decay_linear_falls_to_zero_with_the_step_and_off_keeps_the_paper_constant():
    args, modules, _, _ = agent(lr_decay="linear", total_steps=100)
    rates = []
    for step in (1, 51, 100):
        train.decay_learning_rate(args, modules, step)
        rates.append([g["lr"] for name in ("planner_opt", "actor_opt") for g in modules[name].param_groups])
    assert rates[0] == [1e-3, 1e-3] and torch.allclose(torch.tensor(rates[1]), torch.tensor([5e-4, 5e-4]))
    assert torch.allclose(torch.tensor(rates[2]), torch.tensor([1e-5, 1e-5]))
    assert modules["critic_opt"].param_groups[0]["lr"] == 1e-3                # the critic's is left alone
    args, modules, _, _ = agent(total_steps=100)                               # off, the default: constant
    train.decay_learning_rate(args, modules, 90)
    assert modules["actor_opt"].param_groups[0]["lr"] == 1e-3
