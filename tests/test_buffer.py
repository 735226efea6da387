"""Replay buffer: batched insertion, wrap-around, uniform sampling, compact storage."""
import torch

from buffer import Column, ReplayBuffer


def test_wrap_around_keeps_the_newest():
    buffer = ReplayBuffer(5, {"x": Column(())})
    buffer.add({"x": torch.tensor([0.0, 1.0, 2.0])})
    buffer.add({"x": torch.tensor([3.0, 4.0, 5.0])})  # 5 overwrites slot 0
    assert buffer.size == 5 and buffer.position == 1
    assert sorted(buffer.storage["x"].tolist()) == [1.0, 2.0, 3.0, 4.0, 5.0]
    buffer.add({"x": torch.tensor([6.0, 7.0, 8.0, 9.0, 10.0, 11.0])})  # more than capacity at once
    assert sorted(buffer.storage["x"].tolist()) == [7.0, 8.0, 9.0, 10.0, 11.0]


def test_sampling_is_uniform_over_filled_slots_and_seeded():
    buffer = ReplayBuffer(100, {"x": Column(())})
    buffer.add({"x": torch.arange(10.0)})
    a = buffer.sample(5000, torch.Generator().manual_seed(1))["x"]
    b = buffer.sample(5000, torch.Generator().manual_seed(1))["x"]
    assert torch.equal(a, b)
    counts = torch.bincount(a.long(), minlength=10)
    assert counts.numel() == 10 and counts.min() > 400  # only filled slots, each ~500 times


def test_uint8_round_trip_per_channel_range():
    low, high = torch.tensor([-2.0, 0.0, -1.0]).view(3, 1, 1), torch.tensor([2.0, 1.0, 3.0]).view(3, 1, 1)
    buffer = ReplayBuffer(4, {"s": Column((3, 2, 2), torch.uint8, low, high)})
    x = low + (high - low) * torch.rand(2, 3, 2, 2)
    buffer.add({"s": x})
    back = buffer._decode("s", buffer.storage["s"][:2])
    assert torch.all((back - x).abs() <= (high - low) / 255 / 2 + 1e-6)
    assert buffer.bytes_per_transition() == 12


def test_transitions_stay_together():
    buffer = ReplayBuffer(50, {"a": Column(()), "b": Column((2,), torch.float16)})
    values = torch.arange(20.0)
    buffer.add({"a": values, "b": torch.stack([values, -values], 1)})
    batch = buffer.sample(30, torch.Generator().manual_seed(0))
    assert torch.equal(batch["b"][:, 0], batch["a"]) and torch.equal(batch["b"][:, 1], -batch["a"])
    assert batch["b"].dtype == torch.float32
