"""Environments: state, transition T(s, a) and reward R(s', y) of each task (README E1, E10, E11, E15, E16,
E21, E22, E25-E27, E30, E31, E33). One interface for every task, N episodes at once as one batch:

    state = env.reset(source)                 # s_0, (N, C, H, W)
    state, reward, done = env.step(action)    # s_t+1, r_t (N,), d_t (N,): done marks a success, never T_max
    env.extras()                              # task extras of the current state, stored with its transition
    stored = env.pack(transition)             # what the replay buffer keeps of a transition (buffer_columns)
    batch = env.unpack(stored)                # ... and the whole transition rebuilt from it, for updates
    env.auxiliary_loss(action, batch, D)      # J_Aux's task loss on a replayed minibatch (E9); D or None
    env.to_image(state)                       # a state as [0, 1] RGB, for pictures and metrics

pack() keeps no second copy of what can be rebuilt: an inpainting state is the face with the hole's content
pasted in, so the buffer stores the face once and the two holes; photo translation stores the source once.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from buffer import Column
from losses import (STYLE_LAYERS, auxiliary_loss_digits, auxiliary_loss_inpaint, auxiliary_loss_photo,
                    auxiliary_loss_style, compose, content_loss, dice, gram_matrix, label_dice, overlap_weights, psnr,
                    style_loss, style_terms, synthetic_flow, temporal_loss, warp)
from vgg import VGG16, denormalize, normalize


PASS = ("plan", "reward", "done")  # stored as they are by every task's pack()


class StyleEnv:
    """Neural style transfer, one style per model.

    E10: s_0 = content image, s_t+1 = a_t (the actor's full image, clamped to valid pixels): the paper's
    transition (`residual=False`). O1 (ours, `residual=True`): s_t+1 = s_t + a_t, the action a change
    of the state, with an actor whose last layer starts at zero, so that the first steps keep the photo;
    O2 (`step_size` eps > 0): s_t+1 = s_t + eps tanh(a_t), each step bounded.
    E11: r_t = -c L_ST(s_t+1, style), c = `reward_scale`. No terminal state: episodes end at T_max.
    """

    def __init__(self, vgg: VGG16, style: torch.Tensor, reward_scale: float = 1e6, style_weight: float = 1e5,
                 tv_weight: float = 1e-7, residual: bool = False, step_size: float = 0.0, layer_weights=(1, 1, 1, 1)) -> None:
        self.vgg, self.reward_scale, self.residual, self.step_size = vgg, reward_scale, residual, step_size
        self.style_weight, self.tv_weight, self.layer_weights = style_weight, tv_weight, layer_weights  # E14, w_l: E13
        with torch.no_grad():
            features = vgg(normalize(style[None]))  # style: (3, H, W) in [0, 1]
            self.style_grams = {n: gram_matrix(getattr(features, n)) for n in STYLE_LAYERS}  # (1, C, C)
        self.content = self.state = None

    def buffer_columns(self, image_size: int, plan_shape: tuple[int, ...]) -> dict[str, Column]:
        low, high = normalize(torch.zeros(1, 3, 1, 1))[0], normalize(torch.ones(1, 3, 1, 1))[0]  # valid pixels, (3, 1, 1)
        image = Column((3, image_size, image_size), torch.uint8, low, high)
        return {"state": image, "plan": Column(plan_shape), "reward": Column(()), "next_state": image,
                "done": Column(()), "content": image}

    def reset(self, content: torch.Tensor) -> torch.Tensor:
        """content: (N, 3, H, W) in [0, 1] -> s_0 (N, 3, H, W), normalised."""
        self.content = normalize(content)
        self.state = self.content.clone()  # E10: s_0 = x
        return self.state

    def next_image(self, state: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """T(s_t, a_t) before it is kept to valid pixels: a_t (E10), s_t + a_t (O1) or, with a step size
        eps > 0, s_t + eps tanh(a_t) (O2: no pixel moves by more than eps in one step)."""
        if not self.residual:
            return action                                            # E10
        if self.step_size > 0:
            return state + self.step_size * torch.tanh(action)      # O2
        return state + action                                        # O1

    @torch.no_grad()
    def step(self, action: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        self.state = normalize(denormalize(self.next_image(self.state, action)))  # E10, O1 or O2; valid pixels
        reward = -self.reward_scale * style_loss(self.vgg(self.state), self.style_grams, self.layer_weights)  # E11
        done = torch.zeros_like(reward)  # the style task has no terminal state
        return self.state, reward, done

    def extras(self) -> dict[str, torch.Tensor]:
        return {"content": self.content}

    def pack(self, transition: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return dict(transition)  # nothing to leave out: s_t, s_t+1 and the content image all differ

    def unpack(self, stored: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return dict(stored)

    def to_image(self, state: torch.Tensor) -> torch.Tensor:
        return denormalize(state)

    def auxiliary_loss(self, action: torch.Tensor, batch: dict[str, torch.Tensor], discriminator=None
                       ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """E14 on a replayed minibatch, on the image the action makes (`next_image`), its content against the
        episode's *original* content image x."""
        with torch.no_grad():
            content_features = self.vgg(batch["content"], last="relu2_2")
        image = self.next_image(batch["state"], action)
        return auxiliary_loss_style(image, self.vgg(image), content_features, self.style_grams,
                                    self.style_weight, self.tv_weight, self.layer_weights)

    @torch.no_grad()
    def metrics(self, image: torch.Tensor, content: torch.Tensor) -> dict[str, torch.Tensor]:
        """Per-sample content and style loss of `image` (both normalised), for evaluation: (N,) each."""
        features = self.vgg(image)
        terms = style_terms(features, self.style_grams)  # E13's layers: relu1_2 mostly colour, the deeper ones texture
        return {"content_loss": content_loss(features, self.vgg(content, last="relu2_2")),
                "style_loss": sum(terms.values()), **{f"style_{name}": term for name, term in terms.items()}}


class VideoEnv(StyleEnv):
    """Video style transfer: the style environment (E10, E11), one frame an episode, and two additions.
    The planner's step-wise GRU state h_t (`hidden`): zeros at each reset (a new frame), then the planner's
    output after each step (`carry`), stored with each transition for s_t and s_t+1, so that replayed updates
    run the planner as it acted. And J_Aux's compound temporal term (E30, E31), which runs the current policy
    on a synthetic next frame: this environment is given the planner and actor for it."""

    def __init__(self, vgg: VGG16, style: torch.Tensor, planner: torch.nn.Module, actor: torch.nn.Module,
                 reward_scale: float = 1e6, style_weight: float = 1e5, tv_weight: float = 1e-7,
                 temporal_weight: float = 100.0, noise: float = 1e-3, seed: int = 0, device: torch.device | str = "cpu",
                 residual: bool = False, step_size: float = 0.0, layer_weights: tuple = (1, 1, 1, 1)) -> None:
        super().__init__(vgg, style, reward_scale, style_weight, tv_weight, residual, step_size, layer_weights)
        self.planner, self.actor = planner, actor
        self.temporal_weight, self.noise = temporal_weight, noise
        self.generator = torch.Generator(device).manual_seed(seed)  # the synthetic flows and noise; checkpointed
        self.hidden: torch.Tensor | None = None

    def buffer_columns(self, image_size: int, plan_shape: tuple[int, ...]) -> dict[str, Column]:
        # a GRU state lies in (-1, 1); 8 bits with steps of 1/127 from -128/127, so that 0 (a reset) is exact
        hidden = Column((self.planner.hidden_channels, image_size // 4, image_size // 4), torch.uint8, -128 / 127, 1.0)
        return {**super().buffer_columns(image_size, plan_shape), "hidden": hidden, "next_hidden": hidden}

    def reset(self, content: torch.Tensor) -> torch.Tensor:
        n, _, h, w = content.shape
        self.hidden = content.new_zeros(n, self.planner.hidden_channels, h // 4, w // 4)  # h_0 = 0: a fresh GRU
        return super().reset(content)

    def carry(self, features: list[torch.Tensor]) -> torch.Tensor:
        """After acting on s_t: the planner's new hidden state h_t+1 (its last feature) becomes s_t+1's; returned too."""
        self.hidden = features[-1].float()
        return self.hidden

    def extras(self) -> dict[str, torch.Tensor]:
        return {"content": self.content, "hidden": self.hidden}

    def auxiliary_loss(self, action: torch.Tensor, batch: dict[str, torch.Tensor], discriminator=None
                       ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """E14 (the style terms) + zeta * L_CT (E31) on a replayed minibatch."""
        loss, parts = super().auxiliary_loss(action, batch)
        if self.temporal_weight > 0:
            l_ct = self.temporal_term(batch["state"], batch["hidden"]).mean()
            loss = loss + self.temporal_weight * l_ct  # E31
            parts["temporal"] = l_ct.detach()
        return loss, parts

    def temporal_term(self, state: torch.Tensor, hidden: torch.Tensor) -> torch.Tensor:
        """E30, E31: x = a replayed state, x' = W(x) + Delta a synthetic next frame (W a random smooth flow,
        Delta noise of std `noise`); f = one step of the current policy with the plan mean (what inference
        runs), the actor's frame-wise hidden state carried from f(x) to f(x'), the planner's hidden state warped with
        the frame. Returns L_CT per sample (B,)."""
        n, _, h, w = state.shape
        flow = synthetic_flow(n, h, w, self.generator)                                   # W, (B, 2, H, W)
        noise = torch.randn(state.shape, generator=self.generator, device=state.device)
        next_state = warp(state, flow, padding="border") + self.noise * noise          # E30: x' = W(x) + Delta
        small = F.interpolate(flow, size=hidden.shape[-2:], mode="bilinear", align_corners=False) / 4
        dist, features = self.planner(state, hidden)
        action, frame_hidden = self.actor.step(dist.mean, features, None)
        output = self.next_image(state, action)                                          # f(x)
        dist, features = self.planner(next_state, warp(hidden, small, padding="border"))
        next_action, _ = self.actor.step(dist.mean, features, frame_hidden)
        next_output = self.next_image(next_state, next_action)                          # f(x')
        return temporal_loss(output, next_output, flow)                                 # E31


def hole_geometry(image_size: int) -> tuple[int, int, int]:
    """(start, end, ring) of the centre patch [start:end] and its overlap ring, in proportion to the
    paper's 128 x 128 faces: patch [32:96], ring 4, hole [36:92]. At 64: [16:48], ring 2."""
    return image_size // 4, 3 * image_size // 4, max(1, image_size // 32)


class InpaintEnv:
    """Face inpainting with a centre hole. Images are in [-1, 1].

    The action is the centre patch [start:end] (S/2 x S/2); the hole is its inner region, the patch
    less a `ring`-pixel border that overlaps the known face (predicted, weighted, never pasted).
    E15: s_0 = x with the hole filled white; s_t+1 = s_0 with the inner region of a_t pasted in
         (not cumulative: always into the original masked image).
    E16: r_t = PSNR(a_t, y_centre) + bonus * d_t, d_t = [PSNR > success_psnr], times `reward_scale`.
    """

    def __init__(self, image_size: int, rec_weight: float = 1.2, adv_weight: float = 0.001,
                 success_psnr: float = 26.0, bonus: float = 10.0, reward_scale: float = 1.0) -> None:
        self.start, self.end, self.ring = hole_geometry(image_size)
        self.rec_weight, self.adv_weight = rec_weight, adv_weight
        self.success_psnr, self.bonus, self.reward_scale = success_psnr, bonus, reward_scale
        self.weights = overlap_weights(self.end - self.start, self.ring)  # E17's W, (1, 1, P, P)
        self.masked = self.target = None

    @property
    def hole(self) -> tuple[slice, slice]:  # the hole (the pasted inner region): image[..., rows, cols]
        return (slice(self.start + self.ring, self.end - self.ring),) * 2

    @property
    def hole_size(self) -> int:
        return self.end - self.start - 2 * self.ring

    def buffer_columns(self, image_size: int, plan_shape: tuple[int, ...]) -> dict[str, Column]:
        hole = Column((3, self.hole_size, self.hole_size), torch.uint8, -1.0, 1.0)
        return {"image": Column((3, image_size, image_size), torch.uint8, -1.0, 1.0), "hole": hole, "next_hole": hole,
                "plan": Column(plan_shape), "reward": Column(()), "done": Column(())}

    def reset(self, image: torch.Tensor) -> torch.Tensor:
        """image: (N, 3, S, S) in [0, 1] -> s_0 (N, 3, S, S) in [-1, 1], the hole white."""
        x = self.image = image * 2 - 1
        self.target = x[..., self.start:self.end, self.start:self.end]           # y_centre, (N, 3, P, P)
        self.masked = x.clone()
        self.masked[(..., *self.hole)] = 1.0                                      # E15: s_0
        return self.masked

    @torch.no_grad()
    def step(self, action: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """action: the patch (N, 3, P, P) -> s_t+1, r_t (N,), d_t (N,)."""
        r = self.ring
        state = self.masked.clone()
        state[(..., *self.hole)] = action[..., r:-r, r:-r]      # E15: paste the inner region into s_0
        score = psnr(action, self.target)                       # E16, on the whole patch
        done = (score > self.success_psnr).float()
        return state, self.reward_scale * (score + self.bonus * done), done  # E16: r_t, d_t

    def extras(self) -> dict[str, torch.Tensor]:
        return {"image": self.image}  # the whole face x: s_0 and y_centre are parts of it

    def pack(self, transition: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The face once and the holes of s_t and s_t+1: the states differ from the face only there."""
        return {"image": transition["image"], "hole": transition["state"][(..., *self.hole)],
                "next_hole": transition["next_state"][(..., *self.hole)], **{k: transition[k] for k in PASS}}

    def unpack(self, stored: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        image = stored["image"]
        state, next_state = image.clone(), image.clone()
        state[(..., *self.hole)], next_state[(..., *self.hole)] = stored["hole"], stored["next_hole"]  # E15
        return {"state": state, "next_state": next_state, "target": image[..., self.start:self.end, self.start:self.end],
                **{k: stored[k] for k in PASS}}

    def to_image(self, state: torch.Tensor) -> torch.Tensor:
        return ((state + 1) / 2).clamp(0, 1)

    def auxiliary_loss(self, action: torch.Tensor, batch: dict[str, torch.Tensor], discriminator=None
                       ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """E20 on a replayed minibatch: the patch against the true centre, the adversarial term once D is on."""
        fake_logits = discriminator(action) if discriminator is not None else None
        self.weights = self.weights.to(action.device)  # once: a no-op when already there
        return auxiliary_loss_inpaint(action, batch["target"], self.weights, fake_logits,
                                      self.rec_weight, self.adv_weight)


class PhotoEnv:
    """Paired photo translation, pix2pix data. Images are in [-1, 1].

    E21: s_t = concat(x, y_t), 6 channels: the source and the current output. y_0 is the source image
         (`init="source"`, the default, as the authors' README says) or uniform noise in [-1, 1]
         (`init="noise"`, as their code does; drawn from the environment's own seeded generator).
         The action is a full image and replaces the output: y_t+1 = a_t.
    E22: r_t = PSNR(a_t, y) + bonus * d_t, d_t = [PSNR > success_psnr], times `reward_scale`.
    """

    def __init__(self, l1_weight: float = 1.0, adv_weight: float = 0.02, tv2_weight: float = 0.1,
                 success_psnr: float = 30.0, bonus: float = 10.0, reward_scale: float = 1.0,
                 init: str = "source", seed: int = 0, device: torch.device | str = "cpu") -> None:
        if init not in ("source", "noise"):
            raise ValueError(f"init {init!r}: choose source or noise")
        self.l1_weight, self.adv_weight, self.tv2_weight = l1_weight, adv_weight, tv2_weight
        self.success_psnr, self.bonus, self.reward_scale, self.init = success_psnr, bonus, reward_scale, init
        self.generator = torch.Generator(device).manual_seed(seed)  # init="noise"'s y_0 (train.py checkpoints it)
        self.source = self.target = None

    def buffer_columns(self, image_size: int, plan_shape: tuple[int, ...]) -> dict[str, Column]:
        image = Column((3, image_size, image_size), torch.uint8, -1.0, 1.0)
        return {"source": image, "output": image, "next_output": image, "target": image, "plan": Column(plan_shape),
                "reward": Column(()), "done": Column(())}

    def reset(self, pair: torch.Tensor) -> torch.Tensor:
        """pair: (N, 6, S, S) in [0, 1], source then target -> s_0 (N, 6, S, S) in [-1, 1]."""
        pair = pair * 2 - 1
        self.source, self.target = pair[:, :3], pair[:, 3:]
        if self.init == "source":
            output = self.source                                                    # E21: y_0 = x
        else:
            if self.generator.device.type != self.source.device.type:  # a new generator would escape checkpoints
                raise ValueError(f"PhotoEnv(device={self.generator.device}) got images on {self.source.device}")
            output = torch.rand(self.source.shape, generator=self.generator, device=self.source.device) * 2 - 1  # E21
        return torch.cat([self.source, output], 1)

    @torch.no_grad()
    def step(self, action: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """action: the new output (N, 3, S, S) -> s_t+1, r_t (N,), d_t (N,)."""
        state = torch.cat([self.source, action], 1)                # E21: y_t+1 = a_t
        score = psnr(action, self.target)                          # E22
        done = (score > self.success_psnr).float()
        return state, self.reward_scale * (score + self.bonus * done), done  # E22: r_t, d_t

    def extras(self) -> dict[str, torch.Tensor]:
        return {"source": self.source, "target": self.target}

    def pack(self, transition: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The source once (it is the first half of both states), the outputs y_t and y_t+1, the target."""
        return {"source": transition["source"], "output": transition["state"][:, 3:],
                "next_output": transition["next_state"][:, 3:], "target": transition["target"],
                **{k: transition[k] for k in PASS}}

    def unpack(self, stored: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        source = stored["source"]
        return {"state": torch.cat([source, stored["output"]], 1), "target": stored["target"],   # E21
                "next_state": torch.cat([source, stored["next_output"]], 1), **{k: stored[k] for k in PASS}}

    def to_image(self, state: torch.Tensor) -> torch.Tensor:  # the current output y_t, as [0, 1] RGB
        return ((state[..., 3:, :, :] + 1) / 2).clamp(0, 1)

    def auxiliary_loss(self, action: torch.Tensor, batch: dict[str, torch.Tensor], discriminator=None
                       ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """E24 on a replayed minibatch: L1 to the target, the adversarial and TV terms once D is on."""
        fake_logits = discriminator(action) if discriminator is not None else None
        return auxiliary_loss_photo(action, batch["target"], fake_logits, self.l1_weight, self.adv_weight,
                                    self.tv2_weight)


INK = 1e-3  # E27's "> 0": above grid_sample's round-off (about 1e-6), below MNIST's faintest ink (1/255)


class RegistrationEnv:
    """Deformable registration of a moving image onto a fixed one: the digit transform and `--task register`
    (the SPAC task), one environment. Images are in [0, 1]. The state is [fixed, moved] (2 channels). The action is a displacement field a_t (2, H, W) in pixels,
    at most `max_step` a pixel per step (the actor's tanh, clamped again here).
    E25: Omega_t+1 = warp(Omega_t, a_t) + a_t, Omega_0 = 0;  E26: moved_t+1 = warp(moving, Omega_t+1),
         always the *original* moving image, so no blur builds up.
    Reward, times `reward_scale`, done when the Dice is above `success_dice`:
    E27 (digits, `classes` 0): r_t = 10 Dice(moved_t+1 > 0, fixed > 0); "> 0" is "> INK", so that
         interpolation round-off is not ink.
    E33 (register, `classes` k): r_t = 10 mean Dice(warp(U_M, Omega_t+1), U_F) over the classes but the
         darkest (the background), U the images' k-means labels (given with the pair by the data).
    `fields` keeps Omega_0 ... Omega_t of the running episodes, for evaluation.
    """

    def __init__(self, max_step: float = 0.5, success_dice: float = 0.96, smooth_weight: float = 1.0,
                 dice_weight: float = 10.0, reward_scale: float = 1.0, classes: int = 0) -> None:
        self.max_step, self.success_dice, self.smooth_weight = max_step, success_dice, smooth_weight
        self.dice_weight, self.reward_scale, self.classes = dice_weight, reward_scale, classes
        self.fixed = self.moving = self.field = self.segments = None
        self.fields: list[torch.Tensor] = []

    def buffer_columns(self, image_size: int, plan_shape: tuple[int, ...]) -> dict[str, Column]:
        image = Column((1, image_size, image_size), torch.uint8)
        return {"fixed": image, "moved": image, "next_moved": image, "moving": image,
                "field": Column((2, image_size, image_size)), "plan": Column(plan_shape), "reward": Column(()),
                "done": Column(())}

    def reset(self, pair: torch.Tensor) -> torch.Tensor:
        """pair: (N, 2, H, W) in [0, 1], fixed then moving (register: (N, 4, H, W), then the k-means labels
        U_F and U_M) -> s_0 = [fixed, moving]."""
        self.fixed, self.moving = pair[:, :1], pair[:, 1:2]
        self.segments = pair[:, 2:4].long() if self.classes else None  # U_F, U_M
        self.field = torch.zeros_like(pair[:, :2])  # Omega_0 = 0, (N, 2, H, W)
        self.fields = [self.field]
        return pair[:, :2].clone()

    @torch.no_grad()
    def step(self, action: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """action: a step field (N, 2, H, W) -> s_t+1, r_t (N,), d_t (N,)."""
        self.field = compose(self.field, action.clamp(-self.max_step, self.max_step))  # E25
        self.fields.append(self.field)
        moved = warp(self.moving, self.field)                          # E26
        score = self.score(moved)                                      # E27 or E33
        done = (score > self.success_dice).float()
        return torch.cat([self.fixed, moved], 1), self.reward_scale * self.dice_weight * score, done

    def score(self, moved: torch.Tensor) -> torch.Tensor:
        """The Dice of the reward, (N,): E27 of the ink masks, or E33 of the warped k-means labels."""
        if not self.classes:
            return dice(moved > INK, self.fixed > INK)                                                # E27
        return label_dice(self.segments[:, 1:], self.segments[:, :1], self.field, self.classes)       # E33

    def extras(self) -> dict[str, torch.Tensor]:
        return {"moving": self.moving, "field": self.field}  # of s_t: the original moving image, the field Omega_t

    def pack(self, transition: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The fixed image once (the first channel of both states), the moved images of s_t and s_t+1."""
        return {"fixed": transition["state"][:, :1], "moved": transition["state"][:, 1:],
                "next_moved": transition["next_state"][:, 1:], "moving": transition["moving"],
                "field": transition["field"], **{k: transition[k] for k in PASS}}

    def unpack(self, stored: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        fixed = stored["fixed"]
        return {"state": torch.cat([fixed, stored["moved"]], 1), "next_state": torch.cat([fixed, stored["next_moved"]], 1),
                "moving": stored["moving"], "field": stored["field"], **{k: stored[k] for k in PASS}}

    def to_image(self, state: torch.Tensor) -> torch.Tensor:  # the moved image, as grey RGB in [0, 1]
        return state[..., 1:2, :, :].expand(*state.shape[:-3], 3, *state.shape[-2:]).clamp(0, 1)

    def auxiliary_loss(self, action: torch.Tensor, batch: dict[str, torch.Tensor], discriminator=None
                       ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """E29 on a replayed minibatch: the moving image warped by Omega_t and the new step, against the fixed."""
        moved = warp(batch["moving"], compose(batch["field"], action))   # E25, E26 with gradient
        return auxiliary_loss_digits(moved, batch["state"][:, :1], action, self.smooth_weight)
