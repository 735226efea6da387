"""Critic Q_theta(s, p): twin soft Q-functions on (state, plan) (README equations E4, E5, E8).

The critic scores the *plan*, never the pixel action: that is what keeps Soft Actor-Critic
tractable when actions have 10^4 to 10^6 dimensions. Two Q-networks (theta_1, theta_2) reduce
over-estimation; their target copies (theta-bar) are made by `target_copy` and moved by
`losses.soft_update`.

A spatial plan (1, h, w) joins the state's conv features by channel concatenation at the
resolution h x w; a vector plan (P,) joins after the conv stack. Either way Q is one scalar
per sample, for any batch size (the authors' style critic was a per-pixel map, valid for batch 1).

Code name -> paper symbol:  Critic.q1, Critic.q2 -> Q_theta1, Q_theta2;  target -> Q_theta-bar;
RewardHead -> r-hat_eta (ours, adaptive stopping, not in the paper).
"""
from __future__ import annotations

import copy

import torch
import torch.nn as nn


def down(c_in: int, c_out: int) -> nn.Sequential:
    """4x4 stride-2 conv, instance norm, LeakyReLU 0.2: halves the resolution."""
    return nn.Sequential(nn.Conv2d(c_in, c_out, 4, 2, 1), nn.InstanceNorm2d(c_out, affine=True), nn.LeakyReLU(0.2))


class QNetwork(nn.Module):
    """One Q-function: state (B, C, H, W) and plan (B, *plan_shape) -> Q (B,)."""

    def __init__(self, state_channels: int, image_size: int, plan_shape: tuple[int, ...],
                 width: int = 32, max_width: int = 256) -> None:
        super().__init__()
        spatial = len(plan_shape) == 3
        join_size = plan_shape[-1] if spatial else 0  # resolution where the plan joins
        before, after, size, c = [], [], image_size, state_channels
        while size > 4:  # halve down to 4 x 4 (the plan map joins on the way if it is spatial)
            if spatial and size == join_size:
                c += plan_shape[0]
            c_out = min(width * 2 ** len(before + after), max_width)
            (before if spatial and size > join_size else after).append(down(c, c_out))
            c, size = c_out, size // 2
        if spatial and join_size == 4 and size == 4:
            c += plan_shape[0]
        self.spatial = spatial
        self.before_plan = nn.Sequential(*before)
        self.after_plan = nn.Sequential(*after)
        head_in = c + (0 if spatial else plan_shape[0])
        self.head = nn.Sequential(nn.Linear(head_in, 256), nn.LeakyReLU(0.2), nn.Linear(256, 1))

    def forward(self, state: torch.Tensor, plan: torch.Tensor) -> torch.Tensor:
        if self.spatial:
            h = self.before_plan(state)                   # (B, c, h, w), plan's resolution
            h = self.after_plan(torch.cat([h, plan], 1))  # (B, c', 4, 4)
            h = h.mean((2, 3))                            # (B, c')
        else:
            h = self.after_plan(state).mean((2, 3))       # (B, c')
            h = torch.cat([h, plan], 1)                   # (B, c' + P)
        return self.head(h).squeeze(1).float()            # (B,), float32 under --amp too


class Critic(nn.Module):
    """Twin Q-functions. `forward` returns (Q_theta1(s, p), Q_theta2(s, p)), each (B,)."""

    def __init__(self, state_channels: int, image_size: int, plan_shape: tuple[int, ...], width: int = 32) -> None:
        super().__init__()
        self.q1 = QNetwork(state_channels, image_size, plan_shape, width)
        self.q2 = QNetwork(state_channels, image_size, plan_shape, width)

    def forward(self, state: torch.Tensor, plan: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.q1(state, plan), self.q2(state, plan)


def target_copy(critic: Critic) -> Critic:
    """theta-bar <- theta (E8's hard copy at start): parameters *and* buffers, in eval mode,
    never trained by gradient."""
    target = copy.deepcopy(critic)
    target.eval()
    target.requires_grad_(False)
    return target


class RewardHead(nn.Module):
    """Adaptive stopping (ours, README O3, O4): r-hat_eta(s), the reward a step earns by reaching the state
    s, predicted from s alone: one small Q-network (width 8, no plan input) regressed on the next states and
    rewards stored in D. Every task's reward is a score of the state reached (minus its style loss, its
    PSNR, its Dice), so r-hat is a quality estimate of a state that needs no target; which plan led there,
    sampled in training or the mean at inference, does not enter. It is not a critic (no bootstrap, no
    discount) and shares no gradient with planner, actor or critics."""

    def __init__(self, state_channels: int, image_size: int, width: int = 8) -> None:
        super().__init__()
        self.net = QNetwork(state_channels, image_size, (0,), width, max_width=8 * width)  # a plan of size 0

    def forward(self, state: torch.Tensor) -> torch.Tensor:
        return self.net(state, state.new_zeros(len(state), 0))  # (B,)
