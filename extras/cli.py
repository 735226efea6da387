"""The command lines, kept apart from the settings themselves (config.py): train.py's (`parse_args`: a flag for
each Args field marked `flag=True`, grouped, and `--set NAME=VALUE` for the rest; `check` refuses settings
that cannot run, in one line each) and evaluate.py's (`parse_evaluate_args`).
"""
from __future__ import annotations

import argparse
import dataclasses
import math
import os
import re

import torch

from extras.memory import GiB, available_memory
from config import Args, resolve_device
from tasks import PRESETS, STATE_CHANNELS

GROUPS = {"run": "the run", "algorithm": "Algorithm 1 and SAC (every task)", "data": "data and weights"}


class Parser(argparse.ArgumentParser):
    """argparse, but a bad flag is reported in one line (no usage block): see --help for that; and a negative
    number in exponent notation (--lr -1e-3) is a value, not a flag."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._negative_number_matcher = re.compile(r"^-(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$")

    def error(self, message: str) -> None:
        self.exit(2, f"{self.prog}: error: {message}\n")


def flag_name(name: str) -> str:
    return "--" + name.replace("_", "-")


def group_title(f: dataclasses.Field) -> str:
    if f.metadata["tasks"] and f.metadata["group"] == "algorithm":
        return "--task " + ", ".join(f.metadata["tasks"])
    return GROUPS[f.metadata["group"]]


def parse_value(f: dataclasses.Field, text: str):
    """--set NAME=VALUE: the text as the field's type (bool: true/false); ValueError if it is not one."""
    kind = type(f.default)
    if kind is bool:
        if text.lower() not in ("true", "false"):
            raise ValueError(text)
        return text.lower() == "true"
    value = kind(text)
    if f.metadata["choices"] and value not in f.metadata["choices"]:
        raise ValueError(text)
    return value


def settings(parser: Parser, pairs: list[str]) -> dict:
    """The fields of --set NAME=VALUE ..., checked: a known field that has no flag of its own, a value of its type."""
    fields, out = {f.name: f for f in dataclasses.fields(Args)}, {}
    for pair in pairs:
        name, sep, text = pair.partition("=")
        f = fields.get(name.replace("-", "_"))
        if not sep or f is None:
            parser.error(f"--set {pair}: give NAME=VALUE with NAME a field of Args (config.py), e.g. --set beta1=0.5")
        if f.metadata["flag"]:
            parser.error(f"--set {pair}: {f.name} has a flag of its own, {flag_name(f.name)}")
        try:
            out[f.name] = parse_value(f, text)
        except ValueError:
            kind = "true or false" if type(f.default) is bool else \
                f"one of {', '.join(map(str, f.metadata['choices']))}" if f.metadata["choices"] else type(f.default).__name__
            parser.error(f"--set {pair}: {f.name} takes {kind}")
    return out


def make_parser() -> Parser:
    """train.py's command line: the flags of the Args fields with flag=True, grouped, and --set for the rest."""
    parser = Parser(allow_abbrev=False, usage="python train.py [--task {%s}] [FLAGS]" % ",".join(PRESETS),
                    description="Train RL-I2IT (Algorithm 1) on one task. The --task preset (tasks.py) replaces some "
                                "defaults shown, and explicit flags override the preset.",
                    epilog="Every other field of Args (config.py) holds a preset's value with its paper default "
                           "(Adam betas, gamma, tau, the critic's, temperature's and discriminator's learning rates, "
                           "loss weights, checkpoint interval, ...): set one with --set NAME=VALUE. A run's "
                           "config.json lists them all.")
    groups: dict[str, argparse._ArgumentGroup] = {}
    for f in dataclasses.fields(Args):
        if not f.metadata["flag"]:
            continue
        title = group_title(f)
        group = groups.get(title) or groups.setdefault(title, parser.add_argument_group(title))
        help_text = f"{f.metadata['help']}" + (f" [default: {f.default}]" if f.default != "" else "")
        if type(f.default) is bool:
            group.add_argument(flag_name(f.name), action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS,
                               help=help_text)
        else:
            group.add_argument(flag_name(f.name), type=type(f.default), default=argparse.SUPPRESS, help=help_text,
                               choices=f.metadata["choices"])
    parser.add_argument_group("every other setting").add_argument(
        "--set", nargs="+", action="extend", default=[], metavar="NAME=VALUE",
        help="any other field of Args, e.g. --set beta1=0.5 critic_lr=1e-4")
    return parser


def parse_args(argv: list[str] | None = None) -> tuple[Args, dict]:
    """The command line as the resolved Args (preset, then the flags given); also the fields given."""
    parser = make_parser()
    namespace = vars(parser.parse_args(argv))
    given = {**settings(parser, namespace.pop("set")), **namespace}
    if given.get("device") == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device is available (use --device cpu or auto)")
    device = resolve_device(given.get("device", "auto"))
    preset = PRESETS[given.get("task", "style")]
    args = Args(**{**preset.get("all", {}), **preset[device.type], **given})
    if args.transition == "paper" and "step_size" not in given:
        args.step_size = 0.0  # the preset's bound is for its residual step; E10 has none
    if args.rl == "off":
        if given.get("max_episode_steps", 1) != 1:
            parser.error("--rl off trains the one-step model: --max-episode-steps must be 1 (or left out)")
        args.max_episode_steps = 1
    check(args, given, parser.error)
    return args, given


SEED_MAX = 2 ** 32 - 1  # NumPy's seeds
MAX_TEST_STEPS = 1000   # the final evaluation keeps the images of every step
RUN_FILES = ("checkpoint.pt", "progress.csv", "config.json")  # a folder holding one of these holds a run
# Each rule: (fields, test, what the value must be). Every float must be finite besides (target_entropy: nan
# is its default, -dim(plan)).
RULES = [
    (("total_steps", "num_envs", "max_episode_steps", "test_steps", "buffer_size", "batch_size", "update_every",
      "planner_every", "save_every", "plan_dim", "width"), lambda v: v >= 1, "at least 1"),
    (("learning_starts",), lambda v: v >= 0, "at least 0"),
    (("seed",), lambda v: 0 <= v <= SEED_MAX, f"from 0 to {SEED_MAX}"),
    (("lr", "critic_lr", "alpha_lr", "head_lr", "disc_lr", "reward_scale", "max_step"), lambda v: v > 0, "positive"),
    (("beta1", "beta2"), lambda v: 0 <= v < 1, "in [0, 1)"),
    (("gamma", "gan_warmup", "success_dice"), lambda v: 0 <= v <= 1, "in [0, 1]"),
    (("tau",), lambda v: 0 < v <= 1, "in (0, 1]"),
    (("kl_weight", "style_weight", "tv_weight", "temporal_weight", "rec_weight", "adv_weight", "tv2_weight",
      "smooth_weight", "step_size"), lambda v: v >= 0, "at least 0"),
    (("kmeans",), lambda v: 2 <= v <= 16, "from 2 to 16"),
    (("test_steps",), lambda v: v <= MAX_TEST_STEPS, f"at most {MAX_TEST_STEPS} (the final evaluation keeps every step)"),
]


def shown(args: Args, name: str) -> str:
    """A setting as the user gave it: `--lr 0.001` or `--set gamma=0.9`."""
    f = next(f for f in dataclasses.fields(Args) if f.name == name)
    return f"{flag_name(name)} {getattr(args, name)}" if f.metadata["flag"] else f"--set {name}={getattr(args, name)}"


def feature_bytes(side: int) -> int:
    """Bytes of VGG-16's float32 activations up to relu4_3 for one side x side image (forward only)."""
    return side * side * 4 * (64 * 4 + 128 * 4 // 4 + 256 * 6 // 16 + 512 * 6 // 64)


def check(args: Args, given: dict, error) -> None:
    """The checks of a run's settings, before anything is built; `error(message)` reports one in one line."""
    for f in dataclasses.fields(Args):  # a setting of another task would be silently ignored
        if f.name in given and f.metadata["tasks"] and args.task not in f.metadata["tasks"]:
            name = flag_name(f.name) if f.metadata["flag"] else f"--set {f.name}"
            error(f"{name} is for --task {' or '.join(f.metadata['tasks'])}, not --task {args.task}")
        value = getattr(args, f.name)
        if isinstance(value, float) and not math.isfinite(value) and not (f.name == "target_entropy" and value != value):
            error(f"{shown(args, f.name)}: must be a finite number")
    for names, test, what in RULES:
        for name in names:
            if not test(getattr(args, name)):
                error(f"{shown(args, name)}: must be {what}")
    for name in ("learning_starts", "num_envs"):  # a larger warm-up would never end; more environments
        if getattr(args, name) > args.buffer_size:  # than slots would write one slot twice in one add
            error(f"{flag_name(name)} {getattr(args, name)} is larger than --buffer-size {args.buffer_size}")
    if args.image_size < 16:
        error(f"--image-size {args.image_size}: must be at least 16")
    if args.task in ("style", "video", "register") and args.image_size % 4:
        error(f"--image-size {args.image_size}: must be a multiple of 4 (the plan is H/4 x W/4)")
    if args.step_size > 0 and args.transition != "residual":
        error(f"--step-size {args.step_size}: bounds only --transition residual")
    try:
        weights = [float(w) for w in args.style_layers.split(",")]
    except ValueError:
        weights = []
    if len(weights) != 4 or not all(math.isfinite(w) and w >= 0 for w in weights) or not any(weights):
        error(f"--set style_layers={args.style_layers}: give 4 numbers, at least 0, not all 0, e.g. 1,1,1,1")
    if args.style_size and args.style_size < 16:
        error(f"--set style_size={args.style_size}: must be at least 16 (or 0: the image size)")
    if args.task == "register" and args.pair_mode not in ("atlas", "subject"):
        error(f"--pair-mode {args.pair_mode}: --task register pairs are atlas or subject")
    if args.task == "digits" and args.pair_mode not in ("cross", "same", "affine"):
        error(f"--pair-mode {args.pair_mode}: --task digits pairs are cross, same or affine")
    if args.task == "digits" and args.image_size != 28:
        error(f"--image-size {args.image_size}: --task digits works on MNIST's 28 x 28 digits")
    if args.task in ("inpaint", "photo") and args.image_size & (args.image_size - 1):
        error(f"--image-size {args.image_size}: must be a power of two for --task {args.task} (32, 64, 128, ...)")
    check_sizes(args, error)
    check_names(args, error)


def check_sizes(args: Args, error) -> None:
    """Sizes whose memory can be told before anything is built: the replay buffer stores at least two images
    of the state's channels a transition (8 bits a value); VGG-16 holds the style image's features."""
    free = available_memory(resolve_device(args.device))
    if free is None:
        return
    need = args.buffer_size * 2 * STATE_CHANNELS[args.task] * args.image_size ** 2
    if need > 0.9 * free:
        error(f"--buffer-size {args.buffer_size:,} at --image-size {args.image_size}: the replay buffer alone needs at "
              f"least {need / GiB:,.1f} GiB, and {free / GiB:.1f} GiB are free")
    if args.task in ("style", "video"):
        for name, side, n in (("style_size", args.style_size, 1), ("image_size", args.image_size, args.batch_size)):
            if n * feature_bytes(side) > 0.9 * free:
                error(f"{shown(args, name)}: VGG-16's features of {n} such image(s) need "
                      f"{n * feature_bytes(side) / GiB:,.1f} GiB, and {free / GiB:.1f} GiB are free")


def check_names(args: Args, error) -> None:
    """--name is one path component; --run-dir a folder (or none yet); a folder that holds a run is not
    overwritten unless asked (--resume continues it)."""
    if args.name and (args.name in (".", "..") or os.path.basename(args.name) != args.name
                      or (os.altsep and os.altsep in args.name)):
        error(f"--name {args.name}: must be a folder name, not a path (the run goes in --run-dir)")
    if os.path.exists(args.run_dir) and not os.path.isdir(args.run_dir):
        error(f"--run-dir {args.run_dir} is a file, not a folder")
    run = os.path.join(args.run_dir, args.name or f"{args.task}-seed{args.seed}")
    if not args.resume and not args.overwrite and int(os.environ.get("RANK", "0")) == 0 \
            and any(os.path.exists(os.path.join(run, f)) for f in RUN_FILES):
        error(f"{run} holds a run: continue it with --resume {run}, start another with --name NEW, or replace it "
              "with --set overwrite=true")


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
                             "no gain is expected from another step, O4) or 'style-loss X' (style, video: stop when the "
                             "style loss is below X); prints the table against the best fixed k and the oracle")
    parser.add_argument("--max-steps", type=int, default=0, help="--stop: the most steps an image may take [the run's --test-steps]")
    parser.add_argument("--num-images", type=int, default=0, help="held-out images [style: 4, others: all]")
    parser.add_argument("--out", default="", help="output folder [evaluate/ in the checkpoint's folder, apart from the "
                                                  "report train.py wrote; eval/ for released weights]")
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
