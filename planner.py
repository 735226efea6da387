"""Planner pi_psi(p | s): the stochastic half of the meta policy (README equations E1, E2).

The planner maps a state s_t to a diagonal Gaussian over a low-dimensional *plan* p_t and
returns its intermediate features, which the actor uses as skip connections (U-Net style).
A plan is either a vector (B, P) or a one-channel map (B, 1, h, w); everything below works
for both because log-densities are summed over every non-batch dimension.

Code name -> paper symbol:  Planner -> pi_psi,  PlanDistribution.mean -> m_psi(s),
PlanDistribution.stddev -> sigma_psi(s),  plan -> p_t.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.distributions import Normal

LOG_VAR_MIN, LOG_VAR_MAX = -10.0, 2.0  # E2's box (lmin, lmax) in the authors' code


def squash_log_variance(u: torch.Tensor, lmin: float = LOG_VAR_MIN, lmax: float = LOG_VAR_MAX) -> torch.Tensor:
    # E2: log sigma^2 = lmin + (lmax - lmin) * (tanh(u) + 1) / 2
    return lmin + (lmax - lmin) * (torch.tanh(u) + 1) / 2


class PlanDistribution(Normal):
    """Diagonal Gaussian over a plan of any shape; `log_prob` is summed to one number per sample.

    torch's argument checks are off: each one waits for the device (a GPU sync on every planner call),
    and a NaN mean would raise deep inside torch; train.py stops on non-finite losses instead."""

    def __init__(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        super().__init__(mean, std, validate_args=False)

    def sample(self, sample_shape: torch.Size = torch.Size()) -> torch.Tensor:
        """The same draw as Normal.sample (m + sigma * eps, under no_grad) without torch.normal's check
        that sigma >= 0, which a NaN would fail deep inside torch."""
        with torch.no_grad():
            return self.rsample(sample_shape)

    def log_prob(self, plan: torch.Tensor) -> torch.Tensor:  # (B, ...) -> (B,)
        return super().log_prob(plan).flatten(1).sum(1)

    def entropy(self) -> torch.Tensor:  # (B,)
        return super().entropy().flatten(1).sum(1)

    def kl_to_standard_normal(self) -> torch.Tensor:  # (B,)
        """KL(pi(. | s) || N(0, I)) = 1/2 sum(sigma^2 + m^2 - 1 - log sigma^2): E6's optional term."""
        var = self.stddev.pow(2)
        return (0.5 * (var + self.mean.pow(2) - 1 - var.log())).flatten(1).sum(1)

    # rsample() (inherited): E2, p = m + sigma * eps with eps ~ N(0, I); gradient reaches psi.
    # sample(): the same draw under no_grad, for acting only.


class ConvLayer(nn.Module):
    """Reflection pad k//2, then a conv; optional nearest x2 upsample first (fast_neural_style).

    The conv is stored as `.conv2d` so the authors' released style weights load unchanged.
    """

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int = 1, upsample: int | None = None) -> None:
        super().__init__()
        self.upsample = upsample
        self.pad = nn.ReflectionPad2d(kernel // 2)
        self.conv2d = nn.Conv2d(c_in, c_out, kernel, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.upsample:
            x = F.interpolate(x, scale_factor=self.upsample, mode="nearest")
        return self.conv2d(self.pad(x))


class ResidualBlock(nn.Module):
    """conv-IN-ReLU-conv-IN, add the input, ReLU (`final_relu=False`: no ReLU after the sum, as fast_neural_style)."""

    def __init__(self, channels: int, final_relu: bool = True) -> None:
        super().__init__()
        self.final_relu = final_relu
        self.conv1 = ConvLayer(channels, channels, 3)
        self.in1 = nn.InstanceNorm2d(channels, affine=True)
        self.conv2 = ConvLayer(channels, channels, 3)
        self.in2 = nn.InstanceNorm2d(channels, affine=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.in1(self.conv1(x)))
        y = x + self.in2(self.conv2(y))
        return F.relu(y) if self.final_relu else y


class MapPlanner(nn.Module):
    """The paper's style-transfer planner: three convs and a residual block.

    state (B, C, H, W), C = 3 (style) or 2 (digits, register) -> plan distribution over (B, 1, H/4, W/4) and
    features [f1, f2, f3].
    The plan head has no parameters: the 64 output channels split into a mean block and a
    log-variance block (32 each), reduced across channels to one plan map.
    """

    def __init__(self, in_channels: int = 3) -> None:
        super().__init__()
        self.conv1 = ConvLayer(in_channels, 16, 9)
        self.in1_e = nn.InstanceNorm2d(16, affine=True)
        self.conv2 = ConvLayer(16, 32, 3, stride=2)
        self.in2_e = nn.InstanceNorm2d(32, affine=True)
        self.conv3 = ConvLayer(32, 64, 3, stride=2)
        self.in3_e = nn.InstanceNorm2d(64, affine=True)
        self.res1 = ResidualBlock(64)

    def plan_shape(self, image_size: int) -> tuple[int, ...]:
        return (1, image_size // 4, image_size // 4)

    def forward(self, state: torch.Tensor) -> tuple[PlanDistribution, list[torch.Tensor]]:
        f1, f2, f3 = self.encode(state)
        return self.plan_head(self.res1(f3)), [f1, f2, f3]

    def encode(self, state: torch.Tensor) -> list[torch.Tensor]:
        f1 = F.relu(self.in1_e(self.conv1(state)))  # (B, 16, H, W)
        f2 = F.relu(self.in2_e(self.conv2(f1)))     # (B, 32, H/2, W/2)
        f3 = F.relu(self.in3_e(self.conv3(f2)))     # (B, 64, H/4, W/4)
        return [f1, f2, f3]

    @staticmethod
    def plan_head(h: torch.Tensor) -> PlanDistribution:
        """The parameter-free plan head: (B, 64, H/4, W/4) -> the plan distribution over (B, 1, H/4, W/4)."""
        h = h.float()                               # float32 under --amp too
        mean = h[:, :32].mean(1, keepdim=True)      # (B, 1, H/4, W/4): m_psi(s)
        log_var = squash_log_variance(h[:, 32:])    # E2, (B, 32, H/4, W/4)
        std = log_var.exp().std(1, keepdim=True) + 1e-6  # (B, 1, H/4, W/4): sigma_psi(s), authors' reduction
        return PlanDistribution(mean, std)


def recurrent_inputs(transitions: dict[str, torch.Tensor], key: str = "hidden") -> tuple[torch.Tensor, ...]:
    """The planner's extra input in a recurrent task (video: its step-wise hidden state h, in the environment's
    extras and stored with each transition), as arguments: planner(state, *recurrent_inputs(batch)). () otherwise."""
    return (transitions[key],) if key in transitions else ()


class ConvGRUCell(nn.Module):
    """A convolutional GRU cell: the hidden state h is a feature map, its gates 3x3 convolutions.

    z = sigmoid(conv([x, h])), r = sigmoid(conv([x, h])), n = tanh(conv([x, r * h])),
    h' = (1 - z) * h + z * n. With h = None the hidden state starts at zeros (a reset)."""

    def __init__(self, in_channels: int, hidden_channels: int) -> None:
        super().__init__()
        self.hidden_channels = hidden_channels
        self.gates = nn.Conv2d(in_channels + hidden_channels, 2 * hidden_channels, 3, padding=1)  # z and r
        self.candidate = nn.Conv2d(in_channels + hidden_channels, hidden_channels, 3, padding=1)  # n

    def forward(self, x: torch.Tensor, h: torch.Tensor | None) -> torch.Tensor:
        if h is None:
            h = x.new_zeros(x.shape[0], self.hidden_channels, *x.shape[2:])
        z, r = torch.sigmoid(self.gates(torch.cat([x, h], 1))).chunk(2, dim=1)
        n = torch.tanh(self.candidate(torch.cat([x, r * h], 1)))
        return (1 - z) * h + z * n


class VideoPlanner(MapPlanner):
    """The video planner: the style planner with a *step-wise* ConvGRU at the plan
    resolution. Its hidden state runs across the steps of one frame's episode and is reset (None)
    when a new episode starts.

    (state (B, 3, H, W), hidden state h_t (B, 64, H/4, W/4) or None) -> plan distribution and features
    [f1, f2, h_t+1]: the GRU's output h_t+1 replaces f3 as the actor's skip at H/4, feeds the residual
    block and the plan head, and is the hidden state of the next step (`features[-1]`).
    """

    def __init__(self, in_channels: int = 3) -> None:
        super().__init__(in_channels)
        self.hidden_channels = 64                    # h_t: (B, 64, H/4, W/4)
        self.step_gru = ConvGRUCell(64, self.hidden_channels)

    def forward(self, state: torch.Tensor, hidden: torch.Tensor | None = None
                ) -> tuple[PlanDistribution, list[torch.Tensor]]:
        f1, f2, f3 = self.encode(state)
        hidden = self.step_gru(f3, hidden)          # (B, 64, H/4, W/4): h_t+1, the step-wise hidden state
        return self.plan_head(self.res1(hidden)), [f1, f2, hidden]


class VectorPlanner(nn.Module):
    """The vector-plan planner of the face and photo tasks.

    4x4 stride-2 convs (BN, LeakyReLU 0.2) halve the state down to 4 x 4 with widths
    w, w, 2w, 4w, 8w, ...; a 4x4 valid conv gives 2 x P numbers, the mean and the raw log-variance.
    state (B, C, S, S) -> plan distribution over (B, P) and features, finest first.
    """

    def __init__(self, in_channels: int, image_size: int, plan_dim: int = 256, width: int = 32) -> None:
        super().__init__()
        self.widths = conv_widths(image_size, width)
        self.down = nn.ModuleList()
        c_in = in_channels
        for c_out in self.widths:
            self.down.append(nn.Sequential(nn.Conv2d(c_in, c_out, 4, 2, 1), nn.BatchNorm2d(c_out),
                                           nn.LeakyReLU(0.2)))
            c_in = c_out
        self.head = nn.Conv2d(c_in, 2 * plan_dim, 4)  # 4x4 valid conv: (B, 2P, 1, 1)
        self.plan_dim = plan_dim

    def plan_shape(self, image_size: int) -> tuple[int, ...]:
        return (self.plan_dim,)

    def forward(self, state: torch.Tensor) -> tuple[PlanDistribution, list[torch.Tensor]]:
        features, h = [], state
        for block in self.down:
            h = block(h)                                   # (B, w_i, S / 2^(i+1), S / 2^(i+1))
            features.append(h)
        mean, u = self.head(h).float().flatten(1).chunk(2, dim=1)  # (B, P) each; float32 under --amp too
        std = (0.5 * squash_log_variance(u)).exp()         # E2: sigma = exp(log sigma^2 / 2)
        return PlanDistribution(mean, std), features


def conv_widths(image_size: int, width: int) -> list[int]:
    """Channel widths of the stride-2 convs that take image_size down to 4: w, w, 2w, 4w, 8w (capped)."""
    n = (image_size // 4).bit_length() - 1
    if image_size < 8 or 4 * 2 ** n != image_size:
        raise ValueError(f"image size {image_size}: must be a power of two, at least 8")
    return [width * min(2 ** max(i - 1, 0), 8) for i in range(n)]
