"""Benchmarks: how big RL-I2IT's networks are next to pix2pix's generator.

    python benchmark.py sizes          # parameters and FLOPs per image, every task, and pix2pix's U-Net

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
    from train import Args

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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("what", choices=["sizes"], help="sizes: parameters and FLOPs against pix2pix")
    parser.parse_args(argv)
    torch.manual_seed(0)
    print(markdown(size_table()))


if __name__ == "__main__":
    main()
