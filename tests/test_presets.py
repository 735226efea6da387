"""The paper-scale (CUDA) presets, run on the CPU before anyone rents a GPU: each task built at its preset's
image size, widths, plan size and batch, two collection steps and one update, and the replay memory the
preset's buffer would take (its estimate, against the table in docs/speed-and-faults.md)."""
import pytest
import torch

import train
from buffer import ReplayBuffer, transition_bytes
from extras.memory import BufferTooLarge, memory_estimate
from config import Args
from tasks import PRESETS, build

DOCUMENTED = {"style": 606_216, "inpaint": 69_000, "photo": 197_640, "digits": 9_612}  # bytes a transition


@pytest.mark.parametrize("task", list(PRESETS))
def test_the_cuda_preset_collects_and_updates_on_the_cpu(task):
    values = {**PRESETS[task].get("all", {}), **PRESETS[task]["cuda"]}
    batch = values.get("batch_size", Args.batch_size)
    args = Args(task=task, device="cpu", vgg="random", **{**values, "num_envs": 2, "learning_starts": 2})
    torch.manual_seed(0)
    data = build(args, torch.device("cpu"))
    env, size = data["env"], args.image_size
    columns = env.buffer_columns(size, data["plan_shape"])
    try:
        line = memory_estimate(args.buffer_size, columns)
    except BufferTooLarge as e:  # the estimate of a buffer larger than this machine's memory
        line = str(e)
    assert f"{args.buffer_size:,}" in line and "KiB per transition" in line, line
    if task in DOCUMENTED:
        assert transition_bytes(columns) == DOCUMENTED[task]
    modules, log_alpha, target_entropy = train.initialise(args, data, torch.device("cpu"))
    buffer = ReplayBuffer(8, columns)  # room for the two steps' transitions, not the preset's whole buffer
    state = env.reset(data["train_data"].sample(args.num_envs, torch.Generator().manual_seed(0)))
    running = torch.ones(args.num_envs, dtype=torch.bool)
    for _ in range(2):  # A1.5-A1.8
        state, _, done = train.collect(args, data, buffer, state, running)
        running &= done == 0
    out = train.update(args, data, buffer, modules, log_alpha, target_entropy, 2, torch.Generator(), True)  # a batch
    assert state.shape[-1] == size and torch.isfinite(out["aux_loss"]) and torch.isfinite(out["critic_loss"])  # of
    assert buffer.size == 4 and args.batch_size == batch  # the preset's size, drawn from the 4 transitions
