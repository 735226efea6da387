"""Losses of the Planner-Actor-Critic (README equations E4 to E9) and the style auxiliary loss (E12 to E14).

Every loss is a top-level function of tensors, so a test can call it on hand-built numbers.
`train.py` calls them in the order of Algorithm 1.

Code name -> paper symbol:  critic_loss -> J_Q(theta),  planner_loss -> J_kappa(psi),
temperature_loss -> J(alpha),  auxiliary_loss_style -> J_Aux(psi, phi) for style transfer.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from vgg import VGGFeatures

STYLE_LAYERS = ("relu1_2", "relu2_2", "relu3_3", "relu4_3")
CONTENT_LAYER = "relu2_2"


# ---------------------------------------------------------------- Soft Actor-Critic (E4 to E8)
def soft_bellman_target(reward: torch.Tensor, done: torch.Tensor, next_q1: torch.Tensor,
                        next_q2: torch.Tensor, next_log_prob: torch.Tensor, alpha: torch.Tensor | float,
                        gamma: float) -> torch.Tensor:
    """E4: y = r + gamma (1 - d) (min_i Q_bar_i(s', p') - alpha log pi(p' | s')), no gradient."""
    soft_value = torch.min(next_q1, next_q2) - alpha * next_log_prob
    return (reward + gamma * (1.0 - done) * soft_value).detach()  # E4


def critic_loss(q1: torch.Tensor, q2: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """E5: J_Q = E[(Q_theta1(s, p) - y)^2] + E[(Q_theta2(s, p) - y)^2]."""
    return F.mse_loss(q1, target) + F.mse_loss(q2, target)  # E5, both critics


def planner_loss(log_prob: torch.Tensor, q1: torch.Tensor, q2: torch.Tensor,
                 alpha: torch.Tensor | float, kl: torch.Tensor | None = None,
                 kl_weight: float = 0.0) -> torch.Tensor:
    """E6: J_kappa = E[alpha log pi(p~ | s) - min_i Q_theta_i(s, p~)] (+ beta KL(pi || N(0, I))).

    `log_prob`, `q1`, `q2` must come from a reparameterised plan p~ = m + sigma * eps
    (`rsample()`), or -Q sends no gradient into the planner (the authors' bug).
    """
    loss = (alpha * log_prob - torch.min(q1, q2)).mean()  # E6
    if kl is not None and kl_weight > 0:
        loss = loss + kl_weight * kl.mean()  # E6, SPAC's optional KL term
    return loss


def temperature_loss(log_alpha: torch.Tensor, log_prob: torch.Tensor, target_entropy: float) -> torch.Tensor:
    """E7: J(alpha) = E[-log alpha (log pi(p | s) + H_bar)], log pi detached."""
    return -(log_alpha * (log_prob.detach() + target_entropy)).mean()  # E7


@torch.no_grad()
def soft_update(target: nn.Module, source: nn.Module, tau: float) -> None:
    """E8: theta_bar <- tau theta + (1 - tau) theta_bar for parameters; buffers are copied."""
    for p_target, p in zip(target.parameters(), source.parameters()):
        p_target.lerp_(p, tau)  # E8
    for b_target, b in zip(target.buffers(), source.buffers()):
        b_target.copy_(b)


# ---------------------------------------------------------------- style transfer (E12 to E14)
def gram_matrix(features: torch.Tensor) -> torch.Tensor:
    """Gram = F F^T / (C H W): (B, C, H, W) -> (B, C, C)."""
    b, c, h, w = features.shape
    f = features.reshape(b, c, h * w)                 # (B, C, HW)
    return f @ f.transpose(1, 2) / (c * h * w)        # (B, C, C)


def style_loss(features: VGGFeatures, style_grams: dict[str, torch.Tensor]) -> torch.Tensor:
    """E13: L_ST = sum_l MSE(Gram(phi_l(x)), Gram(phi_l(style))) per sample: (B,)."""
    loss = 0.0
    for name in STYLE_LAYERS:
        g = gram_matrix(getattr(features, name))      # (B, C, C)
        loss = loss + (g - style_grams[name]).pow(2).mean((1, 2))  # E13
    return loss


def content_loss(features: VGGFeatures, content_features: VGGFeatures) -> torch.Tensor:
    """E12: L_CO = MSE(phi_relu2_2(x), phi_relu2_2(content)) per sample: (B,)."""
    a, c = getattr(features, CONTENT_LAYER), getattr(content_features, CONTENT_LAYER)
    return (a - c).pow(2).mean((1, 2, 3))  # E12


def total_variation(image: torch.Tensor) -> torch.Tensor:
    """L_TV = sum |x[i, j+1] - x[i, j]| + sum |x[i+1, j] - x[i, j]| per sample: (B,)."""
    dx = (image[..., :, 1:] - image[..., :, :-1]).abs().sum((1, 2, 3))
    dy = (image[..., 1:, :] - image[..., :-1, :]).abs().sum((1, 2, 3))
    return dx + dy


def auxiliary_loss_style(action: torch.Tensor, action_features: VGGFeatures, content_features: VGGFeatures,
                         style_grams: dict[str, torch.Tensor], style_weight: float,
                         tv_weight: float) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """E14: J_Aux = L_CO + lambda L_ST + beta L_TV, averaged over the batch; also the parts."""
    l_co = content_loss(action_features, content_features).mean()
    l_st = style_loss(action_features, style_grams).mean()
    l_tv = total_variation(action).mean()
    loss = l_co + style_weight * l_st + tv_weight * l_tv  # E14
    return loss, {"content": l_co.detach(), "style": l_st.detach(), "tv": l_tv.detach()}
