"""Train RL-I2IT: Algorithm 1 of the paper, for every task through one code path.

    python train.py --task style                  # built-in data, CPU preset (~8 min on 2 cores)
    python train.py --task style --content-dir COCO/train2014 --style-image starry.jpg --device cuda
    python train.py --task inpaint                # built-in faces, CPU preset
    python train.py --task inpaint --data-root CelebA-HQ/ --device cuda
    python train.py --task inpaint --rl off       # the one-step ablation: J_Aux only, same networks
    python train.py --task photo                  # built-in edges -> photo pairs, CPU preset
    python train.py --task photo --data-root facades/ --direction BtoA --device cuda
    python train.py --task digits                 # built-in MNIST digits, CPU preset
    python train.py --task video                  # video style transfer, trained on the built-in photos
    python train.py --task register               # deformable registration of built-in phantom heads
    python train.py --task register --data-root neurite-oasis.2d.v1.0   # 2-D OASIS brain slices
    torchrun --standalone --nproc_per_node=2 train.py --task digits       # one agent on 2 processes (distributed.py)

The loop below follows Algorithm 1 line by line (comments "A1.n"); what differs between tasks
(presets, networks, environment, data) is in tasks.py, the flags (`Args`) in config.py, bookkeeping
(logging, checkpoints, the printed config) in runlog.py, the report after training in report.py, and what
several processes under torchrun add (averaged gradients, agreed decisions) in distributed.py.
Equation numbers (E1...) refer to the table in README.md.
"""
from __future__ import annotations

import functools
import os
import random
import signal
import sys
import time

import numpy as np
import torch
from tqdm import tqdm

import distributed
from buffer import ReplayBuffer, ReplayMemoryError
from config import Args, parse_args, resolve_amp, resolve_device
from critic import target_copy
from data import DataError
from distributed import World, any_rank, average_buffers, average_gradients, every_rank
from env import memory
from losses import (critic_loss, discriminator_loss, planner_loss, reward_head_loss, soft_bellman_target, soft_update,
                    temperature_loss)
from report import final_report
from runlog import (CheckpointError, NonFiniteLoss, ProgressLog, check_finite, load_checkpoint, print_config,
                    rank_state, read_checkpoint, resume_path, save_checkpoint, world_size_of)
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


def initialise(args: Args, task: dict, device: torch.device) -> tuple[dict, torch.Tensor, float]:
    """A1.1: planner psi, actor phi, critics theta_1,2, targets theta-bar <- theta, log alpha, (GAN tasks)
    discriminator omega, and their optimisers. Returns the modules, log alpha and H_bar."""
    betas = (args.beta1, args.beta2)
    if args.channels_last:  # NHWC convolutions (faster on GPUs with tensor cores)
        for k in ("planner", "actor", "critic", "discriminator", "vgg"):
            if task.get(k) is not None:
                task[k].to(memory_format=torch.channels_last)
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
    if task.get("reward_head") is not None:  # adaptive stopping (ours): r-hat_eta, E35
        modules.update(reward_head=task["reward_head"],
                       reward_head_opt=torch.optim.Adam(task["reward_head"].parameters(), args.head_lr, betas))
    if "discriminator" in task:
        modules.update(discriminator=task["discriminator"],                             # D_omega: J_D
                       discriminator_opt=torch.optim.Adam(task["discriminator"].parameters(), args.disc_lr, betas))
    return modules, log_alpha, target_entropy


def autocast(args: Args, device: torch.device):
    """--amp: bfloat16 autocast around the networks' forward passes (no loss scaling needed for bfloat16)."""
    return torch.autocast(device.type, torch.bfloat16, enabled=resolve_amp(args.amp, device.type)[0])


def collect(args: Args, task: dict, buffer: ReplayBuffer, state: torch.Tensor, running: torch.Tensor
            ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A1.5-A1.8 for all environments at once: act (with the running normalisation statistics, as at
    inference), step, and add the transitions of the episodes still running to D."""
    env, planner, actor = task["env"], task["planner"], task["actor"]
    extras = env.extras()                                                # the task's extras of s_t
    planner.eval(), actor.eval()
    with torch.no_grad(), autocast(args, state.device):
        dist, features = planner(state, *memory(extras))
        plan = dist.sample()                                             # A1.5: p_t ~ pi(. | s_t), E1
        action = actor(plan, features).float()                           # A1.6: a_t = mu(s_t, p_t), E1
    planner.train(), actor.train()
    if "memory" in extras:                                               # video: the planner's step-wise memory
        extras["next_memory"] = env.carry(features)                      # h_t+1, carried to s_t+1
    next_state, reward, done = env.step(action)                          # A1.7: s_t+1, r_t, d_t
    transition = env.pack(dict(state=state, plan=plan, reward=reward, next_state=next_state, done=done,
                               **extras))                                # what D keeps: nothing rebuildable twice
    buffer.add({k: v[running] for k, v in transition.items()})          # A1.8: D <- D + transition
    return next_state, reward, done


def decay_learning_rate(args: Args, modules: dict, step: int) -> None:
    """--lr-decay linear (difference 48): the planner's and actor's learning rate falls from --lr to 0 at
    --total-steps. A function of the step alone, so that a resumed run continues the same schedule."""
    if args.lr_decay == "linear":
        for name in ("planner_opt", "actor_opt"):
            for group in modules[name].param_groups:
                group["lr"] = args.lr * (1 - (step - 1) / args.total_steps)


def optimiser_step(optimiser: torch.optim.Optimizer) -> None:
    """optimiser.step(), with the gradients averaged over the ranks first under torchrun (distributed.py)."""
    average_gradients(optimiser)
    optimiser.step()


def train(args: Args, world: World = World()) -> tuple[str, dict]:
    device = resolve_device(args.device, world.local_rank if world.size > 1 else None)
    seed_everything(args.seed, args.deterministic)                       # every rank: the same networks
    task = build(args, device)
    distributed.sync_batch_norm(task, device)                            # CUDA, K > 1: batch statistics of all ranks
    env = task["env"]
    modules, log_alpha, target_entropy = initialise(args, task, device)   # A1.1
    distributed.broadcast(modules, log_alpha)                            # rank 0's networks on every rank
    seed = distributed.rank_seed(args.seed, world.rank)                  # each rank's own draws; rank 0: --seed
    if world.rank:
        seed_everything(seed, args.deterministic)
        for generator in task.get("generators", {}).values():
            generator.manual_seed(seed)
    buffer = ReplayBuffer(args.buffer_size, env.buffer_fields(args.image_size, task["plan_shape"]), device)  # A1.1: D
    print(buffer.estimate)                                               # checked before allocating: refuses what won't fit
    data_rng = torch.Generator().manual_seed(seed)
    sample_rng = torch.Generator(device=device).manual_seed(seed)
    generators = dict(data_rng=data_rng, sample_rng=sample_rng, **task.get("generators", {}))  # in checkpoints

    run = args.resume if os.path.isdir(args.resume) else os.path.dirname(args.resume) if args.resume else \
        os.path.join(args.run_dir, args.name or f"{args.task}-seed{args.seed}")
    if world.rank == 0:
        os.makedirs(run, exist_ok=True)
    step = episode = updates = 0
    if args.resume:
        step, episode, updates = load_checkpoint(resume_path(args.resume), modules, log_alpha, generators, buffer,
                                                 world.rank)
    if world.rank == 0:
        print_config(args, run, device, task, world.size)
    log = ProgressLog(os.path.join(run, "progress.csv"), resume_step=step if args.resume else None) \
        if world.rank == 0 else None                                     # rank 0 alone writes files
    checkpoint_path = os.path.join(run, "checkpoint.pt")

    def checkpoint() -> None:
        ranks = distributed.gather(rank_state(generators, device, buffer if args.save_buffer else None))
        digests = distributed.same_networks(modules, log_alpha, step)   # every rank's, checked equal
        if world.rank == 0:
            save_checkpoint(checkpoint_path, args, modules, log_alpha, step, episode, updates, ranks, digests)

    bar = tqdm(total=args.total_steps, initial=step, desc=f"{args.task}", unit="step", dynamic_ncols=True,
               disable=not args.progress or world.rank > 0)
    start = time.time()
    # Ctrl-C and `kill` save and stop; SIGINT too, as shells start background jobs with SIGINT ignored. Under
    # torchrun a signal is noted and every rank stops together at the end of the episode (no collective is cut).
    asked_to_stop = []
    on_signal = signal.default_int_handler if world.size == 1 else lambda signum, frame: asked_to_stop.append(signum)
    handlers = {signum: signal.signal(signum, on_signal) for signum in (signal.SIGINT, signal.SIGTERM)}
    ready = False                                                        # every rank's D holds learning_starts
    try:
        while step < args.total_steps:                                   # A1.2: for each episode
            state = env.reset(task["train_data"].sample(args.num_envs, data_rng).to(device))  # A1.3: s_0
            episode_return = torch.zeros(args.num_envs, device=device)
            running = torch.ones(args.num_envs, dtype=torch.bool, device=device)
            stats: dict[str, list[torch.Tensor]] = {}
            update_steps: list[int] = []
            for t in range(args.max_episode_steps):                      # A1.4: for t = 0 .. T_max - 1
                next_state, reward, done = collect(args, task, buffer, state, running)  # A1.5-A1.8
                episode_return += reward * running
                running &= done == 0
                state, step = next_state, step + 1
                bar.update(1)
                ready = ready or every_rank(buffer.size >= args.learning_starts)
                if ready and step % args.update_every == 0:             # A1.9
                    updates += 1
                    decay_learning_rate(args, modules, step)             # --lr-decay linear (ours); off: constant
                    gan_on = step >= args.gan_warmup * args.total_steps  # adversarial term after the warm-up
                    for k, v in update(args, task, buffer, modules, log_alpha, target_entropy, updates,
                                       sample_rng, gan_on).items():
                        stats.setdefault(k, []).append(v)
                    update_steps.append(step)
                if not any_rank(running.any().item()) or step >= args.total_steps:  # A1.13: end the episode
                    break
            episode += 1

            # Bookkeeping, apart from the algorithm: stop on a non-finite loss (before any checkpoint of
            # this episode), progress log, bar, checkpoints.
            check_finite(stats, update_steps, episode_return, step)
            row = {"episode": episode, "step": step, "transitions": buffer.size, "updates": updates,
                   "return": episode_return.mean().item(), "alpha": log_alpha.exp().item(),
                   "seconds": round(time.time() - start, 1),
                   **{k: torch.stack(v).mean().item() for k, v in stats.items()}}
            if log is not None:
                log.write(row)
            bar.set_postfix({k: f"{row[k]:.3g}" for k in ("return", "aux_loss", "alpha") if k in row})
            if world.size > 1 and any_rank(bool(asked_to_stop)):        # torchrun: every rank stops here
                raise KeyboardInterrupt
            if episode % args.save_every == 0:
                checkpoint()
    except KeyboardInterrupt:
        bar.close()
        checkpoint()
        resume = f"--resume {run}" if world.size == 1 else f"torchrun --nproc_per_node={world.size} ... --resume {run}"
        sys.exit(f"interrupted at step {step}: checkpoint saved, continue with {resume}" if world.rank == 0 else 1)
    except NonFiniteLoss as e:
        bar.close()
        last = f"the last good checkpoint is {checkpoint_path}" if os.path.isfile(checkpoint_path) else \
            "no checkpoint was written before it"
        raise NonFiniteLoss(f"{e}: training stopped; {last}") from None
    finally:
        for signum, handler in handlers.items():
            signal.signal(signum, handler)
    bar.close()
    checkpoint()
    return run, task


def update(args: Args, task: dict, buffer: ReplayBuffer, m: dict, log_alpha: torch.Tensor,
           target_entropy: float, updates: int, rng: torch.Generator, gan_on: bool) -> dict[str, torch.Tensor]:
    """A1.10 to A1.12: one update of critics, (every second time) temperature and planner, then
    (GAN tasks) the discriminator, then J_Aux. With --rl off only the last two. Then the reward head of
    adaptive stopping (E35, ours)."""
    planner, actor, env = m["planner"], m["actor"], task["env"]
    batch = env.unpack(buffer.sample(args.batch_size, rng))          # A1.10: minibatch from D, states rebuilt
    amp = functools.partial(autocast, args, batch["state"].device)  # wraps forward passes only, as autocast asks
    out = {}
    if "critic" in m:
        out.update(update_rl(args, batch, m, log_alpha, target_entropy, updates, amp))

    # A1.12: (GAN tasks) discriminator by E18, then J_Aux on planner and actor by E9, on replayed states
    with amp():
        dist, features = planner(batch["state"], *memory(batch))
        action = actor(dist.rsample(), features).float()            # E9: a = mu(s, p~), p~ reparameterised
    discriminator = m.get("discriminator") if gan_on else None
    if discriminator is not None:
        with amp():
            loss_discriminator = discriminator_loss(discriminator(batch["target"]), discriminator(action.detach()))  # E18
        m["discriminator_opt"].zero_grad()
        loss_discriminator.backward()
        optimiser_step(m["discriminator_opt"])
        out["disc_loss"] = loss_discriminator.detach()
    with amp():
        loss_aux, parts = env.auxiliary_loss(action, batch, discriminator)  # E9 with the task loss
    m["planner_opt"].zero_grad()
    m["actor_opt"].zero_grad()
    loss_aux.backward()
    optimiser_step(m["planner_opt"])
    optimiser_step(m["actor_opt"])
    out["aux_loss"] = loss_aux.detach()
    out.update(parts)

    if "reward_head" in m:
        out["head_loss"] = update_reward_head(batch, m, amp)
    average_buffers(planner, actor, m.get("discriminator"))  # torchrun: batch norm's running statistics, the same on all ranks
    return out


def update_reward_head(batch: dict, m: dict, amp) -> torch.Tensor:
    """Adaptive stopping (ours, not in Algorithm 1): the reward head by E35 on the same minibatch, its own
    loss and optimiser; the states come from D, so nothing flows back into planner, actor or critics."""
    with amp():
        loss_head = reward_head_loss(m["reward_head"](batch["next_state"]), batch["reward"])  # E35: r-hat(s_t+1) ~ r_t
    m["reward_head_opt"].zero_grad()
    loss_head.backward()
    optimiser_step(m["reward_head_opt"])
    return loss_head.detach()


def update_rl(args: Args, batch: dict, m: dict, log_alpha: torch.Tensor, target_entropy: float,
              updates: int, amp) -> dict[str, torch.Tensor]:
    """A1.11 and A1.12's RL half: critics by E5 with targets by E8; every second time alpha and planner.
    E4 and E6 evaluate and improve the acting policy: the planner as collect() and evaluation run it, with
    its running normalisation statistics (eval mode), which these passes leave alone (difference 33)."""
    planner, critic, critic_target = m["planner"], m["critic"], m["critic_target"]
    state, plan, reward, next_state, done = (batch[k] for k in ("state", "plan", "reward", "next_state", "done"))
    alpha = log_alpha.exp().detach()
    out = {}
    planner.eval()

    # A1.11: critics by E5, then targets by E8
    with torch.no_grad(), amp():
        next_dist, _ = planner(next_state, *memory(batch, "next_memory"))
        next_plan = next_dist.sample()                               # p' ~ pi(. | s_t+1)
        target = soft_bellman_target(reward, done, *critic_target(next_state, next_plan),
                                     next_dist.log_prob(next_plan), alpha, args.gamma)  # E4
    with amp():
        q1, q2 = critic(state, plan)
        loss_critic = critic_loss(q1, q2, target)                    # E5
    m["critic_opt"].zero_grad()
    loss_critic.backward()
    optimiser_step(m["critic_opt"])
    soft_update(critic_target, critic, args.tau)                     # E8
    out["critic_loss"], out["q"] = loss_critic.detach(), q1.detach().mean()

    # A1.12: every second update, temperature by E7 and planner by E6
    if updates % args.planner_every == 0:
        with amp():
            dist, _ = planner(state, *memory(batch))
            new_plan = dist.rsample()                                # E2: gradient flows into psi
            log_prob = dist.log_prob(new_plan)
            kl = dist.kl_to_standard_normal() if args.kl_weight > 0 else None
            loss_planner = planner_loss(log_prob, *critic(state, new_plan), alpha, kl, args.kl_weight)  # E6
        m["planner_opt"].zero_grad()
        loss_planner.backward()
        optimiser_step(m["planner_opt"])
        loss_temperature = temperature_loss(log_alpha, log_prob, target_entropy)  # E7
        m["alpha_opt"].zero_grad()
        loss_temperature.backward()
        optimiser_step(m["alpha_opt"])
        out["planner_loss"], out["temperature_loss"] = loss_planner.detach(), loss_temperature.detach()
        out["log_prob"] = log_prob.detach().mean()
    planner.train()  # J_Aux (E9) runs in train mode: the only pass that moves the running statistics
    return out


def main(argv: list[str] | None = None) -> None:
    args, given = parse_args(argv)
    world = distributed.setup(args.device)  # torchrun's ranks; World() (one process) without it
    if world.rank:
        sys.stdout = open(os.devnull, "w")  # rank 0 alone prints
    try:
        if args.resume:
            state = read_checkpoint(resume_path(args.resume))
            if world_size_of(state) != world.size:
                raise CheckpointError(f"{args.resume}: written by {world_size_of(state)} process(es), resumed with "
                                      f"{world.size}; resume with the same number (torchrun --nproc_per_node="
                                      f"{world_size_of(state)}, or plain python for 1)")
            args = Args(**{**state["args"], **given})  # the saved run's settings, with explicit flags on top
        run, task = train(args, world)
        if world.rank == 0:
            final_report(run, args, task)
    except (DataError, VGGError, CheckpointError, ReplayMemoryError, NonFiniteLoss) as e:
        sys.exit(f"error: {e}" if world.rank == 0 else 1)
    finally:
        distributed.close()


if __name__ == "__main__":
    main()
