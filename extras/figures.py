"""The pictures and tables evaluate.py writes: image grids with a label strip, displacement fields drawn as a
warped square grid, label maps over an image, and the per-step table printed and written as CSV.
"""
from __future__ import annotations

import csv

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from losses import STYLE_LAYERS, warp, warp_labels


def save_grid(rows: list[list[torch.Tensor]], path: str, labels: list[str], scale: int = 1) -> None:
    """Save a grid of [0, 1] images (rows x columns, each (3, H, W)) with a label strip on top."""
    from PIL import ImageDraw

    pad = 2
    h, w = rows[0][0].shape[1] * scale, rows[0][0].shape[2] * scale
    label_h = 14
    grid = Image.new("RGB", (len(rows[0]) * (w + pad) + pad, label_h + len(rows) * (h + pad) + pad), "white")
    draw = ImageDraw.Draw(grid)
    for j, label in enumerate(labels):
        draw.text((pad + j * (w + pad) + 2, 1), label, fill="black")
    for i, row in enumerate(rows):
        for j, image in enumerate(row):
            array = (image.clamp(0, 1).permute(1, 2, 0).cpu().numpy() * 255).round().astype(np.uint8)
            tile = Image.fromarray(array).resize((w, h), Image.NEAREST)
            grid.paste(tile, (pad + j * (w + pad), label_h + pad + i * (h + pad)))
    grid.save(path)


def field_grid(field: torch.Tensor, scale: int, spacing: int) -> torch.Tensor:
    """Fields (N, 2, H, W) in pixels drawn as a square grid warped by them, at `scale` x the image size, a line
    every `spacing` image pixels: (N, 3, scale H, scale W) in [0, 1] (the paper's first figure)."""
    lines = torch.ones(1, 1, *(scale * n for n in field.shape[-2:]), device=field.device)
    lines[..., 1::spacing * scale, :] = lines[..., :, 1::spacing * scale] = 0
    big = scale * F.interpolate(field, scale_factor=scale, mode="bilinear", align_corners=False)
    return warp(lines.expand(len(field), -1, -1, -1), big).expand(-1, 3, -1, -1)


def label_overlay(image: torch.Tensor, labels: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Grey images (N, 1, H, W) with label maps (N, 1, H, W) in colour over them and the outlines of the
    `reference` labels in white: (N, 3, H, W) in [0, 1]. Where the colours fill the outlines, the labels agree."""
    import matplotlib

    palette = torch.tensor(matplotlib.colormaps["tab10"].colors, dtype=torch.float32, device=image.device)
    colour = palette[labels[:, 0] % 10].permute(0, 3, 1, 2) * (labels > 0)        # (N, 3, H, W), background black
    out = 0.5 * image.expand(-1, 3, -1, -1) + 0.5 * colour
    edge = torch.zeros_like(reference, dtype=torch.bool)
    edge[..., :-1, :] |= reference[..., :-1, :] != reference[..., 1:, :]
    edge[..., :, :-1] |= reference[..., :, :-1] != reference[..., :, 1:]
    return torch.where(edge, torch.ones_like(out), out)


def digits_grid(env, pairs: torch.Tensor, states: list[torch.Tensor], steps: list[int], path: str,
                grid_rows: int = 6) -> None:
    """evaluate_digits' grid: moving | steps | fixed | the final field Omega as a warped square grid (the paper's
    first figure)."""
    scale = 4  # the field is drawn at 4x: a square grid, a line every 2 digit pixels, warped by Omega
    field_image = field_grid(env.field, scale, 2)                            # the final field Omega
    rows = [[pairs[i, 1:].expand(3, -1, -1).cpu(), *[env.to_image(states[k][i]).cpu() for k in steps],
             pairs[i, :1].expand(3, -1, -1).cpu(), field_image[i].cpu()]
            for i in range(min(grid_rows, len(pairs)))]
    save_grid(rows, path, ["moving", *[f"step {k}" for k in steps], "fixed", "field"], scale)


def registration_grid(env, pairs: torch.Tensor, states: list[torch.Tensor], steps: list[int], moving_labels: torch.Tensor,
                      fixed_labels: torch.Tensor, path: str, grid_rows: int = 6) -> None:
    """evaluate_register's grid: fixed | moving | steps | field Omega as a warped grid | labels (the moved image's true
    labels in colour over the fixed image, the fixed image's outlines in white)."""
    scale = max(1, 128 // pairs.shape[-1])
    n = min(grid_rows, len(pairs))
    grids = field_grid(env.fields[max(steps)][:n], scale, max(2, pairs.shape[-1] // 16))  # a line every S/16 pixels
    overlay = label_overlay(pairs[:n, :1], warp_labels(moving_labels[:n], env.fields[max(steps)][:n]), fixed_labels[:n])
    big = lambda image: F.interpolate(image[None], scale_factor=scale, mode="nearest")[0]  # noqa: E731
    rows = [[big(pairs[i, :1].expand(3, -1, -1)).cpu(), big(pairs[i, 1:2].expand(3, -1, -1)).cpu(),
             *[big(env.to_image(states[k][i])).cpu() for k in steps], grids[i].cpu(), big(overlay[i]).cpu()]
            for i in range(n)]
    save_grid(rows, path, ["fixed", "moving", *[f"step {k}" for k in steps], "field", "labels"])


CSV_ONLY = tuple(f"style {name}" for name in STYLE_LAYERS)  # E13 layer by layer: in eval.csv, not printed


def print_table(table: list[dict], path: str = "") -> None:
    """Print the per-step table (less the CSV_ONLY columns); with `path`, also write it, whole, as CSV."""
    keys = [k for k in table[0] if k not in CSV_ONLY]
    widths = [max(12, len(k), *(len(r[k]) for r in table if isinstance(r[k], str))) for k in keys]
    print(" ".join(f"{k:>{w}}" for k, w in zip(keys, widths)))
    for r in table:
        print(" ".join(f"{r[k]:>{w}}" if isinstance(r[k], (int, str)) else f"{r[k]:>{w}.4g}" for k, w in zip(keys, widths)))
    if path:
        write_csv(table, path)


def write_csv(table: list[dict], path: str) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, list(table[0]))
        writer.writeheader()
        writer.writerows(table)
