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

from planner import ConvGRUCell, ConvLayer


class MapActor(nn.Module):
    """The paper's style-transfer actor: three up-sampling layers, three skips.

    plan (B, 1, H/4, W/4) + features [f1 (16, H), f2 (32, H/2), f3 (64, H/4)] -> action (B, 3, H, W),
    an image in ImageNet-normalised space (no output activation, as in the authors' code). The digit
    transform uses the same networks with 2 channels in and out, the output through a scaled tanh.
    """

    def __init__(self, out_channels: int = 3, tanh_scale: float | None = None, zero_init: bool = False) -> None:
        super().__init__()
        self.tanh_scale = tanh_scale  # digit transform: the action is tanh_scale * tanh(output), a bounded field
        self.deconv3 = ConvLayer(1 + 64, 64, 3, upsample=2)
        self.in3_d = nn.InstanceNorm2d(64, affine=True)
        self.deconv2 = ConvLayer(64 + 32, 32, 3, upsample=2)
        self.in2_d = nn.InstanceNorm2d(32, affine=True)
        self.deconv1 = ConvLayer(32 + 16, out_channels, 9)
        # Present in the authors' released weights but unused in their forward pass; kept so the
        # released actor file loads without editing.
        self.in1_d = nn.InstanceNorm2d(out_channels, affine=True)
        if zero_init:  # O1: the first action is zero, s_1 = s_0 + 0 = the photo
            nn.init.zeros_(self.deconv1.conv2d.weight), nn.init.zeros_(self.deconv1.conv2d.bias)

    def forward(self, plan: torch.Tensor, features: list[torch.Tensor]) -> torch.Tensor:
        f1, f2, f3 = features
        return self.decode(torch.cat([plan, f3], 1), f2, f1)

    def decode(self, x: torch.Tensor, f2: torch.Tensor, f1: torch.Tensor) -> torch.Tensor:
        """The three up-sampling layers from the H/4 input x (plan and skip, concatenated)."""
        h = F.relu(self.in3_d(self.deconv3(x)))                         # (B, 64, H/2, W/2)
        h = F.relu(self.in2_d(self.deconv2(torch.cat([h, f2], 1))))     # (B, 32, H, W)
        out = self.deconv1(torch.cat([h, f1], 1))                       # (B, C, H, W)
        return out if self.tanh_scale is None else self.tanh_scale * torch.tanh(out)


class VideoActor(MapActor):
    """The video actor: the style actor with a *frame-wise* ConvGRU at its input.

    Its hidden state m (B, 16, H/4, W/4) carries, for each step index t, what step t of the previous
    frame computed to step t of this frame; it is None (zeros) for a video's first frame and for
    training on single images. The GRU reads the actor's input (plan and planner skip at H/4) and
    its new state joins that input: the first up-sampling layer takes 1 + 64 + 16 channels.
    """

    def __init__(self, hidden_channels: int = 16, zero_init: bool = False) -> None:
        super().__init__(zero_init=zero_init)
        self.frame_gru = ConvGRUCell(1 + 64, hidden_channels)
        self.deconv3 = ConvLayer(1 + 64 + hidden_channels, 64, 3, upsample=2)

    def forward(self, plan: torch.Tensor, features: list[torch.Tensor],
                frame_hidden: torch.Tensor | None = None) -> torch.Tensor:
        return self.step(plan, features, frame_hidden)[0]

    def step(self, plan: torch.Tensor, features: list[torch.Tensor], frame_hidden: torch.Tensor | None
             ) -> tuple[torch.Tensor, torch.Tensor]:
        """(action, the frame-wise hidden state for the same step of the next frame)."""
        f1, f2, f3 = features
        x = torch.cat([plan, f3], 1)                      # (B, 65, H/4, W/4)
        frame_hidden = self.frame_gru(x, frame_hidden)    # (B, 16, H/4, W/4)
        return self.decode(torch.cat([x, frame_hidden], 1), f2, f1), frame_hidden


def up_block(c_in: int, c_out: int) -> nn.Sequential:
    """3x3 conv, batch norm, LeakyReLU 0.2 (the caller upsamples first)."""
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, 1, 1), nn.BatchNorm2d(c_out), nn.LeakyReLU(0.2))


class VectorActor(nn.Module):
    """The vector-plan actor of the face and photo tasks.

    The plan (B, P) is spread over 4 x 4, then up-blocks (nearest x2, conv, BN, LeakyReLU) climb back
    to full size, concatenating the planner feature of each scale (U-Net style); a last 3x3 conv
    gives the image in [-1, 1]: clamped (face inpainting) or through tanh (`tanh=True`, photo
    translation), as in the authors' code. `widths` are the VectorPlanner's. For a full-size action (photo
    translation) one more up-block, without a skip, climbs from S/2 to S. With `patch=True` it is left out
    and the action is the half-size patch (S/2 x S/2) of face inpainting.
    """

    def __init__(self, widths: list[int], plan_dim: int = 256, out_channels: int = 3, patch: bool = False,
                 tanh: bool = False) -> None:
        super().__init__()
        self.tanh = tanh
        self.blocks = nn.ModuleList()
        c = plan_dim
        for w in reversed(widths):                 # coarsest (4 x 4) first
            self.blocks.append(up_block(c + w, w))
            c = w
        self.top = None if patch else up_block(c, c)  # S/2 -> S (after a nearest x2 upsample)
        self.out = nn.Conv2d(c, out_channels, 3, 1, 1)

    def forward(self, plan: torch.Tensor, features: list[torch.Tensor]) -> torch.Tensor:
        h = plan[:, :, None, None].expand(-1, -1, 4, 4)  # (B, P, 4, 4)
        for i, (block, f) in enumerate(zip(self.blocks, reversed(features))):
            if i > 0:
                h = F.interpolate(h, scale_factor=2, mode="nearest")
            h = block(torch.cat([h, f], 1))               # (B, w_i, s, s), s = f's size
        if self.top is not None:
            h = self.top(F.interpolate(h, scale_factor=2, mode="nearest"))  # (B, w_0, S, S)
        h = self.out(h)                                   # (B, 3, S, S), or (B, 3, S/2, S/2) for a patch
        return torch.tanh(h) if self.tanh else h.clamp(-1, 1)
