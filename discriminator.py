"""Discriminator D_omega of the GAN tasks (README E18, E19).

A local discriminator judges the actor's image (the inpainting patch, or the whole translated
photo) against the ground truth. It only shapes the auxiliary loss J_Aux: it is not part of the
Planner-Actor-Critic and never sees the plan.

4x4 stride-2 convs (LeakyReLU 0.2) halve the input down to 4 x 4 with widths 32, 64, 128, 256;
a 4x4 valid conv gives one logit per image. Spectral norm is on every conv after the first.
The sigmoid of the paper is applied inside the loss (`losses.discriminator_loss`), which is the same
function computed in a numerically stable way.

Code name -> paper symbol:  Discriminator -> D_omega.
"""
from __future__ import annotations

import torch
import torch.nn as nn
from torch.nn.utils.parametrizations import spectral_norm


class Discriminator(nn.Module):
    """image (B, C, S, S), S a power of two >= 8 -> logit (B,)."""

    def __init__(self, in_channels: int, image_size: int, width: int = 32, max_width: int = 256) -> None:
        super().__init__()
        if image_size < 8 or image_size & (image_size - 1):
            raise ValueError(f"discriminator input {image_size}: must be a power of two, at least 8")
        layers, c, size = [], in_channels, image_size
        while size > 4:
            c_out = min(width * 2 ** len(layers), max_width)  # 32, 64, 128, 256
            conv = nn.Conv2d(c, c_out, 4, 2, 1)
            layers.append(nn.Sequential(spectral_norm(conv) if layers else conv, nn.LeakyReLU(0.2)))
            c, size = c_out, size // 2
        self.features = nn.Sequential(*layers)
        self.head = spectral_norm(nn.Conv2d(c, 1, 4))  # 4x4 valid conv: (B, 1, 1, 1)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(image)).flatten().float()  # (B,) logits, float32 under --amp too
