"""One agent on several processes: torch.distributed, launched by torchrun (docs/distributed.md).

    torchrun --standalone --nproc_per_node=2 train.py --task digits           # 2 processes, gloo on the CPU
    torchrun --standalone --nproc_per_node=4 train.py --task inpaint --device cuda  # 4 GPUs, NCCL, one a rank

Every rank (process) runs its own environments and its own replay buffer on its own device, drawing from
generators seeded by --seed and its rank (`rank_seed`). Every rank builds the networks from the same seed,
and rank 0's copy is broadcast to be sure. Before every optimiser step the gradients of the parameters that
step updates are averaged over the ranks (`average_gradients`: one flat buffer, summed, divided by K), so
every rank takes the same step and keeps bitwise the same parameters; the target critic follows by E8 on
each rank. Batch normalisation's running statistics, the one state a forward pass changes, are averaged
after each update (`average_buffers`); on CUDA with K > 1 the batch statistics themselves are synchronised
(`SyncBatchNorm`). Decisions that must be the same everywhere (does any episode still run, is every buffer
ready, did anyone ask to stop) are agreed by `any_rank` and `every_rank`.

Why a plain all-reduce and not DistributedDataParallel: one update trains up to seven networks by different
losses (critic, planner twice, temperature, discriminator, J_Aux, reward head), some with a frozen critic
inside the planner's loss and a network run twice in one backward; DDP's hooks would need every parameter
to get a gradient in every backward. The all-reduce before each step shows what DDP would do, in ten lines
(CleanRL's ppo_atari_multigpu makes the same choice).

Without torchrun (no WORLD_SIZE, or 1) nothing here talks to anyone: every function returns at once and a
run is bitwise the one-process run of before.
"""
from __future__ import annotations

import datetime
import hashlib
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn as nn

TIMEOUT = datetime.timedelta(minutes=5)  # a collective that waits longer (a rank died or hangs) raises


@dataclass(frozen=True)
class World:
    rank: int = 0        # this process, 0 ... size - 1; rank 0 alone prints, logs, checkpoints and reports
    size: int = 1        # K, the number of processes
    local_rank: int = 0  # this process on its machine: its GPU


def setup(device: str) -> World:
    """The process group torchrun's environment describes (NCCL when this rank uses a GPU, else gloo)."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size == 1:
        return World()
    world = World(int(os.environ["RANK"]), size, int(os.environ.get("LOCAL_RANK", "0")))
    cuda = device != "cpu" and torch.cuda.is_available()
    if cuda:
        torch.cuda.set_device(world.local_rank)
    dist.init_process_group("nccl" if cuda else "gloo", timeout=TIMEOUT)
    return world


def active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def close(wait: bool = False) -> None:
    """The process group closed, once per process. With `wait` every rank meets at a barrier first, at a point
    where no rank communicates any more, so that no rank tears down a group a peer still uses; after an error
    (`wait` False) nothing waits for ranks that may never come."""
    if dist.is_available() and dist.is_initialized():
        if wait:
            dist.barrier()
        dist.destroy_process_group()


def rank_seed(seed: int, rank: int) -> int:
    """The seed of rank r's own draws (data, plans, buffer sampling, environment noise): rank 0 keeps --seed."""
    return seed + 10_000 * rank


def _average(tensors: list[torch.Tensor]) -> None:
    """Replace each tensor by its mean over the ranks: one flat buffer, one all-reduce."""
    if not tensors:
        return
    flat = torch.cat([t.reshape(-1) for t in tensors])
    dist.all_reduce(flat)
    flat /= dist.get_world_size()
    offset = 0
    for t in tensors:
        t.copy_(flat[offset:offset + t.numel()].view_as(t))
        offset += t.numel()


def average_gradients(optimiser: torch.optim.Optimizer) -> None:
    """The gradients of the parameters this optimiser steps, averaged over the ranks (before its step)."""
    if active():
        _average([p.grad for group in optimiser.param_groups for p in group["params"] if p.grad is not None])


def average_buffers(*modules: nn.Module | None) -> None:
    """Batch normalisation's running statistics (every floating-point buffer), averaged over the ranks."""
    if active():
        with torch.no_grad():
            _average([b for m in modules if m is not None for b in m.buffers() if b.is_floating_point()])


def broadcast(modules: dict[str, nn.Module], log_alpha: torch.Tensor) -> None:
    """Rank 0's parameters and buffers (and log alpha) to every rank."""
    if active():
        with torch.no_grad():
            for module in modules.values():
                if isinstance(module, nn.Module):
                    for t in [*module.parameters(), *module.buffers()]:
                        dist.broadcast(t, 0)
            dist.broadcast(log_alpha, 0)


def share_networks(modules: dict[str, nn.Module], log_alpha: torch.Tensor, task: dict, args, rank: int,
                   reseed) -> int:
    """Rank 0's networks on every rank, then each rank's own seed for its draws (data, plans, sampling,
    environment noise): `reseed(seed, deterministic)` and the task's generators. Returns that seed (rank 0:
    --seed, so that one process is untouched)."""
    broadcast(modules, log_alpha)
    seed = rank_seed(args.seed, rank)
    if rank:
        reseed(seed, args.deterministic)
        for generator in task.get("generators", {}).values():
            generator.manual_seed(seed)
    return seed


def averaged(optimiser: torch.optim.Optimizer) -> torch.optim.Optimizer:
    """The optimiser, its gradients averaged over the ranks first (`averaged(opt).step()`); as it is in one process."""
    average_gradients(optimiser)
    return optimiser


def _agree(flag: bool, op) -> bool:
    if not active():
        return flag
    device = "cuda" if dist.get_backend() == "nccl" else "cpu"
    t = torch.tensor([int(flag)], device=device)
    dist.all_reduce(t, op=op)
    return bool(t.item())


def any_rank(flag: bool) -> bool:
    """True on every rank if it is true on any."""
    return _agree(flag, dist.ReduceOp.MAX)


def every_rank(flag: bool) -> bool:
    """True on every rank if it is true on all."""
    return _agree(flag, dist.ReduceOp.MIN)


def gather(obj) -> list | None:
    """Every rank's `obj` as a list on rank 0 (None on the others); [obj] in one process."""
    if not active():
        return [obj]
    out = [None] * dist.get_world_size() if dist.get_rank() == 0 else None
    dist.gather_object(obj, out, dst=0)
    return out


def all_gather(obj) -> list:
    """Every rank's `obj`, on every rank."""
    if not active():
        return [obj]
    out = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def same_networks(modules: dict[str, nn.Module], log_alpha: torch.Tensor, step: int) -> list[str] | None:
    """Every rank's `digest`, after checking that they are all equal (ALF's check: a rank that drifted apart is
    a bug, not noise); None in one process."""
    if not active():
        return None
    digests = all_gather(digest(modules, log_alpha))
    if len(set(digests)) > 1:
        raise RuntimeError(f"the ranks' networks differ at step {step}: {digests}")
    return digests


def digest(modules: dict[str, nn.Module], log_alpha: torch.Tensor) -> str:
    """SHA-256 of every parameter and buffer of every network (not the optimisers) and of log alpha."""
    return digest_of({k: m.state_dict() for k, m in modules.items() if isinstance(m, nn.Module)}, log_alpha)


def digest_of(state_dicts: dict[str, dict[str, torch.Tensor]], log_alpha: torch.Tensor) -> str:
    """`digest` of networks as state dicts (those a checkpoint holds), in a fixed order, bit for bit."""
    h = hashlib.sha256()
    for name in sorted(state_dicts):
        for key, t in state_dicts[name].items():
            h.update(f"{name}.{key}".encode())
            h.update(t.detach().cpu().reshape(-1).view(torch.uint8).numpy().tobytes())
    h.update(log_alpha.detach().cpu().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def sync_batch_norm(task: dict, device: torch.device) -> None:
    """On CUDA with K > 1: the batch statistics of every BatchNorm over all ranks (torch has none on the CPU)."""
    if active() and device.type == "cuda":
        for k in ("planner", "actor", "discriminator"):
            if task.get(k) is not None:
                task[k] = nn.SyncBatchNorm.convert_sync_batchnorm(task[k])
