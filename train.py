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

The loop below follows Algorithm 1 line by line (comments "A1.n"); what differs between tasks
(presets, networks, environment, data) is in tasks.py, bookkeeping (logging, checkpoints, the
printed config) in runlog.py, pictures in evaluate.py. Equation numbers (E1...)
refer to the table in README.md.
"""
from __future__ import annotations

import argparse
import dataclasses
import functools
import os
import random
import signal
import sys
import time
from dataclasses import dataclass, field

import numpy as np
import torch
from tqdm import tqdm

from buffer import ReplayBuffer, ReplayMemoryError
from critic import target_copy
from data import DataError
from env import memory
from losses import (critic_loss, discriminator_loss, planner_loss, reward_head_loss, soft_bellman_target, soft_update,
                    temperature_loss)
from runlog import (CheckpointError, NonFiniteLoss, ProgressLog, check_finite, load_checkpoint, print_config,
                    read_checkpoint, resume_path, save_checkpoint)
from tasks import PRESETS, build
from vgg import VGGError


@dataclass
class Args:
    task: str = field(default="style", metadata={"help": "task to train", "choices": ("style", "video", "inpaint", "photo", "digits",
                                                                                                    "register")})
    rl: str = field(default="on", metadata={"help": "on: RL-I2IT; off: the one-step ablation (J_Aux only, T_max 1, no critic)",
                                            "choices": ("on", "off")})
    seed: int = field(default=1, metadata={"help": "seeds Python, NumPy and torch"})
    device: str = field(default="auto", metadata={"help": "auto: CUDA when present", "choices": ("auto", "cpu", "cuda")})
    deterministic: bool = field(default=True, metadata={"help": "bitwise repeatable runs (torch deterministic algorithms)"})
    run_dir: str = field(default="runs", metadata={"help": "parent folder of the run folder"})
    name: str = field(default="", metadata={"help": "run folder name (default: TASK-seedSEED)"})
    resume: str = field(default="", metadata={"help": "checkpoint file or run folder to continue from"})
    progress: bool = field(default=True, metadata={"help": "show a progress bar (--no-progress: quiet, e.g. in notebooks)"})
    amp: bool = field(default=False, metadata={"help": "bfloat16 autocast of the networks' forward passes (for GPUs)"})
    channels_last: bool = field(default=False, metadata={"help": "channels-last (NHWC) convolutions (for GPUs)"})
    # Algorithm 1 schedule
    total_steps: int = field(default=2000, metadata={"help": "environment steps (each steps all --num-envs episodes)"})
    num_envs: int = field(default=8, metadata={"help": "episodes run at once as one batch (authors: 1)"})
    max_episode_steps: int = field(default=10, metadata={"help": "T_max, steps per episode (paper: 10 for style)"})
    test_steps: int = field(default=10, metadata={"help": "steps k at inference (paper: 1, 5, 10 shown)"})
    buffer_size: int = field(default=3000, metadata={"help": "replay buffer capacity in transitions (paper: 3000 for style)"})
    batch_size: int = field(default=8, metadata={"help": "minibatch size of every update (authors: 1 for style)"})
    learning_starts: int = field(default=80, metadata={"help": "transitions collected before the first update (warm-up)"})
    update_every: int = field(default=1, metadata={"help": "K: environment steps between updates"})
    planner_every: int = field(default=2, metadata={"help": "critic updates per planner and temperature update"})
    gamma: float = field(default=0.99, metadata={"help": "discount (paper: 0.99)"})
    tau: float = field(default=0.005, metadata={"help": "soft target rate (paper: 0.005)"})
    lr: float = field(default=1e-4, metadata={"help": "planner and actor learning rate (paper: 1e-4 for style)"})
    critic_lr: float = field(default=1e-5, metadata={"help": "critic learning rate (paper: 1e-5 for style)"})
    head_lr: float = field(default=1e-3, metadata={"help": "learning rate of the reward head of adaptive stopping (ours, E35)"})
    alpha_lr: float = field(default=1e-4, metadata={"help": "temperature learning rate"})
    beta1: float = field(default=0.9, metadata={"help": "Adam beta1 of every optimiser (face code: 0.5)"})
    beta2: float = field(default=0.999, metadata={"help": "Adam beta2 of every optimiser (face code: 0.9)"})
    init_log_alpha: float = field(default=-0.3, metadata={"help": "initial log alpha (authors: -0.3)"})
    target_entropy: float = field(default=float("nan"), metadata={"help": "H_bar (default: -dim(plan))"})
    kl_weight: float = field(default=0.0, metadata={"help": "beta of E6's optional KL term (SPAC: 0.01; vision tasks: 0)"})
    image_size: int = field(default=256, metadata={"help": "training image size (paper: 256 for style)"})
    save_every: int = field(default=50, metadata={"help": "episodes between checkpoints"})
    save_buffer: bool = field(default=False, metadata={"help": "also save the replay buffer in checkpoints, so that "
                                                       "--resume continues bitwise as if never stopped (large at paper scale)"})
    # style transfer
    content_dir: str = field(default="", metadata={"help": "folder of content images, e.g. MS-COCO (default: built-in photos)"})
    style_image: str = field(default="", metadata={"help": "style image file (default: built-in 'swirls')"})
    vgg: str = field(default="auto", metadata={"help": "VGG-16 weights: auto, torchvision, hed or random (tests only)"})
    vgg_weights: str = field(default="", metadata={"help": "path of torchvision's vgg16-397923af.pth"})
    kappa: float = field(default=1e6, metadata={"help": "reward scale: r = -kappa * style loss (paper: 1e6)"})
    style_weight: float = field(default=1e5, metadata={"help": "lambda, style weight of J_Aux (paper: 1e5)"})
    step_anchor: float = field(default=0.0, metadata={"help": "mu: share of the content term measured against the step's input s_t "
                                                      "instead of the original content x (paper: 0; E14b)"})
    tv_weight: float = field(default=1e-7, metadata={"help": "(squared) total-variation weight of J_Aux (style beta: 1e-7; photo: 0.1; "
                                                     "digits, on the field: 1)"})
    # video style transfer
    temporal_weight: float = field(default=100.0, metadata={"help": "zeta, weight of the compound temporal term L_CT of J_Aux "
                                                            "(authors: 1e2; 0: the video model without it)"})
    # face inpainting and photo translation
    data_root: str = field(default="", metadata={"help": "inpaint: folder of faces, e.g. CelebA-HQ; photo: pix2pix aligned "
                                                        "folder; digits: MNIST idx files; register: 2-D OASIS subject folders "
                                                        "(default: built-in data)"})
    plan_dim: int = field(default=256, metadata={"help": "plan size P (paper figure: 256; authors' code: 512)"})
    width: int = field(default=32, metadata={"help": "base width of planner and actor (paper figure: 32; authors' code: 64)"})
    rec_weight: float = field(default=1.2, metadata={"help": "weight of the (inpaint: overlap-weighted) L1 in J_Aux (inpaint: 1.2; photo: 1)"})
    adv_weight: float = field(default=0.001, metadata={"help": "weight of the adversarial term in J_Aux (inpaint: 0.001; photo: 0.02)"})
    disc_lr: float = field(default=4e-5, metadata={"help": "discriminator learning rate (paper: 4e-5)"})
    gan_warmup: float = field(default=0.5, metadata={"help": "fraction of the run before the adversarial term starts (authors: 10,000 episodes)"})
    success_psnr: float = field(default=26.0, metadata={"help": "PSNR above which the episode succeeds: +10 reward, done (inpaint: 26; photo: 30)"})
    reward_scale: float = field(default=1.0, metadata={"help": "multiplies the PSNR reward (paper: 1; presets: 0.01)"})
    # photo translation
    direction: str = field(default="AtoB", metadata={"help": "which half of a pix2pix pair is the source",
                                                      "choices": ("AtoB", "BtoA")})
    init: str = field(default="source", metadata={"help": "y_0, the first output: the source (the authors' README) or "
                                                  "noise (their code)", "choices": ("source", "noise")})
    # digit transform and registration
    pair_mode: str = field(default="cross", metadata={"help": "digits: cross-class, same-class or a random affine copy; "
                                                      "register: atlas-to-subject or subject-to-subject",
                                                      "choices": ("cross", "same", "affine", "atlas", "subject")})
    max_step: float = field(default=0.5, metadata={"help": "largest displacement of one step, in pixels (paper: 0.5 for digits)"})
    success_dice: float = field(default=0.96, metadata={"help": "Dice above which the episode succeeds (digits: 0.96; "
                                                        "register: 1, never)"})
    kmeans: int = field(default=3, metadata={"help": "register: k, the classes of the k-means segmentation of the reward"})


class Parser(argparse.ArgumentParser):
    """argparse, but a bad flag is reported in one line (no usage block): see --help for that."""

    def error(self, message: str) -> None:
        self.exit(2, f"{self.prog}: error: {message}\n")


def parse_args(argv: list[str] | None = None) -> tuple[Args, dict]:
    """Flags from the Args fields; returns the resolved Args and the flags given explicitly."""
    parser = Parser(description=__doc__.split("\n")[0])
    for f in dataclasses.fields(Args):
        flag, kind = "--" + f.name.replace("_", "-"), type(f.default)
        help_text = f"{f.metadata['help']} [default: {f.default}]"
        if kind is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS, help=help_text)
        else:
            parser.add_argument(flag, type=kind, default=argparse.SUPPRESS, help=help_text,
                                choices=f.metadata.get("choices"))
    given = vars(parser.parse_args(argv))
    if given.get("device") == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device is available (use --device cpu or auto)")
    device = resolve_device(given.get("device", "auto"))
    preset = PRESETS[given.get("task", "style")]
    args = Args(**{**preset.get("all", {}), **preset[device.type], **given})
    for name in ("total_steps", "num_envs", "max_episode_steps", "test_steps", "buffer_size", "batch_size",
                 "update_every", "planner_every", "image_size", "save_every"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    for name in ("learning_starts", "num_envs"):  # a larger warm-up would never end; more environments
        if getattr(args, name) > args.buffer_size:  # than slots would write one slot twice in one add
            parser.error(f"--{name.replace('_', '-')} {getattr(args, name)} is larger than --buffer-size {args.buffer_size}")
    if args.image_size < 16:
        parser.error(f"--image-size {args.image_size}: must be at least 16")
    if args.task in ("style", "video", "register") and args.image_size % 4:
        parser.error(f"--image-size {args.image_size}: must be a multiple of 4 (the plan is H/4 x W/4)")
    if args.task == "register" and args.pair_mode not in ("atlas", "subject"):
        parser.error(f"--pair-mode {args.pair_mode}: --task register pairs are atlas or subject")
    if args.task == "digits" and args.pair_mode not in ("cross", "same", "affine"):
        parser.error(f"--pair-mode {args.pair_mode}: --task digits pairs are cross, same or affine")
    if args.kmeans < 2 or args.max_step <= 0:
        parser.error("--kmeans must be at least 2 and --max-step positive")
    if args.task == "digits" and args.image_size != 28:
        parser.error(f"--image-size {args.image_size}: --task digits works on MNIST's 28 x 28 digits")
    if args.task in ("inpaint", "photo") and args.image_size & (args.image_size - 1):
        parser.error(f"--image-size {args.image_size}: must be a power of two for --task {args.task} (32, 64, 128, ...)")
    if args.temporal_weight < 0:
        parser.error(f"--temporal-weight {args.temporal_weight}: must not be negative")
    if not 0 <= args.step_anchor <= 1:
        parser.error(f"--step-anchor {args.step_anchor}: must be between 0 and 1")
    if args.rl == "off":
        if given.get("max_episode_steps", 1) != 1:
            parser.error("--rl off trains the one-step model: --max-episode-steps must be 1 (or left out)")
        args.max_episode_steps = 1
    for name, tasks in (("data_root", ("inpaint", "photo", "digits", "register")), ("content_dir", ("style", "video")),
                        ("style_image", ("style", "video")), ("step_anchor", ("style", "video")),
                        ("temporal_weight", ("video",)), ("direction", ("photo",)), ("init", ("photo",)),
                        ("pair_mode", ("digits", "register")), ("max_step", ("digits", "register")),
                        ("success_dice", ("digits", "register")), ("kmeans", ("register",))):
        if name in given and args.task not in tasks:
            flag = "--" + name.replace("_", "-")
            parser.error(f"{flag} is for --task {' or '.join(tasks)}, not --task {args.task}")
    return args, given


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def seed_everything(seed: int, deterministic: bool) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(deterministic, warn_only=True)
    # Deterministic mode also fills every new tensor with NaN, a debugging aid that took 12-19 % of the CPU
    # time in our profiles (README, "Speed, memory and faults"); results are bitwise the same without it.
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
    return torch.autocast(device.type, torch.bfloat16, enabled=args.amp)


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
        extras["next_memory"] = env.memory = features[-1].float()        # h_t+1, carried to s_t+1
    next_state, reward, done = env.step(action)                          # A1.7: s_t+1, r_t, d_t
    transition = env.pack(dict(state=state, plan=plan, reward=reward, next_state=next_state, done=done,
                               **extras))                                # what D keeps: nothing rebuildable twice
    buffer.add({k: v[running] for k, v in transition.items()})          # A1.8: D <- D + transition
    return next_state, reward, done


def train(args: Args) -> tuple[str, dict]:
    device = resolve_device(args.device)
    seed_everything(args.seed, args.deterministic)
    task = build(args, device)
    env = task["env"]
    modules, log_alpha, target_entropy = initialise(args, task, device)   # A1.1
    buffer = ReplayBuffer(args.buffer_size, env.buffer_fields(args.image_size, task["plan_shape"]), device)  # A1.1: D
    print(buffer.estimate)                                               # checked before allocating: refuses what won't fit
    data_rng = torch.Generator().manual_seed(args.seed)
    sample_rng = torch.Generator(device=device).manual_seed(args.seed)
    generators = dict(data_rng=data_rng, sample_rng=sample_rng, **task.get("generators", {}))  # in checkpoints

    run = args.resume if os.path.isdir(args.resume) else os.path.dirname(args.resume) if args.resume else \
        os.path.join(args.run_dir, args.name or f"{args.task}-seed{args.seed}")
    os.makedirs(run, exist_ok=True)
    step = episode = updates = 0
    if args.resume:
        step, episode, updates = load_checkpoint(resume_path(args.resume), modules, log_alpha, generators, buffer)
    print_config(args, run, device, task)
    log = ProgressLog(os.path.join(run, "progress.csv"), resume_step=step if args.resume else None)
    checkpoint_path = os.path.join(run, "checkpoint.pt")

    def checkpoint() -> None:
        save_checkpoint(checkpoint_path, args, modules, log_alpha, step, episode, updates, generators,
                        buffer if args.save_buffer else None)

    bar = tqdm(total=args.total_steps, initial=step, desc=f"{args.task}", unit="step", dynamic_ncols=True,
               disable=not args.progress)
    start = time.time()
    # Ctrl-C and `kill` save and stop; SIGINT too, as shells start background jobs with SIGINT ignored
    handlers = {signum: signal.signal(signum, signal.default_int_handler) for signum in (signal.SIGINT, signal.SIGTERM)}
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
                if buffer.size >= args.learning_starts and step % args.update_every == 0:  # A1.9
                    updates += 1
                    gan_on = step >= args.gan_warmup * args.total_steps  # adversarial term after the warm-up
                    for k, v in update(args, task, buffer, modules, log_alpha, target_entropy, updates,
                                       sample_rng, gan_on).items():
                        stats.setdefault(k, []).append(v)
                    update_steps.append(step)
                if not running.any() or step >= args.total_steps:       # A1.13: end the episode
                    break
            episode += 1

            # Bookkeeping, apart from the algorithm: stop on a non-finite loss (before any checkpoint of
            # this episode), progress log, bar, checkpoints.
            check_finite(stats, update_steps, episode_return, step)
            row = {"episode": episode, "step": step, "transitions": buffer.size, "updates": updates,
                   "return": episode_return.mean().item(), "alpha": log_alpha.exp().item(),
                   "seconds": round(time.time() - start, 1),
                   **{k: torch.stack(v).mean().item() for k, v in stats.items()}}
            log.write(row)
            bar.set_postfix({k: f"{row[k]:.3g}" for k in ("return", "aux_loss", "alpha") if k in row})
            if episode % args.save_every == 0:
                checkpoint()
    except KeyboardInterrupt:
        bar.close()
        checkpoint()
        sys.exit(f"interrupted at step {step}: checkpoint saved, continue with --resume {run}")
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
        m["discriminator_opt"].step()
        out["disc_loss"] = loss_discriminator.detach()
    with amp():
        loss_aux, parts = env.auxiliary_loss(action, batch, discriminator)  # E9 with the task loss
    m["planner_opt"].zero_grad()
    m["actor_opt"].zero_grad()
    loss_aux.backward()
    m["planner_opt"].step()
    m["actor_opt"].step()
    out["aux_loss"] = loss_aux.detach()
    out.update(parts)

    # Adaptive stopping (ours, not in Algorithm 1): the reward head by E35 on the same minibatch, its own
    # loss and optimiser; states and plans come from D, so nothing flows back into planner, actor or critics
    if "reward_head" in m:
        with amp():
            loss_head = reward_head_loss(m["reward_head"](batch["state"], batch["plan"]), batch["reward"])  # E35
        m["reward_head_opt"].zero_grad()
        loss_head.backward()
        m["reward_head_opt"].step()
        out["head_loss"] = loss_head.detach()
    return out


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
    m["critic_opt"].step()
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
        m["planner_opt"].step()
        loss_temperature = temperature_loss(log_alpha, log_prob, target_entropy)  # E7
        m["alpha_opt"].zero_grad()
        loss_temperature.backward()
        m["alpha_opt"].step()
        out["planner_loss"], out["temperature_loss"] = loss_planner.detach(), loss_temperature.detach()
        out["log_prob"] = log_prob.detach().mean()
    planner.train()  # J_Aux (E9) runs in train mode: the only pass that moves the running statistics
    return out


def main(argv: list[str] | None = None) -> None:
    args, given = parse_args(argv)
    try:
        if args.resume:
            saved = read_checkpoint(resume_path(args.resume))["args"]
            args = Args(**{**saved, **given})  # the saved run's settings, with explicit flags on top
        run, task = train(args)
        from evaluate import final_report
        final_report(run, args, task)
    except (DataError, VGGError, CheckpointError, ReplayMemoryError, NonFiniteLoss) as e:
        sys.exit(f"error: {e}")


if __name__ == "__main__":
    main()
