"""Benchmarks: speed, replay memory, and how big RL-I2IT's networks are next to pix2pix's generator.

    python -m extras.benchmark throughput     # env steps/s and updates/s at 1 and 16 environments, every task
    python -m extras.benchmark throughput --device cuda --amp
    python -m extras.benchmark memory         # replay-buffer bytes per transition at paper scale, vs float32 states
    python -m extras.benchmark sizes          # parameters and FLOPs per image, every task, and pix2pix's U-Net
    python -m extras.benchmark ranks --tasks digits --ranks 1 2   # train.py alone against torchrun with 2 processes

Throughput runs each task in a fresh process, so that its peak memory is its own, with the task's
preset for the device. Collection is acting and stepping the environments and adding
to the replay buffer, with no updates (train.py's A1.3-A1.8); an update is A1.10-A1.14 at the
preset's batch size, with the adversarial term on; it does not depend on the number of
environments. Each is timed, after a warm-up as long, over five windows and the best is kept (the
least disturbed by other work on the machine). The share of an update spent sampling the buffer is the
median, over 21 turns, of one sample's time over that of the update just before it; the reward head's share
(adaptive stopping, O3: its forward, backward and Adam step on one minibatch) is timed the same way. The windows of 1 and 16 environments take turns, and
"x 1 env" is the median over windows of the ratio of neighbouring windows, so that a slow spell of
the machine (its speed swings by up to 40 % here) does not favour either. "env steps/s" counts transitions: one
batched step of 16 environments is 16 environment steps. The style rows use a randomly initialised
VGG-16, which costs the same as the real weights.

The paper's claim for photo translation is far fewer parameters and FLOPs than pix2pix. The size
table counts the planner and actor (what runs at inference; the critic and the discriminator only
train) with `torch.utils.flop_counter`, which counts the multiply-adds of convolutions and matrix
products as 2 FLOPs each and leaves out normalisation, activations and resampling (a few per cent).
An RL-I2IT image costs k planner+actor passes for k test steps; pix2pix's costs one pass.

`Pix2PixUNet` is built here, for comparison only, from pix2pix's published layer list (Isola et al.
2017, appendix 6.1.1: the U-Net encoder C64-C128-C256-C512-C512-C512-C512-C512 of 4x4 stride-2 convs,
a mirrored decoder with skip connections, batch norm, dropout 0.5 in the first three decoder blocks).
"""
from __future__ import annotations

import argparse
import csv
import functools
import json
import multiprocessing
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager

import torch
import torch.nn as nn
from torch.utils.flop_counter import FlopCounterMode


class Pix2PixUNet(nn.Module):
    """pix2pix's U-Net generator: `downs` 4x4 stride-2 convs from S to S / 2^downs (1 x 1 at 256 with
    8), widths base, 2 base, 4 base, then 8 base; a mirrored decoder of 4x4 stride-2 transposed
    convs, each fed the previous output concatenated with the encoder feature of the same scale.
    Encoder: LeakyReLU 0.2 before every conv but the first, batch norm after every conv but the first
    and the innermost. Decoder: ReLU before every transposed conv, batch norm after every one but the
    last, dropout in the three after the innermost, tanh at the end. Convs followed by batch norm have
    no bias. At 256 x 256 with 8 downs and base 64: 54,413,955 parameters."""

    def __init__(self, in_channels: int = 3, out_channels: int = 3, downs: int = 8, base: int = 64) -> None:
        super().__init__()
        widths = [base * min(2 ** i, 8) for i in range(downs)]  # 64, 128, 256, 512, 512, 512, 512, 512
        self.encoder = nn.ModuleList()
        c = in_channels
        for i, w in enumerate(widths):
            layers = [] if i == 0 else [nn.LeakyReLU(0.2)]
            layers.append(nn.Conv2d(c, w, 4, 2, 1, bias=False))
            if 0 < i < downs - 1:
                layers.append(nn.BatchNorm2d(w))
            self.encoder.append(nn.Sequential(*layers))
            c = w
        self.decoder = nn.ModuleList()
        for i in reversed(range(downs)):  # innermost first
            c_in = widths[i] if i == downs - 1 else 2 * widths[i]
            if i == 0:
                layers = [nn.ReLU(), nn.ConvTranspose2d(c_in, out_channels, 4, 2, 1), nn.Tanh()]
            else:
                layers = [nn.ReLU(), nn.ConvTranspose2d(c_in, widths[i - 1], 4, 2, 1, bias=False),
                          nn.BatchNorm2d(widths[i - 1])]
                if downs - 4 <= i <= downs - 2:  # the three blocks after the innermost
                    layers.append(nn.Dropout(0.5))
            self.decoder.append(nn.Sequential(*layers))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for block in self.encoder:
            x = block(x)
            skips.append(x)
        x = self.decoder[0](skips.pop())
        for block in self.decoder[1:]:
            x = block(torch.cat([x, skips.pop()], 1))
        return x


def count_flops(fn, *inputs: torch.Tensor) -> int:
    """FLOPs of one call fn(*inputs), counted by torch.utils.flop_counter (2 per multiply-add)."""
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        fn(*inputs)
    return counter.get_total_flops()


def agent_size(task: str, image_size: int, plan_dim: int = 256, width: int = 32) -> tuple[int, int]:
    """(parameters, FLOPs of one step) of the task's planner + actor for one image."""
    from tasks import STATE_CHANNELS, networks
    from config import Args

    planner, actor = networks(Args(task=task, image_size=image_size, plan_dim=plan_dim, width=width))
    planner.eval(), actor.eval()

    def step(state: torch.Tensor) -> torch.Tensor:
        dist, features = planner(state)
        return actor(dist.mean, features)

    state = torch.zeros(1, STATE_CHANNELS[task], image_size, image_size)
    params = sum(p.numel() for m in (planner, actor) for p in m.parameters())
    return params, count_flops(step, state)


# (model, task, image size, plan, width, test steps k): the paper's settings, and photo translation at
# pix2pix's 256 x 256 too
SIZE_ROWS = [
    ("RL-I2IT style transfer", "style", 256, 0, 0, 10),
    ("RL-I2IT video style transfer (two ConvGRUs)", "video", 256, 0, 0, 10),
    ("RL-I2IT face inpainting (paper figure)", "inpaint", 128, 256, 32, 15),
    ("RL-I2IT face inpainting (authors' code widths)", "inpaint", 128, 512, 64, 15),
    ("RL-I2IT photo translation", "photo", 128, 256, 32, 5),
    ("RL-I2IT photo translation", "photo", 256, 256, 32, 5),
    ("RL-I2IT digit transform", "digits", 28, 0, 0, 30),
]


def size_table() -> list[dict]:
    """One row per model: parameters, GFLOPs per step and per image at k steps; pix2pix last, at 128
    (7 downs, to 1 x 1 like the published 256 one) and at 256."""
    rows = []
    for name, task, size, plan_dim, width, k in SIZE_ROWS:
        params, flops = agent_size(task, size, plan_dim or 256, width or 32)
        rows.append({"model": name, "task": task, "image": size, "parameters": params,
                     "GFLOPs per step": flops / 1e9, "steps k": k, "GFLOPs per image": k * flops / 1e9})
    for size, downs in ((128, 7), (256, 8)):  # pix2pix at 256 (published); at 128, one down fewer
        unet = Pix2PixUNet(downs=downs).eval()
        params = sum(p.numel() for p in unet.parameters())
        flops = count_flops(unet, torch.zeros(1, 3, size, size))
        rows.append({"model": f"pix2pix U-Net generator ({downs} downs)", "task": "photo", "image": size,
                     "parameters": params, "GFLOPs per step": flops / 1e9, "steps k": 1,
                     "GFLOPs per image": flops / 1e9})
    return rows


def markdown(rows: list[dict]) -> str:
    lines = ["| model | image | parameters | GFLOPs per step | steps k | GFLOPs per image |", "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['image']} x {r['image']} | {r['parameters']:,} | "
                     f"{r['GFLOPs per step']:.2f} | {r['steps k']} | {r['GFLOPs per image']:.2f} |")
    return "\n".join(lines)


class HostCopyCounter:
    """Counts calls from this repository's modules (the files at its top level) that copy tensor data to
    the host or to NumPy (.item, .tolist, .numpy, .cpu) while active. Calls inside torch are left out
    (also from a virtual environment inside the repository): Adam reads its step counter, a CPU tensor
    even on a GPU, with .item()."""
    METHODS = ("item", "tolist", "numpy", "cpu")
    REPO = os.path.dirname(os.path.abspath(__file__))

    def __init__(self) -> None:
        self.count = 0

    @contextmanager
    def watch(self):
        originals = {m: getattr(torch.Tensor, m) for m in self.METHODS}

        def counted(original):
            def call(tensor, *a, **k):
                self.count += os.path.dirname(sys._getframe(1).f_code.co_filename) == self.REPO  # our modules
                return original(tensor, *a, **k)
            return call
        for m, f in originals.items():
            setattr(torch.Tensor, m, counted(f))
        try:
            yield
        finally:
            for m, f in originals.items():
                setattr(torch.Tensor, m, f)


def window_rates(works: dict, seconds: float, sync, windows: int = 5) -> dict[object, list[float]]:
    """Units of work a second of each `works[key]()` (which returns how many units it did) in each of
    `windows` windows, after a warm-up as long: the windows of the different keys take turns, so that
    a slow spell of the machine (its speed swings by up to 40 % here) hits them alike."""
    for work in works.values():  # warm-up: the first seconds of a process are slower (memory allocator,
        start = time.perf_counter()  # oneDNN kernels for each shape)
        while time.perf_counter() - start < seconds / len(works):
            work()
    rates: dict[object, list[float]] = {key: [] for key in works}
    for _ in range(windows):
        for key, work in works.items():
            sync()
            start, done = time.perf_counter(), 0
            while time.perf_counter() - start < seconds / (windows * len(works)):
                done += work()
            sync()
            rates[key].append(done / (time.perf_counter() - start))
    return rates


def paired_share(part, whole, sync, repeats: int = 21) -> tuple[float, float]:
    """The median, over `repeats` turns, of the time of one `part()` over that of the `whole()` run just
    before it, and the median time of one `part()` in seconds. Timed back to back in one process, so that a
    slow spell of the machine hits both (best windows of each, timed apart, made the share flaky on a
    loaded machine)."""
    shares, seconds = [], []
    for _ in range(repeats):
        sync()
        start = time.perf_counter()
        whole()
        sync()
        middle = time.perf_counter()
        part()
        sync()
        end = time.perf_counter()
        shares.append((end - middle) / (middle - start))
        seconds.append(end - middle)
    return statistics.median(shares), statistics.median(seconds)


SMOKE = ["--image-size", "32", "--batch-size", "4", "--max-episode-steps", "2", "--buffer-size", "64"]


def measure(task_name: str, envs: list[int], device_name: str, seconds: float, amp: bool, smoke: bool) -> list[dict]:
    """The throughput rows of one task, one per number of environments (run in a fresh process by
    `throughput_table`, so that the peak memory is the task's)."""
    from extras.stopping import update_reward_head
    from train import autocast, collect, initialise, parse_args, seed_everything, update
    from tasks import build
    from buffer import ReplayBuffer

    torch.set_num_threads(torch.get_num_threads())
    argv = ["--task", task_name, "--device", device_name, "--learning-starts", "1"]
    argv += ["--set", "vgg=random"] if task_name in ("style", "video") else []
    argv += ["--amp", "on" if amp else "off"]
    argv += [a for a in SMOKE if not (task_name == "digits" and a in ("--image-size", "32"))] if smoke else []
    args, _ = parse_args(argv)
    device = torch.device(device_name if device_name != "auto" else "cuda" if torch.cuda.is_available() else "cpu")
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    seed_everything(args.seed, args.deterministic)
    task = build(args, device)
    env = task["env"]
    if hasattr(task["train_data"], "load"):  # decode the image files once, as a long run has: time the
        for source in task["train_data"].sources:  # steady state, not the first pass over the data
            task["train_data"].load(source)
    modules, log_alpha, target_entropy = initialise(args, task, device)
    buffer = ReplayBuffer(args.buffer_size, env.buffer_columns(args.image_size, task["plan_shape"]), device)
    data_rng, sample_rng = torch.Generator().manual_seed(0), torch.Generator(device=device).manual_seed(0)
    copies = HostCopyCounter()

    def collect_episode(num_envs: int) -> int:
        """train.py's A1.3-A1.8 for one episode of `num_envs` environments; returns the environment steps."""
        state = env.reset(task["train_data"].sample(num_envs, data_rng).to(device))
        running = torch.ones(num_envs, dtype=torch.bool, device=device)
        steps = 0
        with copies.watch():
            for _ in range(args.max_episode_steps):
                next_state, reward, done = collect(args, task, buffer, state, running)
                running &= done == 0
                state, steps = next_state, steps + num_envs
                if not running.any():
                    break
        return steps

    updates = 0

    def one_update() -> int:
        nonlocal updates
        updates += 1
        with copies.watch():
            update(args, task, buffer, modules, log_alpha, target_entropy, updates, sample_rng, True)
        return 1

    def one_sample() -> int:
        with copies.watch():
            env.unpack(buffer.sample(args.batch_size, sample_rng))
        return 1

    def one_head_update() -> int:  # the reward head's share of an update (O3, adaptive stopping), on one minibatch
        update_reward_head(batch, modules, functools.partial(autocast, args, device))
        return 1

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    collection = window_rates({n: lambda n=n: collect_episode(n) for n in envs}, seconds * len(envs), sync)
    env_steps = {n: max(r) for n, r in collection.items()}  # the best window: the least disturbed
    speedup = {n: statistics.median(a / b for a, b in zip(collection[n], collection[envs[0]])) for n in envs}
    update_rate = max(window_rates({"update": one_update}, seconds, sync)["update"])
    sample_share, sample_seconds = paired_share(one_sample, one_update, sync)
    batch = env.unpack(buffer.sample(args.batch_size, sample_rng))
    head_share, head_seconds = paired_share(one_head_update, one_update, sync)
    peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else \
        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB
    return [{"task": task_name, "device": device.type, "amp": amp,
             "envs": n, "image": args.image_size, "batch": args.batch_size, "env steps/s": round(env_steps[n], 1),
             "x 1 env": round(speedup[n], 2), "updates/s": round(update_rate, 2),
             "sample ms": round(1000 * sample_seconds, 2), "sample % of update": round(100 * sample_share, 2),
             "head ms": round(1000 * head_seconds, 2), "head % of update": round(100 * head_share, 2),
             "host copies": copies.count, "peak memory MiB": round(peak / 2 ** 20),
             "buffer bytes/transition": buffer.bytes_per_transition()} for n in envs]


def throughput_table(tasks: list[str], envs: list[int], device: str, seconds: float, amp: bool = False,
                     smoke: bool = False) -> list[dict]:
    context = multiprocessing.get_context("spawn")
    rows = []
    for task in tasks:
        with context.Pool(1) as pool:  # a fresh process per task: its own peak memory
            rows += pool.apply(measure, (task, envs, device, seconds, amp, smoke))
        print("  " + ", ".join(f"{task} x{r['envs']}: {r['env steps/s']} env steps/s" for r in rows[-len(envs):])
              + f"; {rows[-1]['updates/s']} updates/s", flush=True)
    return rows


THROUGHPUT_COLUMNS = ["task", "envs", "image", "batch", "env steps/s", "x 1 env", "updates/s", "sample % of update",
                      "head % of update",
                      "host copies", "peak memory MiB", "buffer bytes/transition"]


def throughput_markdown(rows: list[dict]) -> str:
    lines = ["| " + " | ".join(THROUGHPUT_COLUMNS) + " |", "|" + "---|" * len(THROUGHPUT_COLUMNS)]
    for r in rows:
        lines.append("| " + " | ".join(f"{r[c]:,}" if isinstance(r[c], int) and c != "envs" else str(r[c])
                                       for c in THROUGHPUT_COLUMNS) + " |")
    return "\n".join(lines)


# Replay memory at paper scale: each task's CUDA preset (image size and --buffer-size).
def memory_table() -> list[dict]:
    from buffer import transition_bytes
    from env import InpaintEnv, PhotoEnv, RegistrationEnv, StyleEnv
    from tasks import PRESETS, STATE_CHANNELS, networks
    from config import Args
    from vgg import load_vgg16

    rows = []
    for task_name in ("style", "inpaint", "photo", "digits"):
        preset = PRESETS[task_name]
        args = Args(**{**preset.get("all", {}), **preset["cuda"], "task": task_name})
        size = args.image_size
        env = {"style": lambda: StyleEnv(load_vgg16("random"), torch.rand(3, 32, 32)), "photo": PhotoEnv,
               "inpaint": lambda: InpaintEnv(size), "digits": RegistrationEnv}[task_name]()
        ours = transition_bytes(env.buffer_columns(size, networks(args)[0].plan_shape(size)))
        float32_states = 2 * 4 * STATE_CHANNELS[task_name] * size * size  # the authors' s_t and s_t+1
        rows.append({"task": task_name, "image": size, "transitions": args.buffer_size, "bytes/transition": ours,
                     "GB": args.buffer_size * ours / 1e9, "float32 states bytes/transition": float32_states,
                     "float32 states GB": args.buffer_size * float32_states / 1e9})
    return rows


def memory_markdown(rows: list[dict]) -> str:
    lines = ["| task | image | transitions (CUDA preset) | ours: bytes/transition | ours: total | "
             "two float32 states: bytes/transition | two float32 states: total |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['task']} | {r['image']} x {r['image']} | {r['transitions']:,} | {r['bytes/transition']:,} | "
                     f"{r['GB']:.1f} GB | {r['float32 states bytes/transition']:,} | {r['float32 states GB']:.1f} GB |")
    return "\n".join(lines)


def ranks_table(tasks: list[str], ranks: list[int], device: str, steps: int) -> list[dict]:
    """train.py for `steps` steps as one process (plain python) and under torchrun with K processes: env steps/s
    (all ranks' transitions) and updates/s over the second half of the run, from its progress.csv."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    rows = []
    for task_name in tasks:
        for k in ranks:
            launch = [sys.executable] if k == 1 else [sys.executable, "-m", "torch.distributed.run", "--standalone",
                                                      f"--nproc_per_node={k}"]
            with tempfile.TemporaryDirectory() as tmp:
                result = subprocess.run([*launch, os.path.join(root, "train.py"), "--task", task_name, "--device", device,
                                         "--total-steps", str(steps), "--test-steps", "1", "--run-dir", tmp, "--name", "b",
                                         "--no-progress"], cwd=root, capture_output=True, text=True)
                if result.returncode != 0:
                    sys.exit(f"benchmark.py: error: --task {task_name} with {k} process(es) failed: "
                             f"{(result.stderr.strip().splitlines() or ['?'])[-1]}")
                with open(os.path.join(tmp, "b", "progress.csv"), newline="") as f:
                    log = list(csv.DictReader(f))
                with open(os.path.join(tmp, "b", "config.json")) as f:
                    num_envs = json.load(f)["num_envs"]
            first, last = log[len(log) // 2], log[-1]
            seconds = float(last["seconds"]) - float(first["seconds"])
            rows.append({"task": task_name, "device": device, "processes": k, "threads each": 1 if k > 1 else
                         torch.get_num_threads(), "envs each": num_envs,
                         "env steps/s": round(k * num_envs * (int(last["step"]) - int(first["step"])) / seconds, 1),
                         "updates/s": round((int(last["updates"]) - int(first["updates"])) / seconds, 2)})
            print(rows[-1])
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("what", choices=["throughput", "memory", "sizes", "ranks"],
                        help="throughput: steps and updates a second; memory: replay buffer at paper scale; "
                             "sizes: parameters and FLOPs against pix2pix; ranks: one process against torchrun's K")
    parser.add_argument("--ranks", nargs="+", type=int, default=[1, 2], help="ranks: numbers of processes")
    parser.add_argument("--steps", type=int, default=200, help="ranks: train.py --total-steps of each run")
    parser.add_argument("--tasks", nargs="+", default=["style", "inpaint", "photo", "digits"],
                        choices=["style", "video", "inpaint", "photo", "digits", "register"])
    parser.add_argument("--envs", nargs="+", type=int, default=[1, 16], help="numbers of environments to run")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--seconds", type=float, default=6.0, help="time per measurement (five windows)")
    parser.add_argument("--amp", action="store_true", help="bfloat16 autocast (train.py --amp)")
    parser.add_argument("--csv", default="", help="where to write the table (default: runs/benchmark_DEVICE.csv)")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes and short windows, for the tests")
    opts = parser.parse_args(argv)
    torch.manual_seed(0)
    if opts.what == "sizes":
        print(markdown(size_table()))
        return
    if opts.what == "memory":
        print(memory_markdown(memory_table()))
        return
    if opts.device == "cuda" and not torch.cuda.is_available():
        parser.exit(2, "benchmark.py: error: --device cuda: no CUDA device is available\n")
    if min(opts.envs) < 1 or opts.seconds <= 0:
        parser.exit(2, "benchmark.py: error: --envs must be at least 1 and --seconds positive\n")
    device = "cuda" if opts.device == "auto" and torch.cuda.is_available() else "cpu" if opts.device == "auto" \
        else opts.device
    if opts.what == "ranks":
        if min(opts.ranks) < 1 or opts.steps < 2:
            parser.exit(2, "benchmark.py: error: --ranks must be at least 1 and --steps at least 2\n")
        rows = ranks_table(opts.tasks, opts.ranks, device, opts.steps)
        print("| task | device | processes | threads each | envs each | env steps/s | updates/s |\n|---|---|---|---|---|---|---|")
        for r in rows:
            print(" | ".join(["", *(str(v) for v in r.values()), ""]).strip())
        return
    seconds = 0.3 if opts.smoke else opts.seconds
    print(f"throughput on {device} ({torch.get_num_threads()} threads), {seconds:g} s a measurement:")
    rows = throughput_table(opts.tasks, opts.envs, device, seconds, opts.amp, opts.smoke)
    print(throughput_markdown(rows))
    path = opts.csv or os.path.join("runs", f"benchmark_{device}{'_amp' if opts.amp else ''}.csv")
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    print(f"written to {path}")


if __name__ == "__main__":
    main()
