"""The tasks: each one's `--task` presets, networks, environment and data, wired in one place.

`train.py` runs Algorithm 1 the same way for every task; what differs between tasks is here:
`PRESETS` (hyperparameters per task and device), `networks` (planner and actor) and `build` (the
networks on the device, the environment, the data and, for the GAN tasks, the discriminator).
"""
from __future__ import annotations

import os

import torch

from actor import VectorActor, MapActor, VideoActor
from critic import Critic, RewardHead
from data import ContentImages, DigitPairs, FaceImages, PairedImages, load_style_image
from discriminator import Discriminator
from env import InpaintEnv, PhotoEnv, RegistrationEnv, StyleEnv, VideoEnv
from planner import VectorPlanner, MapPlanner, VideoPlanner
from extras.datasets import make_edges2photo
from extras.registration import RegistrationPairs
from vgg import load_vgg16

# --task presets: explicit flags override them. "all": the task's paper values on any device; "cpu" is
# sized for ~10 minutes on 2 cores and departs from the paper where docs/differences.md says
# so (its save_every keeps a checkpoint every half minute or so); "cuda" is paper scale. --amp is auto
# (bfloat16 where the hardware has it) except in the CPU presets it made worse (docs/speed-and-faults.md).
PRESETS = {
    "style": {
        "all": dict(reward_scale=1e6),
        "cpu": dict(image_size=64, num_envs=8, batch_size=8, total_steps=1700, max_episode_steps=4, test_steps=4,
                    lr=3e-3, critic_lr=1e-4, learning_starts=32, buffer_size=3000, reward_scale=1e3, style_weight=4e4,
                    init_log_alpha=-10.0, save_every=20, transition="residual", step_size=0.6, style_size=64,
                    lr_decay="linear"),  # the style image at the photos' size: its texture (differences 45, 48)
        "cuda": dict(image_size=256, num_envs=16, batch_size=8, total_steps=40000, learning_starts=1000),
    },
    "video": {  # trained on single images like style; the cpu preset is smaller and its zeta lower (docs/video-style-transfer.md)
        "all": dict(reward_scale=1e6),
        "cpu": dict(image_size=64, num_envs=4, batch_size=4, total_steps=128, max_episode_steps=4, test_steps=4,
                    lr=2e-3, critic_lr=1e-4, learning_starts=16, buffer_size=3000, reward_scale=1e4, style_weight=3e4,
                    init_log_alpha=-5.0, save_every=8, temporal_weight=1.0, transition="residual", step_size=0.5,
                    style_size=128, amp="off"),  # bfloat16 raised the warping error (docs/video-style-transfer.md)
        "cuda": dict(image_size=256, num_envs=16, batch_size=8, total_steps=40000, learning_starts=1000,
                     temporal_weight=100.0),
    },
    "inpaint": {
        "all": dict(beta1=0.5, beta2=0.9, save_every=100, reward_scale=0.01, kl_weight=0.01),
        "cpu": dict(image_size=64, num_envs=16, batch_size=32, total_steps=1500, max_episode_steps=5, test_steps=5,
                    buffer_size=5000, learning_starts=256, lr=1e-3, critic_lr=1e-4, alpha_lr=1e-3, disc_lr=2e-4,
                    init_log_alpha=-5.0, save_every=20, amp="off"),  # bfloat16: hole PSNR 1.8 dB lower
        "cuda": dict(image_size=128, num_envs=32, batch_size=32, total_steps=100000, max_episode_steps=20,
                     test_steps=15, buffer_size=100000, learning_starts=2000, lr=2e-4, critic_lr=2e-4, alpha_lr=2e-4),
    },
    "photo": {
        "all": dict(rec_weight=1.0, adv_weight=0.02, success_psnr=30.0, beta1=0.5, beta2=0.9,
                    reward_scale=0.01, kl_weight=0.01, save_every=100),
        "cpu": dict(image_size=64, num_envs=16, batch_size=16, total_steps=1500, max_episode_steps=5, test_steps=5,
                    buffer_size=5000, learning_starts=256, lr=1e-3, critic_lr=1e-4, alpha_lr=1e-3, disc_lr=2e-4,
                    init_log_alpha=-5.0, save_every=20),  # --amp auto: bfloat16 did better (docs/speed-and-faults.md)
        "cuda": dict(image_size=128, num_envs=16, batch_size=16, total_steps=100000, max_episode_steps=10,
                     test_steps=5, buffer_size=5000, learning_starts=1000, lr=2e-4, critic_lr=2e-4, alpha_lr=2e-4),
    },
    "digits": {
        "all": dict(image_size=28, reward_scale=0.01, kl_weight=0.01, test_steps=30, save_every=100),
        "cpu": dict(num_envs=32, batch_size=32, total_steps=2000, max_episode_steps=30, buffer_size=20000,
                    learning_starts=256, lr=1e-3, critic_lr=1e-4, alpha_lr=1e-3, init_log_alpha=-5.0, save_every=5,
                    amp="off"),  # bfloat16: the Dice fell with the steps, to 0.01 at step 30
        "cuda": dict(num_envs=64, batch_size=64, total_steps=100000, max_episode_steps=100, buffer_size=100000,
                     learning_starts=2000, lr=1e-4, critic_lr=1e-4, alpha_lr=1e-4),
    },
    "register": {  # the digits' settings, scaled to 48 x 48 images on the CPU (docs/registration.md)
        "all": dict(pair_mode="atlas", reward_scale=0.01, kl_weight=0.01, success_dice=1.0),
        "cpu": dict(image_size=48, max_step=1.0, num_envs=16, batch_size=8, total_steps=500, max_episode_steps=8,
                    test_steps=10, buffer_size=20000, learning_starts=128, lr=1e-3, critic_lr=1e-4, alpha_lr=1e-3,
                    init_log_alpha=-5.0, save_every=10, amp="off"),  # bfloat16: a tie (seed 1 better, 2 worse)
        "cuda": dict(image_size=128, max_step=2.0, num_envs=64, batch_size=64, total_steps=100000, max_episode_steps=10,
                     test_steps=10, buffer_size=100000, learning_starts=2000, lr=1e-4, critic_lr=1e-4, alpha_lr=1e-4),
    },
}


BUILTIN_PAIRS = os.path.join("builtin", "edges2photo")  # where --task photo writes its built-in pairs

STATE_CHANNELS = {"style": 3, "video": 3, "inpaint": 3, "photo": 6, "digits": 2, "register": 2}  # photo: source and output;
# digits and register: fixed, moved


def networks(args) -> tuple[torch.nn.Module, torch.nn.Module]:
    """The task's planner and actor (on the CPU); build() and benchmark.py's size table use it."""
    residual = args.transition == "residual"  # O1: the actor starts at the zero action
    if args.task == "style":
        return MapPlanner(), MapActor(zero_init=residual)
    if args.task == "video":  # the style networks with a step-wise GRU in the planner, a frame-wise one in the actor
        return VideoPlanner(), VideoActor(zero_init=residual)
    if args.task in ("digits", "register"):  # the style networks with 2 channels: a 1 x H/4 x W/4 plan (7 x 7 for
        # a digit, 16 x 16 for a 64 x 64 image), a bounded 2-channel field
        return MapPlanner(2), MapActor(2, tanh_scale=args.max_step)
    planner = VectorPlanner(STATE_CHANNELS[args.task], args.image_size, args.plan_dim, args.width)
    actor = VectorActor(planner.widths, args.plan_dim, patch=args.task == "inpaint", tanh=args.task == "photo")
    return planner, actor


def build(args, device: torch.device) -> dict:
    """Networks, environment and data of the task: the only place where tasks differ."""
    size = args.image_size
    if args.task in ("style", "video"):
        vgg = load_vgg16(args.vgg, args.vgg_weights or None).to(device)
        style = load_style_image(args.style_image or None, args.style_size or size).to(device)
        planner, actor = networks(args)  # after the VGG, as before: the seeded initialisation is unchanged
        options = dict(residual=args.transition == "residual", step_size=args.step_size,  # O1, O2
                       layer_weights=tuple(float(w) for w in args.style_layers.split(",")))
        if args.task == "style":
            env = StyleEnv(vgg, style, args.reward_scale, args.style_weight, args.tv_weight, **options)
        else:  # the temporal term (E31) runs the networks on a synthetic next frame
            env = VideoEnv(vgg, style, planner, actor, args.reward_scale, args.style_weight, args.tv_weight,
                           args.temporal_weight, seed=args.seed, device=device, **options)
        task = dict(vgg=vgg, style=style, env=env, planner=planner, actor=actor,
                    train_data=ContentImages(args.content_dir or None, "train", size),
                    test_data=ContentImages(args.content_dir or None, "test", size))
        if args.task == "video":
            task["generators"] = dict(env_rng=env.generator)  # the synthetic flows
    elif args.task == "photo":
        planner, actor = networks(args)
        env = PhotoEnv(args.rec_weight, args.adv_weight, args.tv2_weight, args.success_psnr,
                       reward_scale=args.reward_scale, init=args.init, seed=args.seed, device=device)
        root = args.data_root or make_edges2photo(BUILTIN_PAIRS)
        task = dict(env=env, planner=planner, actor=actor, generators=dict(env_rng=env.generator),  # y_0's noise
                    discriminator=Discriminator(3, size).to(device),
                    train_data=PairedImages(root, "train", size, args.direction),
                    test_data=PairedImages(root, "test", size, args.direction))
    elif args.task == "digits":
        planner, actor = networks(args)
        task = dict(env=RegistrationEnv(args.max_step, args.success_dice, args.smooth_weight, reward_scale=args.reward_scale),
                    planner=planner, actor=actor, train_data=DigitPairs(args.data_root or None, "train", args.pair_mode),
                    test_data=DigitPairs(args.data_root or None, "test", args.pair_mode))
    elif args.task == "register":
        planner, actor = networks(args)
        env = RegistrationEnv(args.max_step, args.success_dice, args.smooth_weight, reward_scale=args.reward_scale,
                              classes=args.kmeans)
        task = dict(env=env, planner=planner, actor=actor,
                    train_data=RegistrationPairs(args.data_root or None, "train", size, args.kmeans, args.pair_mode),
                    test_data=RegistrationPairs(args.data_root or None, "test", size, args.kmeans, args.pair_mode))
    else:  # inpaint
        planner, actor = networks(args)
        env = InpaintEnv(size, args.rec_weight, args.adv_weight, args.success_psnr, reward_scale=args.reward_scale)
        task = dict(env=env, planner=planner, actor=actor,
                    discriminator=Discriminator(3, env.end - env.start).to(device),
                    train_data=FaceImages(args.data_root or None, "train", size),
                    test_data=FaceImages(args.data_root or None, "test", size))
    task["planner"], task["actor"] = task["planner"].to(device), task["actor"].to(device)
    task["plan_shape"] = task["planner"].plan_shape(size)
    task["critic"] = Critic(STATE_CHANNELS[args.task], size, task["plan_shape"]).to(device) if args.rl == "on" else None
    with torch.random.fork_rng(devices=[]):  # its own seed: every other network's numbers stay as they were without it
        torch.manual_seed(args.seed + 1)
        task["reward_head"] = RewardHead(STATE_CHANNELS[args.task], size).to(device)  # O3, O4
    return task
