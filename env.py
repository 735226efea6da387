"""Environments: state, transition T(s, a) and reward R(s', y) of each task (README E1, E10, E11).

An environment holds N episodes at once and steps them as one batch. Its interface is the same
for every task, so `train.py` and `evaluate.py` have one code path:

    state = env.reset(source)                 # s_0, (N, C, H, W)
    state, reward, done = env.step(action)    # s_t+1, r_t (N,), d_t (N,)
    env.extras()                              # task extras stored with each transition
    env.auxiliary_loss(action, batch)         # J_Aux's task loss on a replayed minibatch (E9)
    env.buffer_fields()                       # how the replay buffer stores the above

`done` marks a task-defined terminal state (success); running out of steps (T_max) is a time
limit handled by the training loop and never written into the Bellman target.
"""
from __future__ import annotations

import torch

from buffer import Field
from losses import STYLE_LAYERS, auxiliary_loss_style, content_loss, gram_matrix, style_loss
from vgg import IMAGENET_MEAN, IMAGENET_STD, VGG16


def normalize(image: torch.Tensor) -> torch.Tensor:
    """[0, 1] RGB -> ImageNet-normalised space (the style task's state and action space)."""
    mean = image.new_tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = image.new_tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (image - mean) / std


def denormalize(x: torch.Tensor) -> torch.Tensor:
    """ImageNet-normalised space -> [0, 1] RGB, clamped."""
    mean = x.new_tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = x.new_tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (x * std + mean).clamp(0, 1)


class StyleEnv:
    """Neural style transfer (METHOD.md 5.3), one style per model.

    E10: s_0 = content image, s_t+1 = a_t (the actor's full image, clamped to valid pixels).
    E11: r_t = -kappa * L_ST(s_t+1, style). No terminal state: episodes end at T_max.
    """

    def __init__(self, vgg: VGG16, style: torch.Tensor, kappa: float = 1e6, style_weight: float = 1e5,
                 tv_weight: float = 1e-7) -> None:
        self.vgg, self.kappa = vgg, kappa
        self.style_weight, self.tv_weight = style_weight, tv_weight
        with torch.no_grad():
            features = vgg(normalize(style[None]))  # style: (3, H, W) in [0, 1]
            self.style_grams = {n: gram_matrix(getattr(features, n)) for n in STYLE_LAYERS}  # (1, C, C)
        self.content: torch.Tensor | None = None
        self.state: torch.Tensor | None = None

    def buffer_fields(self, image_size: int, plan_shape: tuple[int, ...]) -> dict[str, Field]:
        image = (3, image_size, image_size)
        low = normalize(torch.zeros(1, 3, 1, 1))[0]   # (3, 1, 1): per-channel range of valid pixels
        high = normalize(torch.ones(1, 3, 1, 1))[0]
        return {"state": Field(image, torch.uint8, low, high), "plan": Field(plan_shape),
                "reward": Field(()), "next_state": Field(image, torch.uint8, low, high),
                "done": Field(()), "content": Field(image, torch.uint8, low, high)}

    def reset(self, content: torch.Tensor) -> torch.Tensor:
        """content: (N, 3, H, W) in [0, 1] -> s_0 (N, 3, H, W), normalised."""
        self.content = normalize(content)
        self.state = self.content.clone()  # E10: s_0 = x
        return self.state

    @torch.no_grad()
    def step(self, action: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        self.state = normalize(denormalize(action))  # E10: s_t+1 = a_t, kept to valid pixels
        reward = -self.kappa * style_loss(self.vgg(self.state), self.style_grams)  # E11, (N,)
        done = torch.zeros_like(reward)  # the style task has no terminal state
        return self.state, reward, done

    def extras(self) -> dict[str, torch.Tensor]:
        return {"content": self.content}

    def auxiliary_loss(self, action: torch.Tensor, batch: dict[str, torch.Tensor]
                       ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """E14 on a replayed minibatch: content against the episode's *original* content image."""
        with torch.no_grad():
            content_features = self.vgg(batch["content"], last="relu2_2")
        return auxiliary_loss_style(action, self.vgg(action), content_features, self.style_grams,
                                    self.style_weight, self.tv_weight)

    @torch.no_grad()
    def metrics(self, image: torch.Tensor, content: torch.Tensor) -> dict[str, torch.Tensor]:
        """Per-sample content and style loss of `image` (both normalised), for evaluation: (N,) each."""
        features = self.vgg(image)
        return {"content_loss": content_loss(features, self.vgg(content, last="relu2_2")),
                "style_loss": style_loss(features, self.style_grams)}
