"""Actor mu_phi(s, p): the deterministic half of the meta policy (README equation E1).

The actor decodes a plan p_t, together with the planner's skip features of the same state,
into the high-dimensional action a_t (for style transfer: a full image). It has no noise of
its own; all exploration happens in the plan.

Code name -> paper symbol:  Actor -> mu_phi,  plan -> p_t,  action -> a_t.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from planner import ConvLayer


class StyleActor(nn.Module):
    """The paper's style-transfer actor (METHOD.md 5.3): three up-sampling layers, three skips.

    plan (B, 1, H/4, W/4) + features [f1 (16, H), f2 (32, H/2), f3 (64, H/4)] -> action (B, 3, H, W),
    an image in ImageNet-normalised space (no output activation, as in the authors' code).
    """

    def __init__(self, out_channels: int = 3) -> None:
        super().__init__()
        self.deconv3 = ConvLayer(1 + 64, 64, 3, upsample=2)
        self.in3_d = nn.InstanceNorm2d(64, affine=True)
        self.deconv2 = ConvLayer(64 + 32, 32, 3, upsample=2)
        self.in2_d = nn.InstanceNorm2d(32, affine=True)
        self.deconv1 = ConvLayer(32 + 16, out_channels, 9)
        # Present in the authors' released weights but unused in their forward pass; kept so the
        # released actor file loads without editing.
        self.in1_d = nn.InstanceNorm2d(out_channels, affine=True)

    def forward(self, plan: torch.Tensor, features: list[torch.Tensor]) -> torch.Tensor:
        f1, f2, f3 = features
        h = F.relu(self.in3_d(self.deconv3(torch.cat([plan, f3], 1))))  # (B, 64, H/2, W/2)
        h = F.relu(self.in2_d(self.deconv2(torch.cat([h, f2], 1))))     # (B, 32, H, W)
        return self.deconv1(torch.cat([h, f1], 1))                      # (B, 3, H, W)
