"""Bookkeeping of a training run, kept apart from Algorithm 1: the progress log, checkpoints and
the printed configuration. `train.py` calls these; nothing here changes what is learned.
"""
from __future__ import annotations

import csv
import dataclasses
import json
import os

import torch

from buffer import ReplayBuffer
from config import resolve_amp
from data import DataError


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
            step = self.COLUMNS.index("step")
            rows = [r for r in rows if r and int(r[step]) <= resume_step]
        with open(path, "w", newline="") as f:
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
    tmp = path + ".tmp"
    try:
        with open(tmp, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())  # on disk before the rename, so a crash never leaves a half-written file
        os.replace(tmp, path)     # atomic: `path` is the old checkpoint or the new one, never a mix
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def read_checkpoint(path: str) -> dict:
    """The checkpoint's contents, every tensor on the CPU: random generator states must be CPU tensors
    whatever the training device, and load_state_dict copies the rest to the modules' devices."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # truncated or not a checkpoint at all: pickle, zip and torch errors alike
        raise CheckpointError(f"{path}: cannot read it as a checkpoint ({type(e).__name__})") from None
    if not isinstance(state, dict) or "args" not in state:
        raise CheckpointError(f"{path}: not a train.py checkpoint")
    return state


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
        module.load_state_dict(state[k])  # optimiser states are moved to their parameters' device
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


def print_config(args, run: str, device: torch.device, task: dict, world_size: int = 1) -> None:
    config = dataclasses.asdict(args)
    with open(os.path.join(run, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
    with open(os.path.join(run, "split.json"), "w") as f:  # the deterministic train/test split
        json.dump({"train": task["train_data"].names, "test": task["test_data"].names}, f, indent=1)
    count = lambda k: sum(p.numel() for p in task[k].parameters()) if task.get(k) is not None else 0  # noqa: E731
    print("config: " + " ".join(f"{k}={v}" for k, v in config.items()))
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
