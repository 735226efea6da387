"""Will it fit? The free memory of a device, and the replay buffer's one-line estimate that refuses, before
anything is allocated, a buffer larger than 90 % of it.
"""
from __future__ import annotations

import os

import torch

from buffer import Column, transition_bytes

GiB = 2 ** 30


class BufferTooLarge(Exception):
    """The replay buffer asked for would not fit in the memory available."""


def available_memory(device: torch.device) -> int | None:
    """Bytes free for a new allocation: free GPU memory, or the OS's MemAvailable (None if unknown)."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:
        with open("/proc/meminfo") as f:  # Linux
            return next(int(line.split()[1]) * 1024 for line in f if line.startswith("MemAvailable:"))
    except (OSError, StopIteration, ValueError):
        pass
    try:  # other Unix systems
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None


def memory_estimate(capacity: int, fields: dict[str, Column], device: torch.device | str = "cpu") -> str:
    """One line for the start of a run: the size of one transition, of the whole buffer and what is free.
    Raises BufferTooLarge when the buffer would take more than 90 % of the free memory."""
    device = torch.device(device)
    per, free = transition_bytes(fields), available_memory(device)
    need = capacity * per
    line = f"replay buffer: {per / 1024:.1f} KiB per transition x {capacity:,} = {need / GiB:.2f} GiB on {device.type}"
    if free is None:
        return line + " (free memory unknown)"
    if need > 0.9 * free:
        raise BufferTooLarge(f"--buffer-size {capacity:,}: the replay buffer needs {need / GiB:.1f} GiB "
                                f"({per / 1024:.1f} KiB per transition) but only {free / GiB:.1f} GiB of {device.type} "
                                f"memory is free; lower --buffer-size (at most about {int(0.9 * free / per):,} fit)")
    return line + f" ({free / GiB:.1f} GiB free)"
