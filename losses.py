"""Losses of the Planner-Actor-Critic (README equations E4 to E9) and the task losses: style transfer
(E12 to E14), face inpainting (E16 to E20), photo translation (E23, E24), the digit transform (E25 to
E29), video style transfer (E30 to E32), deformable registration (E33, E34; its J_Aux is E29's) and the
reward head of adaptive stopping (O3, ours).

Every loss is a top-level function of tensors, so a test can call it on hand-built numbers.
`train.py` calls them in the order of Algorithm 1.

Code name -> paper symbol:  critic_loss -> J_Q(theta),  planner_loss -> J_kappa(psi),
temperature_loss -> J(alpha),  auxiliary_loss_style / auxiliary_loss_inpaint -> J_Aux(psi, phi) of the
task,  discriminator_loss -> J_D(omega),  generator_loss -> L_adv.
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


def style_terms(features: VGGFeatures, style_grams: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """E13's term of each layer l, MSE(Gram(phi_l(x)), Gram(phi_l(style))) per sample: {l: (B,)}."""
    return {name: (gram_matrix(getattr(features, name)) - style_grams[name]).pow(2).mean((1, 2))  # (B, C, C) -> (B,)
            for name in STYLE_LAYERS}


def style_loss(features: VGGFeatures, style_grams: dict[str, torch.Tensor], weights: tuple = (1, 1, 1, 1)) -> torch.Tensor:
    """E13: L_ST = sum_l w_l MSE(Gram(phi_l(x)), Gram(phi_l(style))) per sample: (B,); the paper's w_l = 1."""
    return sum(w * t for w, t in zip(weights, style_terms(features, style_grams).values()))  # E13


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
                         style_grams: dict[str, torch.Tensor], style_weight: float, tv_weight: float,
                         layer_weights: tuple = (1, 1, 1, 1)) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """E14: J_Aux = L_CO + lambda L_ST (layers weighted by w_l) + beta L_TV, over the batch; and its parts."""
    l_co = content_loss(action_features, content_features).mean()  # E12
    terms = {name: term.mean() for name, term in style_terms(action_features, style_grams).items()}
    l_st = sum(w * t for w, t in zip(layer_weights, terms.values()))  # E13
    l_tv = total_variation(action).mean()
    loss = l_co + style_weight * l_st + tv_weight * l_tv  # E14
    return loss, {"content": l_co.detach(), "style": l_st.detach(), "tv": l_tv.detach(),
                  **{f"style_{name}": term.detach() for name, term in terms.items()}}


# ---------------------------------------------------------------- face inpainting (E16 to E20)
def psnr(image: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """E16's PSNR of images in [-1, 1], per sample: (B,). Equal to PSNR on [0, 255] (peak 255):
    255^2 / MSE_255 = 2^2 / MSE_[-1,1]. Capped at 100 dB for identical images."""
    mse = (image - target).pow(2).flatten(1).mean(1)
    return 10 * torch.log10(4.0 / mse.clamp_min(4e-10))  # E16: 10 log10(peak^2 / MSE)


def overlap_weights(patch_size: int, ring: int, inside: float = 0.998, ring_factor: float = 5.0) -> torch.Tensor:
    """E17's W for a patch: `inside` on the inner region, `ring_factor * inside` on the `ring`-pixel
    border that overlaps the known image. (1, 1, P, P)."""
    w = torch.full((1, 1, patch_size, patch_size), ring_factor * inside)
    w[..., ring:patch_size - ring, ring:patch_size - ring] = inside
    return w


def weighted_l1(action: torch.Tensor, target: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """E17: L_rec = mean(W * |a - y_centre|) over batch, channels and pixels."""
    return (weights * (action - target).abs()).mean()  # E17


def discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """E18: J_D = BCE(sigmoid(D(y)), 1) + BCE(sigmoid(D(a)), 0), the action detached by the caller."""
    return (F.binary_cross_entropy_with_logits(real_logits, torch.ones_like(real_logits))
            + F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits)))  # E18


def generator_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """E19: L_adv = BCE(sigmoid(D(a)), 1) = -log D(a), the non-saturating generator loss."""
    return F.binary_cross_entropy_with_logits(fake_logits, torch.ones_like(fake_logits))  # E19


def auxiliary_loss_inpaint(action: torch.Tensor, target: torch.Tensor, weights: torch.Tensor,
                           fake_logits: torch.Tensor | None, rec_weight: float = 1.2,
                           adv_weight: float = 0.001) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """E20: J_Aux = 1.2 L_rec + 0.001 L_adv; L_adv only once the discriminator is on (`fake_logits`)."""
    l_rec = weighted_l1(action, target, weights)
    l_adv = generator_loss(fake_logits) if fake_logits is not None else torch.zeros((), device=action.device)
    loss = rec_weight * l_rec + adv_weight * l_adv  # E20
    return loss, {"rec": l_rec.detach(), "adv": l_adv.detach()}


# ---------------------------------------------------------------- photo translation (E21 to E24)
def total_variation_squared(image: torch.Tensor) -> torch.Tensor:
    """E23: L_TV2 = mean (x[i, j+1] - x[i, j])^2 + mean (x[i+1, j] - x[i, j])^2 per sample: (B,)."""
    dx = (image[..., :, 1:] - image[..., :, :-1]).pow(2).mean((1, 2, 3))
    dy = (image[..., 1:, :] - image[..., :-1, :]).pow(2).mean((1, 2, 3))
    return dx + dy  # E23


def auxiliary_loss_photo(action: torch.Tensor, target: torch.Tensor, fake_logits: torch.Tensor | None,
                         l1_weight: float = 1.0, adv_weight: float = 0.02, tv_weight: float = 0.1
                         ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """E24: J_Aux = 1 L1 + 0.02 L_adv + 0.1 L_TV2 once the discriminator is on (`fake_logits`);
    L1 alone before (the GAN warm-up)."""
    l1 = (action - target).abs().mean()
    zero = torch.zeros((), device=action.device)
    l_adv = generator_loss(fake_logits) if fake_logits is not None else zero
    l_tv = total_variation_squared(action).mean() if fake_logits is not None else zero
    loss = l1_weight * l1 + adv_weight * l_adv + tv_weight * l_tv  # E24
    return loss, {"rec": l1.detach(), "adv": l_adv.detach(), "tv": l_tv.detach()}


# ---------------------------------------------------------------- digit transform (E25 to E29)
def identity_grid(height: int, width: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """Pixel coordinates (1, 2, H, W): channel 0 the column x, channel 1 the row y."""
    y, x = torch.meshgrid(torch.arange(height, dtype=torch.float32, device=device),
                          torch.arange(width, dtype=torch.float32, device=device), indexing="ij")
    return torch.stack([x, y])[None]


def warp(image: torch.Tensor, field: torch.Tensor, padding: str = "zeros") -> torch.Tensor:
    """E26: image(p + field(p)), bilinear. image (B, C, H, W); field (B, 2, H, W) in pixels (x, y)."""
    h, w = image.shape[-2:]
    position = identity_grid(h, w, image.device) + field                         # (B, 2, H, W)
    grid = torch.stack([position[:, 0] * (2 / (w - 1)), position[:, 1] * (2 / (h - 1))], -1) - 1  # (B, H, W, 2), [-1, 1]
    return F.grid_sample(image, grid, mode="bilinear", padding_mode=padding, align_corners=True)


def compose(field: torch.Tensor, step: torch.Tensor) -> torch.Tensor:
    """E25: Omega_t = warp(Omega_t-1, a_t) + a_t, so that warp(x, Omega_t) = warp(warp(x, Omega_t-1), a_t).
    Fields (B, 2, H, W) in pixels; the old field is extended at the border."""
    return warp(field, step, padding="border") + step  # E25


def dice(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """E27's Dice of two masks (B, ...) of 0/1: 2 |a and b| / (|a| + |b|), per sample (B,); 1 if both are empty."""
    a, b = a.flatten(1).float(), b.flatten(1).float()
    total = a.sum(1) + b.sum(1)
    return torch.where(total > 0, 2 * (a * b).sum(1) / total.clamp_min(1), torch.ones_like(total))


def local_ncc_squared(a: torch.Tensor, b: torch.Tensor, window: int = 9, eps: float = 1e-5) -> torch.Tensor:
    """E28: mean over pixels of the squared local normalised cross-correlation of a and b (B, 1, H, W),
    in `window` x `window` windows: cov^2 / (var_a var_b + eps), per sample (B,). 1 for a textured image
    with itself; 0 where either window is flat."""
    def mean(x: torch.Tensor) -> torch.Tensor:  # local window mean, zero padding
        return F.avg_pool2d(x, window, stride=1, padding=window // 2, count_include_pad=True)

    ma, mb = mean(a), mean(b)
    cov = mean(a * b) - ma * mb
    var_a, var_b = mean(a * a) - ma * ma, mean(b * b) - mb * mb
    return (cov * cov / (var_a * var_b + eps)).flatten(1).mean(1)  # E28


def auxiliary_loss_digits(moved: torch.Tensor, fixed: torch.Tensor, action: torch.Tensor,
                          smooth_weight: float = 1.0) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """E29: J_Aux = -NCC^2(moved, fixed) + 1.0 * mean squared spatial gradient of the step field a_t (E23's form)."""
    ncc = local_ncc_squared(moved, fixed).mean()
    smooth = total_variation_squared(action).mean()
    loss = -ncc + smooth_weight * smooth  # E29
    return loss, {"ncc": ncc.detach(), "smooth": smooth.detach()}


# ---------------------------------------------------------------- video style transfer (E30 to E32)
def visible(field: torch.Tensor) -> torch.Tensor:
    """Pixels p whose source p + field(p) lies inside the image: (B, 1, H, W) of 0/1. The others are
    where a warp has nothing to fetch (they left the frame, or came into it)."""
    h, w = field.shape[-2:]
    position = identity_grid(h, w, field.device) + field
    inside = (position[:, :1] >= 0) & (position[:, :1] <= w - 1) & (position[:, 1:] >= 0) & (position[:, 1:] <= h - 1)
    return inside.float()


def synthetic_flow(n: int, height: int, width: int, generator: torch.Generator, shift: float = 10 / 256,
                   local: float = 2 / 256, coarse: int = 4) -> torch.Tensor:
    """E30's random smooth flow W (n, 2, H, W), in pixels: a coarse Gaussian field (coarse x coarse values,
    std `local` x the image size) upsampled and blurred, plus a global shift uniform in +-`shift` x the size
    (10 pixels at 256, the authors' value). Drawn from `generator` (on the flow's device): seeded."""
    size = max(height, width)
    field = local * size * torch.randn(n, 2, coarse, coarse, generator=generator, device=generator.device)
    field = F.interpolate(field, size=(height, width), mode="bicubic", align_corners=False)
    sigma = size / 16                                                 # blur: a Gaussian of std size / 16
    x = torch.arange(-2 * int(sigma), 2 * int(sigma) + 1, dtype=torch.float32, device=field.device)
    kernel = torch.exp(-x ** 2 / (2 * sigma ** 2))
    kernel = (kernel / kernel.sum()).expand(2, 1, -1)
    pad = len(x) // 2
    field = F.conv2d(F.pad(field, (pad, pad, 0, 0), mode="replicate"), kernel[..., None, :], groups=2)  # along x
    field = F.conv2d(F.pad(field, (0, 0, pad, pad), mode="replicate"), kernel[..., :, None], groups=2)  # along y
    offset = (2 * torch.rand(n, 2, 1, 1, generator=generator, device=generator.device) - 1) * shift * size
    return field + offset


def temporal_loss(output: torch.Tensor, next_output: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """E31: L_CT = mean over visible pixels of |W(f(x)) - f(x')|, per sample (B,), where x' = W(x) + Delta,
    W(image) = warp(image, flow); `output` = f(x), `next_output` = f(x')."""
    mask = visible(flow)                                              # (B, 1, H, W)
    difference = (warp(output, flow) - next_output).abs() * mask      # (B, C, H, W)
    return difference.sum((1, 2, 3)) / (mask.sum((1, 2, 3)) * output.shape[1]).clamp_min(1)  # E31


def warping_error(frame: torch.Tensor, next_frame: torch.Tensor, flow: torch.Tensor,
                  valid: torch.Tensor) -> torch.Tensor:
    """E32, the temporal (warping) error of two consecutive frames: the mean over valid pixels of
    (O_t(p) - O_t+1(p + F_t(p)))^2, per sample (B,). `flow` F_t (B, 2, H, W) maps frame t's pixels to
    where they are in frame t+1 (MPI-Sintel's forward flow); `valid` (B, 1, H, W) marks the pixels
    that are visible in both frames (not occluded, not leaving the frame)."""
    difference = (frame - warp(next_frame, flow)).pow(2) * valid      # (B, C, H, W)
    return difference.sum((1, 2, 3)) / (valid.sum((1, 2, 3)) * frame.shape[1]).clamp_min(1)  # E32


# ---------------------------------------------------------------- deformable registration (E33, E34)
def kmeans_labels(images: torch.Tensor, k: int, iterations: int = 30) -> torch.Tensor:
    """E33's segmentation U: k-means on the intensities of each image (N, 1, H, W) -> labels (N, 1, H, W),
    int64, 0 the darkest cluster ... k-1 the brightest. Centres start at the intensity quantiles
    (k + 1/2) / k, so the result is the same every time."""
    x = images.flatten(1).float()                                               # (N, P)
    centres = torch.quantile(x, (torch.arange(k, dtype=torch.float32, device=x.device) + 0.5) / k, dim=1).T  # (N, k)
    for _ in range(iterations):
        labels = (x[:, :, None] - centres[:, None]).abs().argmin(2)            # nearest centre, (N, P)
        onehot = F.one_hot(labels, k).float()                                   # (N, P, k)
        count = onehot.sum(1)
        centres = torch.where(count > 0, (onehot * x[:, :, None]).sum(1) / count.clamp_min(1), centres)
    order = centres.argsort(1)                                                  # darkest first
    rank = order.argsort(1)
    return rank.gather(1, labels).view(images.shape)


def warp_labels(labels: torch.Tensor, field: torch.Tensor, classes: int | None = None) -> torch.Tensor:
    """A label map (N, 1, H, W) of int class numbers warped by a field (E26's warp): each class's mask
    warped bilinearly, the largest one wins (so no label is ever made up by interpolation)."""
    classes = classes or int(labels.max()) + 1
    onehot = F.one_hot(labels[:, 0].long(), classes).permute(0, 3, 1, 2).float()   # (N, K, H, W)
    return warp(onehot, field, padding="border").argmax(1, keepdim=True)


def mean_dice(labels: torch.Tensor, reference: torch.Tensor, classes: int | None = None) -> torch.Tensor:
    """E33: the Dice of two label maps (N, 1, H, W), averaged over the labels other than 0 (the background)
    that the reference holds: (N,)."""
    classes = classes or int(max(labels.max(), reference.max())) + 1
    scores, present = [], []
    for c in range(1, classes):
        scores.append(dice(labels == c, reference == c))
        present.append((reference == c).flatten(1).any(1).float())
    scores, present = torch.stack(scores, 1), torch.stack(present, 1)           # (N, K - 1)
    return (scores * present).sum(1) / present.sum(1).clamp_min(1)  # E33: mean over the reference's labels


def label_dice(moving: torch.Tensor, fixed: torch.Tensor, field: torch.Tensor, classes: int | None = None
               ) -> torch.Tensor:
    """E33 after registration: the moving image's labels warped by the field against the fixed image's: (N,)."""
    return mean_dice(warp_labels(moving, field, classes), fixed, classes)


def jacobian_determinant(field: torch.Tensor) -> torch.Tensor:
    """E34: det(I + grad Omega) of the map p -> p + Omega(p), per pixel, by central differences (one-sided at
    the border): (N, 1, H, W). 1 for the identity; at most 0 where the map folds (p + Omega(p) turns over)."""
    dx_dx, dx_dy = torch.gradient(field[:, 0], dim=(2, 1))    # channel 0 moves along x (columns)
    dy_dx, dy_dy = torch.gradient(field[:, 1], dim=(2, 1))
    return ((1 + dx_dx) * (1 + dy_dy) - dx_dy * dy_dx)[:, None]  # E34: det(I + grad Omega)


def folding_fraction(field: torch.Tensor) -> torch.Tensor:
    """E34: the share of pixels where the field folds (Jacobian determinant <= 0), per sample (N,)."""
    return (jacobian_determinant(field) <= 0).flatten(1).float().mean(1)  # E34: share with det <= 0


def ncc(a: torch.Tensor, b: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """The (global) normalised cross-correlation of two images (N, C, H, W): their Pearson correlation, (N,)."""
    a, b = a.flatten(1) - a.flatten(1).mean(1, keepdim=True), b.flatten(1) - b.flatten(1).mean(1, keepdim=True)
    return (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1) + eps)


def end_point_error(field: torch.Tensor, true_field: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The mean length of field - true_field (pixels) over the pixels of mask (N, 1, H, W): (N,)."""
    error = (field - true_field).norm(dim=1, keepdim=True) * mask
    return error.flatten(1).sum(1) / mask.flatten(1).sum(1).clamp_min(1)


# ---------------------------------------------------------------- adaptive stopping (O3, ours)
def reward_head_loss(predicted: torch.Tensor, reward: torch.Tensor) -> torch.Tensor:
    """O3: J(eta) = E_D[(r-hat_eta(s_t+1) - r_t)^2]: the stored reward r_t of each replayed transition, from the
    state s_t+1 it reached."""
    return F.mse_loss(predicted, reward)  # O3
