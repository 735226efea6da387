"""Train RL-I2IT: Algorithm 1 of the paper, for every task through one code path.

    python train.py --task style                  # built-in data, CPU preset (5 to 8 minutes on 2 cores)
    python train.py --task inpaint --rl off       # the one-step ablation: J_Aux only, same networks
    python train.py --task photo --data-root facades/ --direction BtoA --device cuda
    torchrun --standalone --nproc_per_node=2 train.py --task digits       # one agent on 2 processes

Algorithm 1, in this project's words; the comments "A1.n" below are its lines:

    A1.1   initialise planner psi, actor phi, critics theta_1,2, targets theta-bar <- theta, temperature
           alpha, (GAN tasks) discriminator omega, and the replay buffer D
    A1.2   for each episode:
    A1.3       s_0 <- reset(x), x drawn from the training data
    A1.4       for t = 0 .. T_max - 1:
    A1.5           p_t ~ pi_psi(. | s_t)                         a plan, sampled without gradient   E1, E2
    A1.6           a_t = mu_phi(s_t, p_t)                        the plan decoded into an action    E1
    A1.7           s_t+1, r_t, d_t <- step(s_t, a_t)             the task's transition and reward   E1
    A1.8           D <- D + (s_t, p_t, r_t, s_t+1, d_t)
    A1.9           every K steps, once D holds enough transitions:
    A1.10              draw a minibatch B from D
    A1.11              critics theta_1,2 by E5 (targets by E4), then the targets theta-bar by E8
    A1.12              every second update: planner psi by E6, then temperature alpha by E7
    A1.13              (GAN tasks) discriminator omega by E18
    A1.14              planner psi and actor phi by J_Aux (E9), the task's loss
    A1.15          if every episode is done (d_t): end the episode

What differs between tasks (presets, networks, environment, data) is in tasks.py and env.py, the flags
(`Args`) in config.py. What runs around the algorithm is in extras/ and marked "bookkeeping" below: the run
folder, progress log, checkpoints and signals (extras/runlog.py), the report after training
(extras/report.py), and what several processes under torchrun add (extras/distributed.py: `every_rank`,
`any_rank` and `averaged` are the collective calls). Equation numbers (E1...) refer to README.md.
"""
from __future__ import annotations

import functools
import os
import random
import sys

import numpy as np
import torch

from buffer import ReplayBuffer
from config import Args, resolve_amp, resolve_device
from extras.cli import parse_args
from critic import target_copy
from data import DataError
from planner import recurrent_inputs
from extras import distributed
from extras.distributed import World, any_rank, averaged, every_rank
from extras.memory import BufferTooLarge
from extras.report import final_report
from extras.runlog import Bookkeeper, CheckpointError, NonFiniteLoss, merge_resumed_args
from extras.stopping import update_reward_head
from losses import (critic_loss, discriminator_loss, planner_loss, soft_bellman_target, soft_update,
                    temperature_loss)
from tasks import build
from vgg import VGGError


def seed_everything(seed: int, deterministic: bool) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(deterministic, warn_only=True)
    # Deterministic mode also fills every new tensor with NaN, a debugging aid that took 12-19 % of the CPU
    # time in our profiles (docs/speed-and-faults.md); results are bitwise the same without it.
    torch.utils.deterministic.fill_uninitialized_memory = False
    torch.backends.cudnn.benchmark = not deterministic


def autocast(args: Args, device: torch.device):
    """--amp: bfloat16 autocast around the networks' forward passes (no loss scaling needed for bfloat16)."""
    return torch.autocast(device.type, torch.bfloat16, enabled=resolve_amp(args.amp, device.type)[0])


def initialise(args: Args, task: dict, device: torch.device) -> tuple[dict, torch.Tensor, float]:
    """A1.1: planner psi, actor phi, critics theta_1,2, targets theta-bar <- theta, log alpha, (GAN tasks)
    discriminator omega, and their optimisers. Returns the modules, log alpha and H_bar."""
    betas = (args.beta1, args.beta2)
    planner, actor, critic = task["planner"], task["actor"], task["critic"]
    log_alpha = torch.tensor(args.init_log_alpha, device=device, requires_grad=True)
    target_entropy = -float(np.prod(task["plan_shape"])) if np.isnan(args.target_entropy) else args.target_entropy
    modules = dict(planner=planner, actor=actor,
                   planner_opt=torch.optim.Adam(planner.parameters(), args.lr, betas),  # psi: J_kappa and J_Aux
                   actor_opt=torch.optim.Adam(actor.parameters(), args.lr, betas))      # phi: J_Aux
    if critic is not None:  # --rl on; the one-step ablation has no critic and no temperature
        modules.update(critic=critic, critic_target=target_copy(critic),                # E8, hard copy at start
                       critic_opt=torch.optim.Adam(critic.parameters(), args.critic_lr, betas),  # J_Q(theta)
                       alpha_opt=torch.optim.Adam([log_alpha], args.alpha_lr, betas))          # J(alpha)
    if task.get("reward_head") is not None:  # adaptive stopping (ours, O3): r-hat_eta
        modules.update(reward_head=task["reward_head"],
                       reward_head_opt=torch.optim.Adam(task["reward_head"].parameters(), args.head_lr, betas))
    if "discriminator" in task:
        modules.update(discriminator=task["discriminator"],                             # D_omega: J_D
                       discriminator_opt=torch.optim.Adam(task["discriminator"].parameters(), args.disc_lr, betas))
    return modules, log_alpha, target_entropy


def train(args: Args, world: World = World()) -> tuple[str, dict]:
    device = resolve_device(args.device, world.local_rank if world.size > 1 else None)
    seed_everything(args.seed, args.deterministic)                       # every rank: the same networks
    task = build(args, device)
    env = task["env"]
    distributed.sync_batch_norm(task, device)                            # torchrun on CUDA: batch statistics of all ranks
    modules, log_alpha, target_entropy = initialise(args, task, device)   # A1.1: networks and optimisers
    seed = distributed.share_networks(modules, log_alpha, task, args, world.rank, seed_everything)  # torchrun
    buffer = ReplayBuffer(args.buffer_size, env.buffer_columns(args.image_size, task["plan_shape"]), device)  # A1.1: D
    print(buffer.estimate)                                               # checked before allocating: refuses what won't fit
    data_rng = torch.Generator().manual_seed(seed)
    sample_rng = torch.Generator(device=device).manual_seed(seed)
    generators = dict(data_rng=data_rng, sample_rng=sample_rng, **task.get("generators", {}))  # in checkpoints
    books = Bookkeeper(args, world, task, device, modules, log_alpha, generators, buffer)  # bookkeeping
    step, episode, updates = books.step, books.episode, books.updates   # 0, or where a resumed run stopped
    ready = False                                                        # every rank's D holds learning_starts

    with books.guard():                                                  # bookkeeping: Ctrl-C, kill, NaN
        while step < args.total_steps:                                   # A1.2: for each episode
            state = env.reset(task["train_data"].sample(args.num_envs, data_rng).to(device))  # A1.3: s_0
            episode_return = torch.zeros(args.num_envs, device=device)
            running = torch.ones(args.num_envs, dtype=torch.bool, device=device)
            stats: dict[str, list[torch.Tensor]] = {}
            for t in range(args.max_episode_steps):                      # A1.4: for t = 0 .. T_max - 1
                next_state, reward, done = collect(args, task, buffer, state, running)  # A1.5-A1.8
                episode_return += reward * running
                running &= done == 0
                state, step = next_state, step + 1
                ready = ready or every_rank(buffer.size >= args.learning_starts)
                if ready and step % args.update_every == 0:             # A1.9
                    updates += 1
                    decay_learning_rate(args, modules, step)             # --set lr_decay=linear (ours); off: constant
                    gan_on = step >= args.gan_warmup * args.total_steps  # adversarial term after the warm-up
                    for k, v in update(args, task, buffer, modules, log_alpha, target_entropy, updates,
                                       sample_rng, gan_on).items():      # A1.10-A1.14
                        stats.setdefault(k, []).append(v)
                books.tick(step, updates)                                # bookkeeping: progress bar
                if not any_rank(running.any().item()) or step >= args.total_steps:  # A1.15: end the episode
                    break
            episode += 1
            books.end_episode(episode, stats, episode_return)            # bookkeeping: log, NaN check, checkpoint
        books.finish()                                                   # bookkeeping: the last checkpoint
    return books.run, task


def collect(args: Args, task: dict, buffer: ReplayBuffer, state: torch.Tensor, running: torch.Tensor
            ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A1.5-A1.8 for all environments at once: act (with the running normalisation statistics, as at
    inference), step, and add the transitions of the episodes still running to D."""
    env, planner, actor = task["env"], task["planner"], task["actor"]
    extras = env.extras()                                                # the task's extras of s_t
    planner.eval(), actor.eval()
    with torch.no_grad(), autocast(args, state.device):
        dist, features = planner(state, *recurrent_inputs(extras))
        plan = dist.sample()                                             # A1.5: p_t ~ pi(. | s_t), E1
        action = actor(plan, features).float()                           # A1.6: a_t = mu(s_t, p_t), E1
    planner.train(), actor.train()
    if "hidden" in extras:                                               # video: the planner's step-wise GRU state
        extras["next_hidden"] = env.carry(features)                      # h_t+1, carried to s_t+1
    next_state, reward, done = env.step(action)                          # A1.7: s_t+1, r_t, d_t
    transition = env.pack(dict(state=state, plan=plan, reward=reward, next_state=next_state, done=done,
                               **extras))                                # what D keeps: nothing rebuildable twice
    buffer.add({k: v[running] for k, v in transition.items()})          # A1.8: D <- D + transition
    return next_state, reward, done


def update(args: Args, task: dict, buffer: ReplayBuffer, m: dict, log_alpha: torch.Tensor,
           target_entropy: float, updates: int, rng: torch.Generator, gan_on: bool) -> dict[str, torch.Tensor]:
    """A1.10 to A1.14: one update of critics and targets, (every second time) planner and temperature, then
    (GAN tasks) the discriminator, then J_Aux. With --rl off (no critic) only the last two."""
    planner, actor, env = m["planner"], m["actor"], task["env"]
    batch = env.unpack(buffer.sample(args.batch_size, rng))          # A1.10: minibatch from D, states rebuilt
    amp = functools.partial(autocast, args, batch["state"].device)  # wraps forward passes only, as autocast asks
    out = update_rl(args, batch, m, log_alpha, target_entropy, updates, amp) if "critic" in m else {}  # A1.11, A1.12
    out.update(update_auxiliary(batch, m, env, gan_on, amp))                                              # A1.13, A1.14
    if "reward_head" in m:  # adaptive stopping (ours, O3, not in Algorithm 1): its own loss on the same minibatch
        out["head_loss"] = update_reward_head(batch, m, amp)
    distributed.average_buffers(planner, actor, m.get("discriminator"))  # torchrun: batch norm's running statistics
    return out


def update_rl(args: Args, batch: dict, m: dict, log_alpha: torch.Tensor, target_entropy: float,
              updates: int, amp) -> dict[str, torch.Tensor]:
    """A1.11 and A1.12: the critics by E5 and the targets by E8; every second time the planner by E6, then the
    temperature by E7. E4 and E6 evaluate and improve the acting policy: the planner as collect() and evaluation
    run it, with its running normalisation statistics (eval mode), which these passes leave alone (difference 33)."""
    planner, critic, critic_target = m["planner"], m["critic"], m["critic_target"]
    state, plan, reward, next_state, done = (batch[k] for k in ("state", "plan", "reward", "next_state", "done"))
    alpha = log_alpha.exp().detach()
    out = {}
    planner.eval()

    # A1.11: critics by E5 against the soft Bellman target E4, then the targets by E8
    with torch.no_grad(), amp():
        next_dist, _ = planner(next_state, *recurrent_inputs(batch, "next_hidden"))
        next_plan = next_dist.sample()                               # p' ~ pi(. | s_t+1)
        target = soft_bellman_target(reward, done, *critic_target(next_state, next_plan),
                                     next_dist.log_prob(next_plan), alpha, args.gamma)  # E4
    with amp():
        q1, q2 = critic(state, plan)
        loss_critic = critic_loss(q1, q2, target)                    # E5
    m["critic_opt"].zero_grad()
    loss_critic.backward()
    averaged(m["critic_opt"]).step()
    soft_update(critic_target, critic, args.tau)                     # E8
    out["critic_loss"], out["q"] = loss_critic.detach(), q1.detach().mean()

    # A1.12: every second update, the planner by E6, then the temperature by E7
    if updates % args.planner_every == 0:
        with amp():
            dist, _ = planner(state, *recurrent_inputs(batch))
            new_plan = dist.rsample()                                # E2: gradient flows into psi
            log_prob = dist.log_prob(new_plan)
            kl = dist.kl_to_standard_normal() if args.kl_weight > 0 else None
            loss_planner = planner_loss(log_prob, *critic(state, new_plan), alpha, kl, args.kl_weight)  # E6
        m["planner_opt"].zero_grad()
        loss_planner.backward()
        averaged(m["planner_opt"]).step()
        loss_temperature = temperature_loss(log_alpha, log_prob, target_entropy)  # E7
        m["alpha_opt"].zero_grad()
        loss_temperature.backward()
        averaged(m["alpha_opt"]).step()
        out["planner_loss"], out["temperature_loss"] = loss_planner.detach(), loss_temperature.detach()
        out["log_prob"] = log_prob.detach().mean()
    planner.train()  # J_Aux (E9) runs in train mode: the only pass that moves the running statistics
    return out


def update_auxiliary(batch: dict, m: dict, env, gan_on: bool, amp) -> dict[str, torch.Tensor]:
    """A1.13 and A1.14, on the same new action a~ = mu(s, p~), p~ reparameterised (E9), of the replayed states:
    (GAN tasks, after the warm-up) the discriminator, then planner and actor by J_Aux."""
    planner, actor, out = m["planner"], m["actor"], {}
    with amp():
        dist, features = planner(batch["state"], *recurrent_inputs(batch))
        action = actor(dist.rsample(), features).float()

    # A1.13: (GAN tasks, after the warm-up) the discriminator by E18, real targets against the new action
    discriminator = m.get("discriminator") if gan_on else None
    if discriminator is not None:
        with amp():
            loss_discriminator = discriminator_loss(discriminator(batch["target"]), discriminator(action.detach()))  # E18
        m["discriminator_opt"].zero_grad()
        loss_discriminator.backward()
        averaged(m["discriminator_opt"]).step()
        out["disc_loss"] = loss_discriminator.detach()

    # A1.14: planner and actor by J_Aux, E9 with the task's loss
    with amp():
        loss_aux, parts = env.auxiliary_loss(action, batch, discriminator)  # E9
    m["planner_opt"].zero_grad()
    m["actor_opt"].zero_grad()
    loss_aux.backward()
    averaged(m["planner_opt"]).step()
    averaged(m["actor_opt"]).step()
    out["aux_loss"] = loss_aux.detach()
    out.update(parts)
    return out


def decay_learning_rate(args: Args, modules: dict, step: int) -> None:
    """--set lr_decay=linear (ours, difference 48): the planner's and actor's learning rate falls from --lr to 0
    at --total-steps. A function of the step alone, so that a resumed run continues the same schedule."""
    if args.lr_decay == "linear":
        for name in ("planner_opt", "actor_opt"):
            for group in modules[name].param_groups:
                group["lr"] = args.lr * (1 - (step - 1) / args.total_steps)


def main(argv: list[str] | None = None) -> None:
    args, given = parse_args(argv)
    world = distributed.setup(args.device)  # torchrun's ranks; World() (one process) without it
    if world.rank:
        sys.stdout = open(os.devnull, "w")  # rank 0 alone prints
    try:
        if args.resume:
            args = merge_resumed_args(args, given, world)  # the saved run's settings, with explicit flags on top
        run, task = train(args, world)
        distributed.close(wait=True)  # torchrun: every rank done with its collectives, the group closed together
        if world.rank == 0:
            final_report(run, args, task)  # no collective in it
    except (DataError, VGGError, CheckpointError, BufferTooLarge, NonFiniteLoss) as e:
        sys.exit(f"error: {e}" if world.rank == 0 else 1)
    finally:
        distributed.close()


if __name__ == "__main__":
    main()
