"""The run's settings: the `Args` dataclass (paper defaults), its command line, and the device.

`train.py` and `evaluate.py` both read settings, so they live here, in neither script: `train.py`
parses the command line into `Args` (`parse_args`); `evaluate.py` rebuilds `Args` from a checkpoint and parses
its own flags, with their checks (`parse_evaluate_args`). A field's
`tasks` says which `--task` it is for: `--help` groups the flags by it, and a flag given for
another task is an error. What a `--task` preset changes is in tasks.py.
"""
from __future__ import annotations

import argparse
import dataclasses
import functools
from dataclasses import dataclass, field

import torch

from losses import layer_weights
from tasks import PRESETS

STYLE, GAN, FIELD = ("style", "video"), ("inpaint", "photo"), ("digits", "register")


def arg(default, help: str, tasks: tuple[str, ...] = (), choices: tuple | None = None, run: bool = False):
    """A field of Args: its default, --help text, the tasks it is for (none: every task), the choices."""
    return field(default=default, metadata=dict(help=help, tasks=tasks, choices=choices, run=run))


@dataclass
class Args:
    # the run (every task)
    task: str = arg("style", "task to train", choices=tuple(PRESETS), run=True)
    rl: str = arg("on", "on: RL-I2IT; off: the one-step ablation (J_Aux only, T_max 1, no critic)", choices=("on", "off"),
                  run=True)
    seed: int = arg(1, "seeds Python, NumPy and torch", run=True)
    device: str = arg("auto", "auto: CUDA when present", choices=("auto", "cpu", "cuda"), run=True)
    deterministic: bool = arg(True, "bitwise repeatable runs (torch deterministic algorithms)", run=True)
    run_dir: str = arg("runs", "parent folder of the run folder", run=True)
    name: str = arg("", "run folder name (default: TASK-seedSEED)", run=True)
    resume: str = arg("", "checkpoint file or run folder to continue from", run=True)
    progress: bool = arg(True, "show a progress bar (--no-progress: quiet, e.g. in notebooks)", run=True)
    amp: str = arg("auto", "bfloat16 autocast of the networks' forward passes: auto (on where the hardware has native "
                           "bfloat16: CUDA, and CPUs torch reports bf16 for, e.g. AVX512-BF16), on or off",
                   choices=("auto", "on", "off"), run=True)
    channels_last: bool = arg(False, "channels-last (NHWC) convolutions (for GPUs)", run=True)
    # Algorithm 1 and SAC (every task)
    total_steps: int = arg(2000, "environment steps (each steps all --num-envs episodes)")
    num_envs: int = arg(8, "episodes run at once as one batch (authors: 1)")
    max_episode_steps: int = arg(10, "T_max, steps per episode (paper: 10 for style)")
    test_steps: int = arg(10, "steps k at inference (paper: 1, 5, 10 shown)")
    buffer_size: int = arg(3000, "replay buffer capacity in transitions (paper: 3000 for style)")
    batch_size: int = arg(8, "minibatch size of every update (authors: 1 for style)")
    learning_starts: int = arg(80, "transitions collected before the first update (warm-up)")
    update_every: int = arg(1, "K: environment steps between updates")
    planner_every: int = arg(2, "critic updates per planner and temperature update")
    gamma: float = arg(0.99, "discount (paper: 0.99)")
    tau: float = arg(0.005, "soft target rate (paper: 0.005)")
    lr: float = arg(1e-4, "planner and actor learning rate (paper: 1e-4 for style)")
    lr_decay: str = arg("off", "planner and actor learning rate over the run: off (constant, the paper) or linear (from "
                               "--lr down to 0 at --total-steps; ours, difference 48)", choices=("off", "linear"))
    critic_lr: float = arg(1e-5, "critic learning rate (paper: 1e-5 for style)")
    head_lr: float = arg(1e-3, "learning rate of the reward head of adaptive stopping (ours, E35)")
    alpha_lr: float = arg(1e-4, "temperature learning rate")
    beta1: float = arg(0.9, "Adam beta1 of every optimiser (face code: 0.5)")
    beta2: float = arg(0.999, "Adam beta2 of every optimiser (face code: 0.9)")
    init_log_alpha: float = arg(-0.3, "initial log alpha (authors: -0.3)")
    target_entropy: float = arg(float("nan"), "H_bar (default: -dim(plan))")
    kl_weight: float = arg(0.0, "beta of E6's optional KL term (SPAC: 0.01; vision tasks: 0)")
    image_size: int = arg(256, "training image size (paper: 256 for style)")
    save_every: int = arg(50, "episodes between checkpoints")
    save_buffer: bool = arg(False, "also save the replay buffer in checkpoints, so that --resume continues bitwise as "
                                   "if never stopped (large at paper scale)")
    # style transfer and video style transfer
    content_dir: str = arg("", "folder of content images, e.g. MS-COCO (default: built-in photos)", STYLE)
    style_image: str = arg("", "style image file (default: built-in 'swirls')", STYLE)
    style_size: int = arg(0, "side of the style image the Gram targets are taken from (0: --image-size; references: "
                             "1 to 2 times the training crop)", STYLE)
    vgg: str = arg("auto", "VGG-16 weights: auto, torchvision, hed or random (tests only)", STYLE)
    vgg_weights: str = arg("", "path of torchvision's vgg16-397923af.pth", STYLE)
    kappa: float = arg(1e6, "reward scale: r = -kappa * style loss (paper: 1e6)", STYLE)
    style_weight: float = arg(1e5, "lambda, style weight of J_Aux (paper: 1e5)", STYLE)
    style_layer_weights: str = arg("1,1,1,1", "w_l, weights of relu1_2, relu2_2, relu3_3, relu4_3 in J_Aux's style "
                                              "term (paper: 1,1,1,1; ours, E14c)", STYLE)
    transition: str = arg("paper", "T(s, a): paper, s_t+1 = a_t (E10); residual, s_t+1 = s_t + a_t with the actor's "
                                   "last layer at zero, so that the first action keeps the photo (ours, E10b)", STYLE,
                          ("paper", "residual"))
    step_size: float = arg(0.0, "with --transition residual: eps > 0 bounds each step, s_t+1 = s_t + eps tanh(a_t), in "
                                "ImageNet-normalised units (1 = 0.23 of the pixel range; ours, E10c); 0: unbounded", STYLE)
    actor_blocks: int = arg(0, "residual blocks in the actor at H/4, on plan and skip, before its up-sampling (paper: "
                               "0; ours, difference 47)", ("style",))
    step_anchor: float = arg(0.0, "mu: share of the content term measured against the step's input s_t instead of "
                                  "the original content x (paper: 0; E14b)", STYLE)
    # video style transfer
    temporal_weight: float = arg(100.0, "zeta, weight of the compound temporal term L_CT of J_Aux (authors: 1e2; 0: "
                                        "the video model without it)", ("video",))
    # face inpainting and photo translation
    plan_dim: int = arg(256, "plan size P (paper figure: 256; authors' code: 512)", GAN)
    width: int = arg(32, "base width of planner and actor (paper figure: 32; authors' code: 64)", GAN)
    rec_weight: float = arg(1.2, "weight of the (inpaint: overlap-weighted) L1 in J_Aux (inpaint: 1.2; photo: 1)", GAN)
    adv_weight: float = arg(0.001, "weight of the adversarial term in J_Aux (inpaint: 0.001; photo: 0.02)", GAN)
    disc_lr: float = arg(4e-5, "discriminator learning rate (paper: 4e-5)", GAN)
    gan_warmup: float = arg(0.5, "fraction of the run before the adversarial term starts (authors: 10,000 episodes)",
                            GAN)
    success_psnr: float = arg(26.0, "PSNR above which the episode succeeds: +10 reward, done (inpaint: 26; photo: 30)",
                              GAN)
    # photo translation
    direction: str = arg("AtoB", "which half of a pix2pix pair is the source", ("photo",), ("AtoB", "BtoA"))
    init: str = arg("source", "y_0, the first output: the source (the authors' README) or noise (their code)",
                    ("photo",), ("source", "noise"))
    # digit transform and registration
    pair_mode: str = arg("cross", "digits: cross-class, same-class or a random affine copy; register: atlas-to-subject "
                                  "or subject-to-subject", FIELD, ("cross", "same", "affine", "atlas", "subject"))
    max_step: float = arg(0.5, "largest displacement of one step, in pixels (paper: 0.5 for digits)", FIELD)
    success_dice: float = arg(0.96, "Dice above which the episode succeeds (digits: 0.96; register: 1, never)", FIELD)
    # registration
    kmeans: int = arg(3, "k, the classes of the k-means segmentation of the reward", ("register",))
    # flags of several tasks
    data_root: str = arg("", "inpaint: folder of faces, e.g. CelebA-HQ; photo: pix2pix aligned folder; digits: MNIST "
                             "idx files; register: 2-D OASIS subject folders (default: built-in data)", GAN + FIELD)
    reward_scale: float = arg(1.0, "multiplies the reward (paper: 1; presets: 0.01)", ("inpaint", "photo", "digits",
                                                                                      "register"))
    tv_weight: float = arg(1e-7, "(squared) total-variation weight of J_Aux (style beta: 1e-7; photo: 0.1; digits, "
                                 "register, on the field: 1)", ("style", "video", "photo", "digits", "register"))


class Parser(argparse.ArgumentParser):
    """argparse, but a bad flag is reported in one line (no usage block): see --help for that."""

    def error(self, message: str) -> None:
        self.exit(2, f"{self.prog}: error: {message}\n")


def group_title(f: dataclasses.Field) -> str:
    if f.metadata["run"]:
        return "the run (every task)"
    if not f.metadata["tasks"]:
        return "Algorithm 1 and SAC (every task)"
    return "--task " + ", ".join(f.metadata["tasks"])


def parse_args(argv: list[str] | None = None) -> tuple[Args, dict]:
    """Flags from the Args fields, grouped by task in --help; returns the resolved Args and the flags given."""
    parser = Parser(usage="python train.py [--task {%s}] [FLAGS]" % ",".join(PRESETS),
                    description="Train RL-I2IT (Algorithm 1) on one task. Flags are grouped by the tasks they are for; "
                                "the --task preset (tasks.py) replaces some defaults shown, and explicit flags "
                                "override the preset.")
    groups: dict[str, argparse._ArgumentGroup] = {}
    for f in dataclasses.fields(Args):
        title = group_title(f)
        if title not in groups:
            groups[title] = parser.add_argument_group(title)
        group = groups[title]
        flag, kind = "--" + f.name.replace("_", "-"), type(f.default)
        help_text = f"{f.metadata['help']} [default: {f.default}]"
        if kind is bool:
            group.add_argument(flag, action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS, help=help_text)
        else:
            group.add_argument(flag, type=kind, default=argparse.SUPPRESS, help=help_text,
                               choices=f.metadata["choices"])
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
    if args.transition == "paper" and "step_size" not in given:
        args.step_size = 0.0  # the preset's bound is for its residual step; E10 has none
    if args.step_size < 0 or (args.step_size > 0 and args.transition != "residual"):
        parser.error(f"--step-size {args.step_size}: must not be negative, and bounds only --transition residual")
    try:
        layer_weights(args.style_layer_weights)
    except ValueError:
        parser.error(f"--style-layer-weights {args.style_layer_weights}: give four non-negative numbers, e.g. 1,4,16,64")
    if args.style_size and args.style_size < 16:
        parser.error(f"--style-size {args.style_size}: must be at least 16 (or 0: the image size)")
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
    if args.actor_blocks < 0:
        parser.error(f"--actor-blocks {args.actor_blocks}: must not be negative")
    if args.rl == "off":
        if given.get("max_episode_steps", 1) != 1:
            parser.error("--rl off trains the one-step model: --max-episode-steps must be 1 (or left out)")
        args.max_episode_steps = 1
    for f in dataclasses.fields(Args):  # a flag of another task would be silently ignored
        if f.name in given and f.metadata["tasks"] and args.task not in f.metadata["tasks"]:
            flag, tasks = "--" + f.name.replace("_", "-"), f.metadata["tasks"]
            parser.error(f"{flag} is for --task {' or '.join(tasks)}, not --task {args.task}")
    return args, given


def parse_evaluate_args(argv: list[str] | None = None) -> tuple[argparse.Namespace, float]:
    """evaluate.py's flags and their checks (a bad combination is a one-line error); returns the options and
    --stop style-loss's threshold (0 otherwise)."""
    parser = Parser(description="Evaluate an RL-I2IT agent step by step.")
    parser.add_argument("--task", default=None, choices=list(PRESETS), help="task (default: the checkpoint's)")
    parser.add_argument("--checkpoint", default="", help="checkpoint.pt written by train.py, or its run folder")
    parser.add_argument("--image", default="", help="style: stylise this one photo (any size) instead of the held-out "
                                                    "images: one PNG per step and a strip")
    parser.add_argument("--video", nargs="?", const="builtin", default="",
                        help="style or video: stylise a video frame after frame: a folder of frames (sorted by name) "
                             "or an animated GIF; no path: the built-in clip. Writes frames, GIFs, a strip and the "
                             "temporal error (built-in clip, or MPI-Sintel's final/<scene> with its flow/ and occlusions/)")
    parser.add_argument("--pair", nargs=2, default=None, metavar=("FIXED", "MOVING"),
                        help="register: one pair of 2-D OASIS subject folders (slice_norm.nii.gz, slice_seg24.nii.gz) "
                             "instead of the held-out pairs")
    parser.add_argument("--baseline", default="", metavar="RUN",
                        help="also evaluate this run's checkpoint (same task, e.g. its --rl off model) on the same "
                             "images, and print both tables")
    parser.add_argument("--compare", nargs="+", default=None, metavar="RUN",
                        help="print mean and spread over seeds of finished run folders, and exit")
    parser.add_argument("--planner-weights", default="", help="style planner file in the authors' released format")
    parser.add_argument("--actor-weights", default="", help="style actor file in the authors' released format")
    parser.add_argument("--steps", type=int, nargs="+", default=None, help="steps k to show [1 5 10]")
    parser.add_argument("--stop", nargs="+", default=None, metavar="RULE",
                        help="let each image stop by itself instead of --steps: 'adaptive' (the reward head: stop when "
                             "no gain is expected from another step, E36) or 'style-loss X' (style, video: stop when the "
                             "style loss is below X); prints the table against the best fixed k and the oracle")
    parser.add_argument("--max-steps", type=int, default=0, help="--stop: the most steps an image may take [the run's --test-steps]")
    parser.add_argument("--num-images", type=int, default=0, help="held-out images [style: 4, others: all]")
    parser.add_argument("--out", default="", help="output folder [the checkpoint's folder, or eval/]")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--image-size", type=int, default=0,
                        help="override the image size (with --image: the photo's short side) [the training size; "
                             "released weights: 256]")
    for name in ("content-dir", "style-image", "vgg", "data-root", "direction"):
        parser.add_argument(f"--{name}", default=None, help=f"override the run's --{name}")
    opts = parser.parse_args(argv)
    if opts.compare:
        return opts, 0.0
    if bool(opts.checkpoint) == bool(opts.planner_weights or opts.actor_weights):
        parser.error("give either --checkpoint or both --planner-weights and --actor-weights")
    if not opts.checkpoint and not (opts.planner_weights and opts.actor_weights):
        parser.error("--planner-weights and --actor-weights go together")
    if not opts.checkpoint and opts.task not in (None, "style"):
        parser.error("released weights are read for --task style only; use --checkpoint")
    if sum(map(bool, (opts.video, opts.image, opts.pair))) > 1:
        parser.error("--image, --video and --pair: one at a time")
    if opts.baseline and (opts.video or opts.image or not opts.checkpoint):
        parser.error("--baseline compares two checkpoints on the held-out images (not with --image, --video or "
                     "released weights)")
    threshold = 0.0
    if opts.stop:
        rule = opts.stop[0]
        if rule not in ("adaptive", "style-loss") or len(opts.stop) != (1 if rule == "adaptive" else 2):
            parser.error(f"--stop {' '.join(opts.stop)}: give 'adaptive' or 'style-loss X'")
        if rule == "style-loss":
            try:
                threshold = float(opts.stop[1])
            except ValueError:
                parser.error(f"--stop style-loss {opts.stop[1]}: the threshold must be a number")
            if not threshold >= 0:
                parser.error(f"--stop style-loss {opts.stop[1]}: the threshold must not be negative")
        if opts.steps is not None:
            parser.error("--stop decides each image's steps: give --max-steps, not --steps")
        if opts.image or opts.video or opts.pair or opts.baseline or not opts.checkpoint:
            parser.error("--stop works on the held-out images of one checkpoint (not with --image, --video, --pair, "
                         "--baseline or released weights)")
    elif opts.max_steps:
        parser.error("--max-steps goes with --stop; fixed steps are --steps")
    if opts.max_steps < 0:
        parser.error("--max-steps must be positive")
    opts.steps = opts.steps or [1, 5, 10]
    if min(opts.steps) < 1 or opts.num_images < 0:
        parser.error("--steps must be positive and --num-images not negative")
    if opts.image_size and (opts.image_size < 16 or opts.image_size % 4):
        parser.error(f"--image-size {opts.image_size}: must be a multiple of 4, at least 16")
    return opts, threshold


@functools.lru_cache(maxsize=None)
def resolve_amp(choice: str | bool, device_type: str) -> tuple[bool, str]:
    """--amp: (bfloat16 autocast on?, why). `auto` asks the hardware; checkpoints of older runs hold a bool."""
    if choice in ("on", "off", True, False):
        on = choice in ("on", True)
        return on, f"--amp {'on' if on else 'off'}"
    native = torch.cuda.is_bf16_supported() if device_type == "cuda" else torch.ops.mkldnn._is_mkldnn_bf16_supported()
    return native, f"auto: this {'GPU' if device_type == 'cuda' else 'CPU'} has {'' if native else 'no '}native bfloat16"


def resolve_device(name: str, local_rank: int | None = None) -> torch.device:
    """--device; under torchrun (`local_rank` given) a GPU is this rank's own, cuda:LOCAL_RANK."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name, local_rank) if name == "cuda" and local_rank is not None else torch.device(name)
