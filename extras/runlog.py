"""Bookkeeping of a training run, kept apart from Algorithm 1: the run folder, progress bar and log,
checkpoints, Ctrl-C and kill, and the printed configuration. `train.py` calls `Bookkeeper`; nothing here
changes what is learned.
"""
from __future__ import annotations

import contextlib
import csv
import dataclasses
import json
import os
import signal
import sys
import tempfile
import textwrap
import time

import torch
from tqdm import tqdm

from buffer import ReplayBuffer
from config import Args, resolve_amp
from data import DataError
from extras import distributed
from extras.cli import check


class CheckpointError(Exception):
    """A checkpoint file that cannot be read."""


class NonFiniteLoss(Exception):
    """A loss (or the return) became NaN or infinite."""


def check_finite(stats: dict[str, list[torch.Tensor]], update_steps: list[int], episode_return: torch.Tensor,
                 step: int) -> None:
    """Raises NonFiniteLoss naming the first loss that was not finite and the step of that update.
    Called once an episode, on the losses it has kept anyway, so the training loop never waits on it."""
    first = None  # (update index, loss name)
    for name, values in stats.items():
        bad = (~torch.isfinite(torch.stack(values))).nonzero()
        if len(bad) and (first is None or bad[0, 0].item() < first[0]):
            first = (bad[0, 0].item(), name)
    if first is not None:
        i, name = first
        value = stats[name][i].item()
        raise NonFiniteLoss(f"{name} is {value} at step {update_steps[i]}")
    if not torch.isfinite(episode_return).all():
        raise NonFiniteLoss(f"the episode return is not finite at step {step}")


class ProgressLog:
    """progress.csv, one row per episode; columns fixed by the first row. On resume, rows after the
    checkpoint's step (episodes run again after a crash) are dropped first."""
    COLUMNS = ["episode", "step", "transitions", "updates", "seconds", "return", "critic_loss", "q",
               "planner_loss", "temperature_loss", "log_prob", "aux_loss", "content", "style", "style_relu1_2", "style_relu2_2",
               "style_relu3_3", "style_relu4_3", "tv", "rec", "adv",
               "ncc", "smooth", "temporal", "disc_loss", "alpha", "head_loss"]

    def __init__(self, path: str, resume_step: int | None = None) -> None:
        self.path = path
        rows = []
        if resume_step is not None and os.path.isfile(path):
            with open(path, newline="") as f:
                rows = [r for r in csv.reader(f)][1:]
            step = self.COLUMNS.index("step")  # a row torn by a crash (short, or no step number) is dropped
            rows = [r for r in rows if len(r) == len(self.COLUMNS) and r[step].isdigit() and int(r[step]) <= resume_step]
        with atomic_file(path, "w", newline="") as f:
            csv.writer(f).writerows([self.COLUMNS, *rows])

    def write(self, row: dict) -> None:
        with open(self.path, "a", newline="") as f:
            csv.writer(f).writerow([row.get(k, "") for k in self.COLUMNS])


def resume_path(resume: str) -> str:
    path = os.path.join(resume, "checkpoint.pt") if os.path.isdir(resume) else resume
    if not os.path.isfile(path):
        raise DataError(f"--resume {resume}: no checkpoint.pt there")
    return path


def rank_state(generators: dict[str, torch.Generator], device: torch.device, buffer: ReplayBuffer | None = None
               ) -> dict:
    """What is a rank's own: every random generator it draws from (`generators` by name, torch's global CPU
    generator and, on a GPU, the device's, which draws the plans) and, with `buffer` (--save-buffer), its
    replay buffer."""
    state = {"torch_rng": torch.get_rng_state(), **{name: g.get_state().cpu() for name, g in generators.items()}}
    if device.type == "cuda":
        state["cuda_rng"] = torch.cuda.get_rng_state(device)
    if buffer is not None:
        state["buffer"] = buffer.state_dict()
    return state


def save_checkpoint(path: str, args, modules: dict, log_alpha: torch.Tensor, step: int, episode: int,
                    updates: int, ranks: list[dict], digests: list[str] | None = None) -> None:
    """Every network and optimiser, log alpha, the args, the counters and `ranks`, each rank's `rank_state`:
    rank 0's at the top level (all a one-process run has), the others' under "other_ranks", with the world
    size and every rank's `distributed.digest`. Written atomically."""
    state = {k: v.state_dict() for k, v in modules.items()}
    state.update(log_alpha=log_alpha.detach().cpu(), args=dataclasses.asdict(args), step=step, episode=episode,
                 updates=updates, **ranks[0])
    if len(ranks) > 1:  # torchrun with K > 1
        state.update(world_size=len(ranks), other_ranks=ranks[1:], digests=digests)
    with atomic_file(path, "wb") as f:
        torch.save(state, f)


@contextlib.contextmanager
def atomic_file(path: str, mode: str, **kwargs):
    """A file written under a temporary name of its own (two processes never share one), flushed to disk and
    renamed onto `path`: a crash leaves the old file or the new one, never a mix; the temporary is removed."""
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path) or ".", prefix=os.path.basename(path) + ".", suffix=".tmp")
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # as open() would make it
    try:
        with os.fdopen(fd, mode, **kwargs) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


NETWORKS = ("planner", "actor", "planner_opt", "actor_opt")  # in every checkpoint; --rl on adds CRITICS
CRITICS = ("critic", "critic_target", "critic_opt", "alpha_opt")
COUNTERS = ("step", "episode", "updates", "log_alpha", "torch_rng")
SHAPES = ("task", "rl", "image_size", "plan_dim", "width")  # settings that change the networks' shapes


def read_checkpoint(path: str) -> dict:
    """The checkpoint's contents, every tensor on the CPU: random generator states must be CPU tensors
    whatever the training device, and load_state_dict copies the rest to the modules' devices. Read with
    weights_only=True: a checkpoint holds tensors, numbers, strings and containers of them, nothing that runs
    code; a file that holds anything else is refused. Its networks and settings are checked (`saved_args`)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated, crafted or not a checkpoint at all: pickle, zip and torch errors alike
        raise CheckpointError(f"{path}: cannot read it as a checkpoint ({type(e).__name__})") from None
    if not isinstance(state, dict) or not isinstance(state.get("args"), dict):
        raise CheckpointError(f"{path}: not a train.py checkpoint (no settings in it)")
    return state


def saved_args(state: dict, path: str, to_resume: bool = True) -> dict:
    """The settings a checkpoint was trained with, refused in one line when this code does not know them or
    the checkpoint lacks what resuming it (`to_resume`: every network, optimiser and counter) or evaluating it
    (planner and actor) needs."""
    needs = NETWORKS + COUNTERS + (CRITICS if state["args"].get("rl", "on") == "on" else ()) if to_resume else \
        ("planner", "actor")
    missing = [k for k in needs if k not in state]
    if missing:
        raise CheckpointError(f"{path}: not a whole train.py checkpoint: no {', '.join(missing)} in it")
    known = {f.name for f in dataclasses.fields(Args)}
    unknown = sorted(set(state["args"]) - known)
    if unknown:
        raise CheckpointError(f"{path}: written by another version of the code (settings it does not know: "
                              f"{', '.join(unknown[:5])})")
    return state["args"]


def fits(module: torch.nn.Module, stored: dict) -> bool:
    """Whether a stored state dict has the module's names and shapes."""
    own = module.state_dict()
    return own.keys() == stored.keys() and all(own[k].shape == stored[k].shape for k in own)


def world_size_of(state: dict) -> int:
    """How many ranks wrote a checkpoint (1 without torchrun)."""
    return state.get("world_size", 1)


def load_checkpoint(path: str, modules: dict, log_alpha: torch.Tensor, generators: dict[str, torch.Generator],
                    buffer: ReplayBuffer | None = None, rank: int = 0) -> tuple[int, int, int]:
    """Restores what save_checkpoint wrote (the buffer only if the checkpoint holds one), with rank `rank`'s
    own generators and buffer; returns (step, episode, updates)."""
    state = read_checkpoint(path)
    own = state if rank == 0 else state["other_ranks"][rank - 1]
    # written before adaptive stopping (no head), or with the older r-hat(s_t, p_t): the head starts afresh
    older_head = "reward_head" in modules and ("reward_head" not in state or
                                               not fits(modules["reward_head"], state["reward_head"]))
    for k, module in modules.items():
        if k.startswith("reward_head") and older_head:
            if k == "reward_head":
                print(f"{path}: no reward head in it (an older checkpoint); the reward head starts untrained"
                      if "reward_head" not in state else
                      f"{path}: its reward head is the older r-hat(s_t, p_t); the reward head r-hat(s) starts untrained")
            continue
        try:
            module.load_state_dict(state[k])  # optimiser states are moved to their parameters' device
        except (RuntimeError, ValueError, KeyError) as e:
            raise CheckpointError(f"{path}: its {k} does not fit this run's ({type(e).__name__}); resume with the "
                                  "settings it was trained with") from None
    with torch.no_grad():
        log_alpha.copy_(state["log_alpha"])
    for name, generator in generators.items():
        if name in own:  # checkpoints written before the environment's generator was saved lack it
            generator.set_state(own[name])
    torch.set_rng_state(own["torch_rng"])
    if "cuda_rng" in own and log_alpha.device.type == "cuda":
        torch.cuda.set_rng_state(own["cuda_rng"], log_alpha.device)
    refill = "the replay buffer starts empty and refills during the warm-up"
    if buffer is not None and "buffer" in own:
        if own["buffer"]["capacity"] != buffer.capacity:
            raise CheckpointError(f"{path}: its replay buffer holds {own['buffer']['capacity']:,} transitions, "
                                  f"not --buffer-size {buffer.capacity:,}; resume with the saved size")
        buffer.load_state_dict(own["buffer"])
        refill = f"the replay buffer holds its {buffer.size:,} transitions"
    print(f"resumed from {path} at step {state['step']} (episode {state['episode']}); {refill}")
    return state["step"], state["episode"], state["updates"]


def same(a, b) -> bool:
    return a == b or (a != a and b != b)  # nan is its field's default too


def applies(f: dataclasses.Field, task: str) -> bool:
    return not f.metadata["tasks"] or task in f.metadata["tasks"]


def print_config(args, run: str, device: torch.device, task: dict, world_size: int = 1) -> None:
    """config.json (every field, and the number of processes) and split.json beside the run; printed, the
    settings that matter for the task: its flags and whatever else the preset or the command line changed."""
    config = {**dataclasses.asdict(args), "world_size": world_size}
    with open(os.path.join(run, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
    with open(os.path.join(run, "split.json"), "w") as f:  # the deterministic train/test split
        json.dump({"train": task["train_data"].names, "test": task["test_data"].names}, f, indent=1)
    count = lambda k: sum(p.numel() for p in task[k].parameters()) if task.get(k) is not None else 0  # noqa: E731
    shown = [f"task={args.task} rl={args.rl} seed={args.seed}"] + [
        f"{f.name}={getattr(args, f.name)}" for f in dataclasses.fields(args)
        if f.metadata["group"] != "run" and applies(f, args.task) and getattr(args, f.name) != ""
        and (f.metadata["flag"] or not same(getattr(args, f.name), f.default))]
    print(textwrap.fill(" ".join(shown), 110, initial_indent="config: ", subsequent_indent="        ",
                        break_on_hyphens=False))
    print(f"        (every setting: {os.path.join(run, 'config.json')})")
    amp, why = resolve_amp(args.amp, device.type)
    print(f"device {device} | bfloat16 autocast {'on' if amp else 'off'} ({why}) | "
          + (f"VGG-16 weights: {task['vgg'].source} | " if "vgg" in task else "")
          + f"planner+actor {count('planner') + count('actor'):,} parameters | critic {count('critic'):,} | "
          + (f"discriminator {count('discriminator'):,} | " if "discriminator" in task else "")
          + f"plan {task['plan_shape']}")
    if world_size > 1:
        print(f"torchrun: {world_size} processes, each with {args.num_envs} environments, its own replay buffer and "
              f"a batch of {args.batch_size} (global: {world_size * args.num_envs} and {world_size * args.batch_size}); "
              "gradients averaged over them")


def merge_resumed_args(args: Args, given: dict, world) -> Args:
    """--resume: the saved run's settings, with the flags given on top, checked as a new run's are; a flag that
    would change the networks' shapes is refused. Everything in one line, before anything is built."""
    path = resume_path(args.resume)
    state = read_checkpoint(path)
    saved = saved_args(state, path)
    if world_size_of(state) != world.size:
        raise CheckpointError(f"{args.resume}: written by {world_size_of(state)} process(es), resumed with "
                              f"{world.size}; resume with the same number (torchrun --nproc_per_node="
                              f"{world_size_of(state)}, or plain python for 1)")
    for name in SHAPES:
        if name in given and given[name] != saved.get(name):
            raise CheckpointError(f"{path}: --{name.replace('_', '-')} {given[name]} would change the networks "
                                  f"the run was trained with ({saved.get(name)}); resume without it")
    merged = Args(**{**saved, **given})

    def error(message: str) -> None:
        raise CheckpointError(f"--resume {args.resume}: {message}")
    check(merged, given, error)
    return merged


class Bookkeeper:
    """What train.py does around Algorithm 1. At the start: the run folder, a resumed run's state, the printed
    config. Each step (`tick`): the progress bar. Each episode (`end_episode`): the stop on a non-finite loss
    (before any checkpoint of that episode), progress.csv, the checkpoint every --set save_every episodes.
    Around the loop (`guard`): Ctrl-C and `kill` save a checkpoint and stop. Under torchrun rank 0 alone writes,
    and every rank stops together at the end of an episode (no collective is cut)."""

    def __init__(self, args: Args, world, task: dict, device: torch.device, modules: dict,
                 log_alpha: torch.Tensor, generators: dict, buffer: ReplayBuffer) -> None:
        self.args, self.world, self.modules, self.log_alpha = args, world, modules, log_alpha
        self.generators, self.buffer, self.device = generators, buffer, device
        resume = args.resume
        self.run = resume if os.path.isdir(resume) else (os.path.dirname(resume) or ".") if resume else \
            os.path.join(args.run_dir, args.name or f"{args.task}-seed{args.seed}")
        if world.rank == 0:
            os.makedirs(self.run, exist_ok=True)
        self.step = self.episode = self.updates = 0
        if resume:
            self.step, self.episode, self.updates = load_checkpoint(resume_path(resume), modules, log_alpha,
                                                                    generators, buffer, world.rank)
        if world.rank == 0:
            print_config(args, self.run, device, task, world.size)
        self.log = ProgressLog(os.path.join(self.run, "progress.csv"), resume_step=self.step if resume else None) \
            if world.rank == 0 else None
        self.checkpoint_path = os.path.join(self.run, "checkpoint.pt")
        self.bar = tqdm(total=args.total_steps, initial=self.step, desc=f"{args.task}", unit="step",
                        dynamic_ncols=True, disable=not args.progress or world.rank > 0)
        self.start = time.time()
        self.update_steps: list[int] = []  # the step of each update of the running episode
        self.asked_to_stop: list[int] = []
        self.task, self.evaluated = task, self.updates // args.eval_every if args.eval_every else 0
        curve = os.path.join(self.run, "eval_curve.csv")
        if resume and world.rank == 0 and os.path.isfile(curve):  # evaluations after the checkpoint run again
            with open(curve, newline="") as f:
                rows = list(csv.reader(f))
            with atomic_file(curve, "w", newline="") as f:
                csv.writer(f).writerows(rows[:1] + [r for r in rows[1:] if r and r[0].isdigit()
                                                    and int(r[0]) <= self.updates])

    def tick(self, step: int, updates: int) -> None:
        """One environment step done (`updates` so far)."""
        if updates > self.updates:
            self.update_steps.append(step)
        self.step, self.updates = step, updates
        self.bar.update(1)

    def end_episode(self, episode: int, stats: dict[str, list[torch.Tensor]], episode_return: torch.Tensor) -> None:
        self.episode = episode
        check_finite(stats, self.update_steps, episode_return, self.step)
        self.update_steps = []
        row = {"episode": episode, "step": self.step, "transitions": self.buffer.size, "updates": self.updates,
               "return": episode_return.mean().item(), "alpha": self.log_alpha.exp().item(),
               "seconds": round(time.time() - self.start, 1),
               **{k: torch.stack(v).mean().item() for k, v in stats.items()}}
        if self.log is not None:
            self.log.write(row)
        if self.args.eval_every and self.updates // self.args.eval_every > self.evaluated:  # between episodes
            self.evaluated = self.updates // self.args.eval_every
            if self.world.rank == 0:  # no collective in it
                from extras.report import curve_point  # the report's evaluation (it imports evaluate.py)

                curve_point(self.run, self.args, self.task, self.step, self.updates)
        self.bar.set_postfix({k: f"{row[k]:.3g}" for k in ("return", "aux_loss", "alpha") if k in row})
        if self.world.size > 1 and distributed.any_rank(bool(self.asked_to_stop)):  # torchrun: every rank stops here
            raise KeyboardInterrupt
        if episode % self.args.save_every == 0:
            self.checkpoint()

    def checkpoint(self) -> None:
        """Every network and optimiser, checked finite first: a non-finite weight stops the run like a non-finite
        loss, and the checkpoint before it stays."""
        for name, module in self.modules.items():
            tensors = module.parameters() if isinstance(module, torch.nn.Module) else \
                (t for state in module.state_dict()["state"].values() for t in state.values() if torch.is_tensor(t))
            if not all(torch.isfinite(t).all() for t in tensors):
                raise NonFiniteLoss(f"a value of the {name.replace('_opt', ' optimiser')} is not finite at step "
                                    f"{self.step}")
        ranks = distributed.gather(rank_state(self.generators, self.device,
                                              self.buffer if self.args.save_buffer else None))
        digests = distributed.same_networks(self.modules, self.log_alpha, self.step)  # every rank's, checked equal
        if self.world.rank == 0:
            save_checkpoint(self.checkpoint_path, self.args, self.modules, self.log_alpha, self.step, self.episode,
                            self.updates, ranks, digests)

    @contextlib.contextmanager
    def guard(self):
        """Ctrl-C and `kill` save and stop; SIGINT too, as shells start background jobs with SIGINT ignored. Under
        torchrun a signal is noted and every rank stops together at the end of the episode. A non-finite loss
        stops the run, naming the last good checkpoint."""
        world = self.world
        on_signal = signal.default_int_handler if world.size == 1 else \
            lambda signum, frame: self.asked_to_stop.append(signum)
        handlers = {signum: signal.signal(signum, on_signal) for signum in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        except KeyboardInterrupt:
            self.bar.close()
            self.checkpoint()
            resume = f"--resume {self.run}" if world.size == 1 else \
                f"torchrun --nproc_per_node={world.size} ... --resume {self.run}"
            sys.exit(f"interrupted at step {self.step}: checkpoint saved, continue with {resume}" if world.rank == 0
                     else 1)
        except NonFiniteLoss as e:
            self.bar.close()
            last = f"the last good checkpoint is {self.checkpoint_path}" if os.path.isfile(self.checkpoint_path) \
                else "no checkpoint was written before it"
            raise NonFiniteLoss(f"{e}: training stopped; {last}") from None
        finally:
            for signum, handler in handlers.items():
                signal.signal(signum, handler)

    def finish(self) -> None:
        self.bar.close()
        self.checkpoint()
