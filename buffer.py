"""Replay buffer D of Algorithm 1: (s_t, p_t, r_t, s_t+1, d_t) plus task extras.

Storage is preallocated on the training device, so sampling never copies between host and
device. N transitions (one per environment) go in with one call. Image fields can be stored
compactly: `uint8` quantises values from a known range [low, high] to 256 levels (1 byte a
value instead of 4), `float16` halves the size; they come back as float32.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class Field:
    """One stored quantity: per-transition shape, storage dtype and, for uint8, the value range
    (`low`, `high`: floats or tensors that broadcast against the shape, e.g. one per channel)."""
    shape: tuple[int, ...]
    dtype: torch.dtype = torch.float32
    low: float | torch.Tensor = 0.0
    high: float | torch.Tensor = 1.0


class ReplayBuffer:
    """Ring buffer of `capacity` transitions; `add` takes a dict of (N, *shape) tensors."""

    def __init__(self, capacity: int, fields: dict[str, Field], device: torch.device | str = "cpu") -> None:
        self.capacity, self.fields, self.device = capacity, fields, torch.device(device)
        self.storage = {name: torch.zeros((capacity, *f.shape), dtype=f.dtype, device=self.device)
                        for name, f in fields.items()}
        self.position, self.size = 0, 0
        self._range = {name: (torch.as_tensor(f.low, device=self.device),
                              torch.as_tensor(f.high, device=self.device))
                       for name, f in fields.items() if f.dtype == torch.uint8}

    def bytes_per_transition(self) -> int:
        return sum(t[0].numel() * t.element_size() for t in self.storage.values())

    def _encode(self, name: str, x: torch.Tensor) -> torch.Tensor:
        if name in self._range:
            low, high = self._range[name]
            return ((x - low) / (high - low) * 255).round().clamp(0, 255).to(torch.uint8)
        return x.to(self.fields[name].dtype)

    def _decode(self, name: str, x: torch.Tensor) -> torch.Tensor:
        if name in self._range:
            low, high = self._range[name]
            return x.float() / 255 * (high - low) + low
        return x.float()

    @torch.no_grad()
    def add(self, transitions: dict[str, torch.Tensor]) -> None:
        """Insert N transitions at once (N = number of environments), wrapping around."""
        n = next(iter(transitions.values())).shape[0]
        index = (self.position + torch.arange(n, device=self.device)) % self.capacity  # (N,)
        for name, store in self.storage.items():
            store[index] = self._encode(name, transitions[name].to(self.device))
        self.position = (self.position + n) % self.capacity
        self.size = min(self.size + n, self.capacity)

    @torch.no_grad()
    def sample(self, batch_size: int, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """Uniform minibatch of `batch_size` stored transitions, decoded to float32."""
        if self.size == 0:
            raise RuntimeError("cannot sample from an empty replay buffer")
        index = torch.randint(self.size, (batch_size,), device=self.device, generator=generator)
        return {name: self._decode(name, store[index]) for name, store in self.storage.items()}
