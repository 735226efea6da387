"""One train.update on a fixed minibatch with fixed noise, in one process (the whole batch) or under torchrun
(each rank its share of it), for tests/test_distributed.py (torchrl's check of a data-parallel update):

    python tests/distributed_update.py OUT                                          # one process, batch 8
    python -m torch.distributed.run --standalone --nproc_per_node=2 tests/distributed_update.py OUT   # 4 each

Each process writes its networks after the update, and the gradients each optimiser step used, to OUT/rank{r}.pt. The networks are the style task's
(instance normalisation only, so a sample's forward pass does not depend on the others in its batch); the
plan noise of E2 is a fixed tensor, each rank taking the rows of its own samples.
"""
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from extras import distributed, stopping  # noqa: E402
import train  # noqa: E402
from extras.cli import parse_args  # noqa: E402
from planner import PlanDistribution  # noqa: E402
from tasks import build  # noqa: E402

BATCH, SIZE = 8, 16


class FixedBatch:
    """Stands in for the replay buffer: every sample is this rank's share of the fixed batch."""

    def __init__(self, batch: dict[str, torch.Tensor]) -> None:
        self.batch = batch

    def sample(self, n: int, generator) -> dict[str, torch.Tensor]:
        return self.batch


def main(out: str) -> None:
    world = distributed.setup("cpu")
    n = BATCH // world.size
    args, _ = parse_args(["--task", "style", "--set", "vgg=random", "--image-size", str(SIZE), "--batch-size", str(n),
                          "--set", "planner_every=1", "--amp", "off", "--device", "cpu"])
    torch.manual_seed(0)
    task = build(args, torch.device("cpu"))
    modules, log_alpha, target_entropy = train.initialise(args, task, torch.device("cpu"))
    g = torch.Generator().manual_seed(1)
    image = lambda: torch.rand(BATCH, 3, SIZE, SIZE, generator=g) * 4 - 2  # noqa: E731 (normalised pixels)
    whole = dict(state=image(), content=image(), next_state=image(), plan=torch.randn(BATCH, *task["plan_shape"], generator=g),
                 reward=-torch.rand(BATCH, generator=g), done=torch.zeros(BATCH))
    noise = torch.randn(BATCH, *task["plan_shape"], generator=g)
    share = slice(world.rank * n, (world.rank + 1) * n)
    names = ("planner", "actor", "critic", "critic_target", "reward_head")
    before = {k: {p: t.clone() for p, t in modules[k].state_dict().items()} for k in names}
    PlanDistribution.rsample = lambda self, sample_shape=torch.Size(): self.loc + self.scale * noise[share]  # fixed eps
    gradients = []  # the gradients each optimiser step used, after the average over the ranks

    def recording(optimiser):
        distributed.average_gradients(optimiser)
        gradients.append([p.grad.clone() for group in optimiser.param_groups for p in group["params"] if p.grad is not None])
        return optimiser
    train.averaged = stopping.averaged = recording
    train.update(args, task, FixedBatch({k: v[share] for k, v in whole.items()}), modules, log_alpha, target_entropy,
                 2, None, False)
    moved = [k for k in names if any(not torch.equal(t, modules[k].state_dict()[p]) for p, t in before[k].items())]
    torch.save({k: modules[k].state_dict() for k in names} | {"log_alpha": log_alpha.detach(), "moved": moved, "gradients": gradients},
               os.path.join(out, f"rank{world.rank}.pt"))
    distributed.close()


if __name__ == "__main__":
    main(sys.argv[1])
