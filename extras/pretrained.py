"""A style model small enough to ship or share: a run's planner and actor, its settings and its own per-step table
on the held-out photos, in one file that `evaluate.py --checkpoint` reads like a run's checkpoint.

    python -m extras.pretrained runs/style-seed1 pretrained/style.pt     # the run folder (or its checkpoint.pt)

The file holds no critic, optimiser state or replay buffer: float32 planner and actor, about 0.7 MB. Its
"table" is what `evaluate.py --checkpoint` prints on the built-in held-out photos (float32, plan mean), with the
VGG-16 weights named under "vgg" (the losses depend on them; the SSIM column does not): evaluate.py on the file
prints the same table (tests/test_pretrained.py).
"""
from __future__ import annotations

import argparse
import io
import os
import sys

import torch

from config import Args
from data import DataError
from evaluate import EVALUATE, held_out
from extras.evaluation import load_networks
from extras.figures import print_table
from extras.runlog import CheckpointError, atomic_file, read_checkpoint, saved_args
from tasks import build
from vgg import VGGError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STYLE_MODEL = os.path.join(ROOT, "pretrained", "style.pt")
KEPT = ("args", "planner", "actor", "updates")  # what a shipped file holds, besides its table and VGG source
LIMIT = int(1.5 * 2**20)  # bytes: a shipped file stays under 1.5 MB


def held_out_table(state: dict, steps: list[int], grid: str) -> tuple[list[dict], str]:
    """The per-step table of `state`'s planner and actor on the built-in held-out photos, evaluated in float32
    on the CPU, and the VGG-16 weights its losses used (the run's choice)."""
    args = Args(**saved_args(state, "the checkpoint", to_resume=False))
    task = build(args, torch.device("cpu"))
    load_networks(task, state, "the checkpoint", args.image_size)
    images = held_out(args.task, task["test_data"])
    return EVALUATE[args.task](task, images, steps, grid), task["vgg"].source


def export(run: str, path: str, steps: list[int]) -> tuple[list[dict], str]:
    """Write the planner, actor and settings of `run` with their held-out table to `path`; returns the table and
    the grid of the held-out photos it wrote into the run's folder."""
    checkpoint = os.path.join(run, "checkpoint.pt") if os.path.isdir(run) else run
    if not os.path.isfile(checkpoint):
        raise DataError(f"{run}: no checkpoint.pt (give a run folder of train.py or its checkpoint file)")
    state = read_checkpoint(checkpoint)
    if state["args"]["task"] != "style" or state["args"].get("content_dir") or state["args"].get("style_image"):
        raise DataError(f"{run}: only a --task style run on the built-in photos and style image is shipped this way")
    small = {k: state[k] for k in KEPT}
    grid = os.path.join(os.path.dirname(checkpoint), "pretrained_grid.png")  # the run's folder, not the repository
    small["table"], small["vgg"] = held_out_table(small, steps, grid)
    buffer = io.BytesIO()
    torch.save(small, buffer)
    if buffer.tell() > LIMIT:
        raise DataError(f"{path}: {buffer.tell() / 2**20:.2f} MB, over the 1.5 MB a shipped model may take")
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with atomic_file(path, "wb") as f:
        f.write(buffer.getvalue())
    return small["table"], grid


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", help="a train.py run folder of --task style, or its checkpoint.pt")
    parser.add_argument("out", nargs="?", default=STYLE_MODEL, help="the file to write [default: pretrained/style.pt]")
    parser.add_argument("--steps", type=int, nargs="+", default=[1, 2, 3, 4], help="steps in its table [1 2 3 4]")
    opts = parser.parse_args(argv)
    if min(opts.steps) < 1:
        parser.error("--steps must be positive")
    try:
        table, grid = export(opts.run, opts.out, sorted(set(opts.steps)))
    except (DataError, VGGError, CheckpointError) as e:
        sys.exit(f"error: {e}")
    print_table(table)
    print(f"wrote {opts.out} ({os.path.getsize(opts.out) / 2**20:.2f} MB) and {grid}")


if __name__ == "__main__":
    main()
