"""Evaluate a trained agent: k deterministic steps, pictures and a per-step table.

    python evaluate.py --checkpoint runs/style-seed1/checkpoint.pt --steps 1 5 10
    python evaluate.py --checkpoint runs/inpaint-seed1/checkpoint.pt --steps 1 2 3 4 5
    python evaluate.py --checkpoint runs/photo-seed1/checkpoint.pt --steps 1 2 3 4 5
    python evaluate.py --task style --planner-weights planner.pth --actor-weights actor.pth \
        --style-image starry.jpg --image-size 256          # the authors' released style weights
    python evaluate.py --checkpoint runs/style-seed1 --image me.jpg --steps 1 2 3 4 --out out/  # your own photo
    python evaluate.py --compare runs/inpaint-rl-seed* runs/inpaint-onestep-seed*   # the ablation table
    python evaluate.py --checkpoint runs/video-seed1 --video --steps 1 5   # the built-in clip: GIFs, temporal error
    python evaluate.py --checkpoint runs/video-seed1 --video Sintel/training/final/alley_1 --steps 1 5
    python evaluate.py --checkpoint runs/register-seed1 --baseline runs/register-onestep --steps 1 5 10
    python evaluate.py --checkpoint runs/register-oasis --pair OASIS/OASIS_OAS1_0002_MR1 OASIS/OASIS_OAS1_0001_MR1
    python evaluate.py --checkpoint runs/inpaint-seed1 --stop adaptive --max-steps 5   # each image stops by itself
    python evaluate.py --checkpoint runs/style-seed1 --stop style-loss 1e-4 --max-steps 4

Inference (Algorithm 1, last lines): s_0 from x, then p_t = mean of pi(. | s_t), a_t = mu(s_t, p_t),
s_t+1 = T(s_t, a_t); every intermediate state is a usable output.
"""
from __future__ import annotations

import csv
import functools
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from config import Args, parse_evaluate_args, resolve_device
from data import DataError, load_image
from env import denormalize, memory
from losses import STYLE_LAYERS, psnr, warping_error
from runlog import CheckpointError, read_checkpoint
from tasks import build
from vgg import VGGError
from video import read_clip, save_gif


@torch.no_grad()
def rollout(planner: torch.nn.Module, actor: torch.nn.Module, env, source: torch.Tensor, steps: int,
            frame_memory: list[torch.Tensor | None] | None = None, reward_head: torch.nn.Module | None = None,
            predicted: list[torch.Tensor] | None = None) -> list[torch.Tensor]:
    """States s_0 ... s_steps with the plan mean (no exploration): a list of (N, C, H, W). Video networks also
    take `frame_memory`, the actor's frame-wise memory of each step index, which is read and replaced. With
    `reward_head`, r-hat(s_t+1) of every step's new state is appended to `predicted` (adaptive stopping, E36):
    predicted[t] is the reward the step from s_t earns, as the head scores the state it reached."""
    planner.eval(), actor.eval()
    if reward_head is not None:
        reward_head.eval()
    states = [env.reset(source)]
    for k in range(steps):
        extras = env.extras()
        dist, features = planner(states[-1], *memory(extras))
        if frame_memory is None:
            action = actor(dist.mean, features)  # E1 at inference: p_t = m_psi(s_t)
        else:
            action, frame_memory[k] = actor.step(dist.mean, features, frame_memory[k])
        if "memory" in extras:               # video: the planner's step-wise memory h_t+1, to s_t+1
            env.carry(features)
        states.append(env.step(action)[0])
        if reward_head is not None:
            predicted.append(reward_head(states[-1]))  # r-hat(s_t+1): the reward of the step just taken, (N,)
    planner.train(), actor.train()
    if reward_head is not None:
        reward_head.train()
    return states


def rollout_video(planner: torch.nn.Module, actor: torch.nn.Module, env, frames: torch.Tensor, steps: int
                  ) -> list[torch.Tensor]:
    """Frame after frame, each an episode of `steps` steps from its own s_0 (the frame): a list over
    k = 0 ... steps of the states s_k of every frame (T, 3, H, W). The video networks carry the actor's
    frame-wise memory of step k from one frame to the next (reset only before the first frame) and the
    planner's step-wise memory through each frame's steps (reset by env.reset); any other model (the
    image style model) stylises each frame on its own."""
    frame_memory = [None] * steps if hasattr(actor, "frame_gru") else None  # m_k, one for each step index k
    per_frame = [rollout(planner, actor, env, frame[None], steps, frame_memory) for frame in frames]
    return [torch.cat(states) for states in zip(*per_frame)]


def ssim_to(images: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Per-image SSIM (scikit-image) of [0, 1] RGB images against references: (N,)."""
    from skimage.metrics import structural_similarity

    a = images.permute(0, 2, 3, 1).cpu().numpy()
    b = reference.permute(0, 2, 3, 1).cpu().numpy()
    return torch.tensor([structural_similarity(x, y, channel_axis=2, data_range=1.0) for x, y in zip(a, b)])


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


def evaluate_style(task: dict, content: torch.Tensor, steps: list[int], grid_path: str) -> list[dict]:
    """Per-step table (content loss, style loss, SSIM to content) and the grid content | steps | style."""
    env, style = task["env"], task["style"]
    states = rollout(task["planner"], task["actor"], env, content, max(steps))
    table = []
    for k in [0, *steps]:
        m = env.metrics(states[k], states[0])
        table.append({"step": k, "content loss": m["content_loss"].mean().item(),
                      "style loss": m["style_loss"].mean().item(),
                      "SSIM to content": ssim_to(denormalize(states[k]), content).mean().item(),
                      **{f"style {name}": m[f"style_{name}"].mean().item() for name in STYLE_LAYERS}})  # eval.csv only
    scale = max(1, 128 // content.shape[-1])
    rows = [[content[i].cpu(), *[denormalize(states[k][i:i + 1])[0].cpu() for k in steps], style.cpu()]
            for i in range(content.shape[0])]
    save_grid(rows, grid_path, ["content", *[f"step {k}" for k in steps], "style"], scale)
    return table


def evaluate_inpaint(task: dict, faces: torch.Tensor, steps: list[int], grid_path: str,
                     grid_rows: int = 6) -> list[dict]:
    """Per-step PSNR, SSIM, L1 and L2 (on [0, 1]) over the whole image and over the hole, averaged over
    the faces; the grid input | steps | ground truth for the first `grid_rows` faces."""
    env = task["env"]
    states = rollout(task["planner"], task["actor"], env, faces, max(steps))
    table = []
    for k in [0, *steps]:  # step 0: the masked input
        image, row = env.to_image(states[k]), {"step": k}
        for region, index in (("whole", (...,)), ("hole", (..., *env.hole))):
            a, b = image[index], faces[index]
            row[f"PSNR {region}"] = psnr(2 * a - 1, 2 * b - 1).mean().item()
            row[f"SSIM {region}"] = ssim_to(a, b).mean().item()
            row[f"L1 {region}"] = (a - b).abs().mean().item()
            row[f"L2 {region}"] = (a - b).pow(2).mean().item()
        table.append(row)
    scale = max(1, 128 // faces.shape[-1])
    rows = [[env.to_image(states[0][i]).cpu(), *[env.to_image(states[k][i]).cpu() for k in steps], faces[i].cpu()]
            for i in range(min(grid_rows, faces.shape[0]))]
    save_grid(rows, grid_path, ["input", *[f"step {k}" for k in steps], "truth"], scale)
    return table


def evaluate_photo(task: dict, pairs: torch.Tensor, steps: list[int], grid_path: str,
                   grid_rows: int = 6) -> list[dict]:
    """Per-step PSNR, SSIM and L1 (on [0, 1]) of the output against the target, averaged over the pairs
    (N, 6, S, S); the grid source | steps | target for the first `grid_rows` pairs."""
    env = task["env"]
    states = rollout(task["planner"], task["actor"], env, pairs, max(steps))
    source, target = pairs[:, :3], pairs[:, 3:]
    table = []
    for k in [0, *steps]:  # step 0: the initial output y_0 (the source, or noise)
        image = env.to_image(states[k])
        table.append({"step": k, "PSNR": psnr(2 * image - 1, 2 * target - 1).mean().item(),
                      "SSIM": ssim_to(image, target).mean().item(), "L1": (image - target).abs().mean().item()})
    scale = max(1, 128 // pairs.shape[-1])
    rows = [[source[i].cpu(), *[env.to_image(states[k][i]).cpu() for k in steps], target[i].cpu()]
            for i in range(min(grid_rows, pairs.shape[0]))]
    save_grid(rows, grid_path, ["source", *[f"step {k}" for k in steps], "target"], scale)
    return table


def evaluate_digits(task: dict, pairs: torch.Tensor, steps: list[int], grid_path: str,
                    grid_rows: int = 6) -> list[dict]:
    """Per-step Dice (E27's, moved > 0 against fixed > 0) over held-out pairs (N, 2, 28, 28): mean,
    standard deviation and the share of pairs above the success threshold; step 0 is the identity
    (no move). `Dice@0.5` binarises both at half intensity instead, which blurring cannot inflate. Also the Dice per class of the fixed digit at step 0 and the last step, printed and
    written next to the grid (`*_classes.csv`), and the grid moving | steps | fixed | field, the field
    Omega shown as a warped square grid (the paper's first figure)."""
    from env import INK
    from losses import dice

    env = task["env"]
    states = rollout(task["planner"], task["actor"], env, pairs, max(steps))
    scores = {k: dice(states[k][:, 1:] > INK, pairs[:, :1] > INK).cpu() for k in [0, *steps]}   # (N,) each
    table = [{"step": k, "Dice": d.mean().item(), "Dice std": d.std().item(),
              f"Dice > {env.success_dice}": (d > env.success_dice).float().mean().item(),
              "Dice@0.5": dice(states[k][:, 1:] > 0.5, pairs[:, :1] > 0.5).mean().item()} for k, d in scores.items()]
    classes = torch.tensor([c[0] for c in task["test_data"].fixed_classes])  # class of each pair's fixed digit
    last = max(steps)
    per_class = [{"fixed class": c, "pairs": int((classes == c).sum()), "Dice step 0": scores[0][classes == c].mean().item(),
                  f"Dice step {last}": scores[last][classes == c].mean().item(),
                  f"std step {last}": scores[last][classes == c].std().item()} for c in classes.unique().tolist()]
    print(f"Dice by the class of the fixed digit, identity (step 0) and step {last}:")
    print_table(per_class, grid_path.replace(".png", "_classes.csv"))
    scale = 4  # the field is drawn at 4x: a square grid, a line every 2 digit pixels, warped by Omega
    field_image = field_grid(env.field, scale, 2)                            # the final field Omega
    rows = [[pairs[i, 1:].expand(3, -1, -1).cpu(), *[env.to_image(states[k][i]).cpu() for k in steps],
             pairs[i, :1].expand(3, -1, -1).cpu(), field_image[i].cpu()]
            for i in range(min(grid_rows, len(pairs)))]
    save_grid(rows, grid_path, ["moving", *[f"step {k}" for k in steps], "fixed", "field"], scale)
    return table


def field_grid(field: torch.Tensor, scale: int, spacing: int) -> torch.Tensor:
    """Fields (N, 2, H, W) in pixels drawn as a square grid warped by them, at `scale` x the image size, a line
    every `spacing` image pixels: (N, 3, scale H, scale W) in [0, 1] (the paper's first figure)."""
    from losses import warp

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


def true_label_dice(fields: list[torch.Tensor], truth: dict) -> torch.Tensor:
    """Dice of the moving image's true labels warped by each field Omega_k against the fixed image's, mean over
    the fixed image's labels but the background (E33's mean_dice): (K + 1, N)."""
    from losses import label_dice

    device = fields[0].device
    fixed_labels, moving_labels = truth["fixed_labels"].to(device), truth["moving_labels"].to(device)
    return torch.stack([label_dice(moving_labels, fixed_labels, field) for field in fields])


def kmeans_label_dice(fields: list[torch.Tensor], pairs: torch.Tensor, classes: int) -> torch.Tensor:
    """The same of the reward's k-means labels (channels 2, 3 of the pairs): E33's Dice / 10, (K + 1, N)."""
    from losses import label_dice

    kmeans = pairs[:, 2:4].long()
    return torch.stack([label_dice(kmeans[:, 1:], kmeans[:, :1], field, classes) for field in fields])


def evaluate_register(task: dict, pairs: torch.Tensor, steps: list[int], grid_path: str, grid_rows: int = 6,
                      truth: dict | None = None) -> list[dict]:
    """Per-step registration metrics over held-out pairs (N, 4, S, S) (fixed, moving, their k-means labels),
    averaged over the pairs; step 0 is the identity (no registration). Dice: the true labels of the moving
    image warped by Omega_k against the fixed image's, mean over its labels but the background (E33's
    mean_dice); k-means Dice: the same of the reward's labels; folding %: pixels whose Jacobian
    determinant is <= 0 (E34); NCC of moved and fixed; and, where the true field is known (built-in data),
    its end-point error in pixels over the head. `truth`: true labels (and field) of the pairs [the test
    data's]. Grid: fixed | moving | steps | field Omega as a warped grid | labels (the moved image's true
    labels in colour over the fixed image, the fixed image's outlines in white)."""
    from losses import end_point_error, folding_fraction, ncc, warp_labels

    env, truth = task["env"], truth or task["test_data"].truth
    states = rollout(task["planner"], task["actor"], env, pairs, max(steps))
    fixed_labels, moving_labels = truth["fixed_labels"].to(pairs.device), truth["moving_labels"].to(pairs.device)
    dices, reward_dices = true_label_dice(env.fields, truth), kmeans_label_dice(env.fields, pairs, env.classes)
    table = []
    for k in [0, *steps]:
        field, dice = env.fields[k], dices[k]                                  # Omega_k
        row = {"step": k, "Dice": dice.mean().item(), "Dice std": dice.std().item(),
               "k-means Dice": reward_dices[k].mean().item(),
               "folding %": 100 * folding_fraction(field).mean().item(),
               "NCC": ncc(states[k][:, 1:], states[k][:, :1]).mean().item()}
        if truth.get("field") is not None:
            row["EPE px"] = end_point_error(field, truth["field"].to(pairs.device), (fixed_labels > 0).float()).mean().item()
        table.append(row)
    scale = max(1, 128 // pairs.shape[-1])
    n = min(grid_rows, len(pairs))
    grids = field_grid(env.fields[max(steps)][:n], scale, max(2, pairs.shape[-1] // 16))  # a line every S/16 pixels
    overlay = label_overlay(pairs[:n, :1], warp_labels(moving_labels[:n], env.fields[max(steps)][:n]), fixed_labels[:n])
    big = lambda image: F.interpolate(image[None], scale_factor=scale, mode="nearest")[0]  # noqa: E731
    rows = [[big(pairs[i, :1].expand(3, -1, -1)).cpu(), big(pairs[i, 1:2].expand(3, -1, -1)).cpu(),
             *[big(env.to_image(states[k][i])).cpu() for k in steps], grids[i].cpu(), big(overlay[i]).cpu()]
            for i in range(n)]
    save_grid(rows, grid_path, ["fixed", "moving", *[f"step {k}" for k in steps], "field", "labels"])
    return table


def evaluate_video(task: dict, frames: torch.Tensor, flows: torch.Tensor | None, valid: torch.Tensor | None,
                   steps: list[int], out: str, names: list[str]) -> tuple[list[dict], list[str]]:
    """A video (T, 3, H, W) in [0, 1] through k steps a frame (`rollout_video`). Per step k: the temporal
    (warping) error of consecutive outputs on [0, 1] RGB over the valid pixels (E32; when the true
    flows (T-1, 2, H, W) are known), content and style loss averaged over the frames; step 0 is the
    input video. Writes each step's frames (`video/step<k>/NAME.png`), an animated GIF per step
    (`video_step<k>.gif`, the input as `video_input.gif`) and the strip `video_strip.png` (four frames
    from first to last: input | step k ...). Returns the table and the files written."""
    env = task["env"]
    device = next(task["planner"].parameters()).device
    frames = frames.to(device)
    if flows is not None:
        flows, valid = flows.to(device), valid.to(device)
    states = rollout_video(task["planner"], task["actor"], env, frames, max(steps))
    table, files = [], []
    for k in [0, *steps]:
        images, row = denormalize(states[k]), {"step": k}
        if flows is not None:
            row["temporal error"] = warping_error(images[:-1], images[1:], flows, valid).mean().item()
        m = env.metrics(states[k], states[0])
        row["content loss"], row["style loss"] = m["content_loss"].mean().item(), m["style_loss"].mean().item()
        table.append(row)
        folder = os.path.join(out, "video", "input" if k == 0 else f"step{k}")
        os.makedirs(folder, exist_ok=True)
        for image, name in zip(images, names):
            Image.fromarray((image.permute(1, 2, 0).cpu().numpy() * 255).round().astype(np.uint8)).save(
                os.path.join(folder, name + ".png"))
        files.append(os.path.join(out, "video_input.gif" if k == 0 else f"video_step{k}.gif"))
        save_gif(images, files[-1])
    chosen = np.linspace(0, len(frames) - 1, min(4, len(frames))).round().astype(int)
    files.append(os.path.join(out, "video_strip.png"))
    scale = max(1, 128 // min(frames.shape[-2:]))
    save_grid([[denormalize(states[k][i:i + 1])[0].cpu() for k in [0, *steps]] for i in chosen], files[-1],
              ["input", *[f"step {k}" for k in steps]], scale)
    return table, files


def stylise_photo(task: dict, photo: torch.Tensor, name: str, steps: list[int], size: int, out: str
                  ) -> tuple[list[dict], list[str]]:
    """--image: one photo (3, H, W) in [0, 1] through k steps. Its short side is resized to `size` (both
    sides then cropped to a multiple of 4, as the plan is H/4 x W/4); writes one PNG per step k
    (`NAME_step<k>.png`) and the strip input | step k... | style (`NAME_steps.png`). Returns the per-step table
    and the files written."""
    from data import crop_to_multiple, resize_short_side

    photo = resize_short_side(photo, size)                      # (3, H', W'), short side `size`
    device = next(task["planner"].parameters()).device
    photo = photo[None, :, *crop_to_multiple(*photo.shape[1:])].clamp(0, 1).to(device)  # (1, 3, H, W), H, W: 4k
    h, w = photo.shape[-2:]
    env = task["env"]
    states = rollout(task["planner"], task["actor"], env, photo, max(steps))
    table, files = [], []
    stem = os.path.join(out, os.path.splitext(os.path.basename(name))[0])
    for k in [0, *steps]:
        m = env.metrics(states[k], states[0])
        table.append({"step": k, "content loss": m["content_loss"].item(), "style loss": m["style_loss"].item(),
                      "SSIM to content": ssim_to(denormalize(states[k]), photo).item()})
    for k in steps:
        image = (denormalize(states[k])[0].permute(1, 2, 0).cpu().numpy() * 255).round().astype(np.uint8)
        files.append(f"{stem}_step{k}.png")
        Image.fromarray(image).save(files[-1])
    style = task["style"][None]                                  # (1, 3, S, S), shown at the photo's size
    style = F.interpolate(style, scale_factor=max(h, w) / style.shape[-1], mode="bilinear", align_corners=False)
    top, left = (style.shape[2] - h) // 2, (style.shape[3] - w) // 2
    files.append(f"{stem}_steps.png")
    save_grid([[photo[0].cpu(), *[denormalize(states[k])[0].cpu() for k in steps],
                style[0, :, top:top + h, left:left + w].cpu()]], files[-1],
              ["input", *[f"step {k}" for k in steps], "style"])
    return table, files


EVALUATE = {"style": evaluate_style, "video": evaluate_style, "inpaint": evaluate_inpaint, "photo": evaluate_photo,
            "digits": evaluate_digits, "register": evaluate_register}
EVAL_IMAGES = {"style": 4, "video": 4, "inpaint": None, "photo": None, "digits": 500, "register": None}  # held-out images by default (None: all)


def held_out(task_name: str, test_data, asked: int = 0) -> torch.Tensor:
    """The first held-out images: `asked` of them, else the task's default number, at most all."""
    available = len(test_data.sources)
    return test_data.fixed(min(asked or EVAL_IMAGES[task_name] or available, available))


def metric_per_image(task_name: str, task: dict, images: torch.Tensor, states: list[torch.Tensor]
                     ) -> tuple[str, bool, torch.Tensor]:
    """Each task's headline metric of every state of a rollout, per image: (name, higher is better, values
    (K + 1, N)). Style and video: the style loss; inpainting: PSNR on the hole; photo: PSNR; digits: E27's
    Dice; registration: Dice on the true labels (of the held-out pairs just drawn by `fixed`)."""
    from env import INK
    from losses import dice

    env = task["env"]
    if task_name in ("style", "video"):
        return "style loss", False, torch.stack([env.metrics(s, states[0])["style_loss"] for s in states])
    if task_name == "inpaint":
        hole = (..., *env.hole)
        return "PSNR hole", True, torch.stack([psnr(2 * env.to_image(s)[hole] - 1, 2 * images[hole] - 1) for s in states])
    if task_name == "photo":
        return "PSNR", True, torch.stack([psnr(2 * env.to_image(s) - 1, 2 * images[:, 3:] - 1) for s in states])
    if task_name == "digits":
        return "Dice", True, torch.stack([dice(s[:, 1:] > INK, images[:, :1] > INK) for s in states])
    return "Dice", True, true_label_dice(env.fields, task["test_data"].truth)


def evaluate_stopping(task_name: str, task: dict, images: torch.Tensor, max_steps: int, rule: str,
                      threshold: float, out: str) -> tuple[list[dict], str]:
    """--stop: a rollout of max_steps steps, each image's stop by the rule (E36, or the style-loss threshold),
    and the table against the best fixed k, the oracle and always max_steps; writes stop_eval.csv,
    stop_per_image.csv and stop_hist.png. Returns the table and a line on the rule's predictions."""
    from stopping import adaptive_stop, agreement, stop_histogram, stopping_table, threshold_stop

    predicted: list[torch.Tensor] = []
    head = task["reward_head"] if rule == "adaptive" else None
    states = rollout(task["planner"], task["actor"], task["env"], images, max_steps, reward_head=head, predicted=predicted)
    metric, higher, values = metric_per_image(task_name, task, images, states)
    if rule == "adaptive":
        predicted = torch.stack(predicted)                                    # (K, N)
        stop, name = adaptive_stop(predicted, max_steps), "adaptive (reward head, E36)"
        note = (f"the head's expected gain has the sign of the real change of {metric} in "
                f"{100 * agreement(predicted, values, higher):.0f} % of steps 2 ... {max_steps}")
        if task_name == "register":  # the head learns the reward's k-means Dice, not the true labels' (E33)
            reward_dice = kmeans_label_dice(task["env"].fields, images, task["env"].classes)
            note += f"; of the reward's k-means Dice, which it learns, in {100 * agreement(predicted, reward_dice, True):.0f} %"
    else:
        stop, name = threshold_stop(values, threshold, max_steps), f"style loss < {threshold:g}"
        note = f"{int((values[1:max_steps + 1] < threshold).any(0).sum())} of {len(stop)} images reach a style loss below {threshold:g}"
    table, per_image = stopping_table(values, stop, higher, metric, name)
    write_csv(table, os.path.join(out, "stop_eval.csv"))
    write_csv(per_image, os.path.join(out, "stop_per_image.csv"))
    oracle = torch.tensor([r["oracle step"] for r in per_image])
    stop_histogram(stop, oracle, max_steps, os.path.join(out, "stop_hist.png"), f"{task_name}: {name} vs oracle")
    return table, note


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


COMPARE_METRICS = {"style": ("style loss", "content loss"), "video": ("style loss", "content loss"), "inpaint": ("PSNR hole", "SSIM hole"),
                   "photo": ("PSNR", "SSIM"), "digits": ("Dice", "Dice std"), "register": ("Dice", "folding %")}
COMPARE_FLAGS = {"photo": ("init",), "digits": ("pair_mode",), "video": ("temporal_weight",), "register": ("pair_mode",)}  # task flags shown in the model column


def compare(runs: list[str]) -> str:
    """Markdown table of the final evaluations (eval.csv) of several runs of one task, grouped by
    everything in config.json except seed and name: mean and standard deviation over the seeds, at
    step 1 and at the last evaluated step."""
    import json

    groups: dict[str, list[list[dict]]] = {}
    tasks = set()
    for run in runs:
        paths = [os.path.join(run, n) for n in ("config.json", "eval.csv")]
        if not all(os.path.isfile(p) for p in paths):
            raise DataError(f"{run}: no config.json and eval.csv (a finished train.py run folder?)")
        with open(paths[0]) as f:
            config = json.load(f)
        with open(paths[1]) as f:
            table = list(csv.DictReader(f))
        label = f"{config['task']} --rl {config['rl']}, T_max {config['max_episode_steps']}"
        label += "".join(f", --{k.replace('_', '-')} {config[k]}" for k in COMPARE_FLAGS.get(config["task"], ()))
        key = json.dumps({k: v for k, v in config.items() if k not in ("seed", "name", "run_dir", "resume", "progress")})
        tasks.add(config["task"])
        groups.setdefault(key, [label]).append(table)
    if len(tasks) > 1:
        raise DataError(f"--compare: runs of one task at a time, not {', '.join(sorted(tasks))}")
    metrics = COMPARE_METRICS[tasks.pop()]
    lines = ["| model | step | seeds | " + " | ".join(metrics) + " |", "|---|---|---|" + "---|" * len(metrics)]
    for label, *tables in groups.values():
        steps = sorted({int(tables[0][1]["step"]), int(tables[0][-1]["step"])})
        for k in steps:
            cells = []
            for m in metrics:
                values = np.array([float(next(r[m] for r in t if int(r["step"]) == k)) for t in tables])
                cells.append(f"{values.mean():.3f} ± {values.std(ddof=1):.3f}" if len(values) > 1 else f"{values[0]:.3f}")
            lines.append(f"| {label} | {k} | {len(tables)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def load_released_weights(module: torch.nn.Module, path: str) -> None:
    """Load a planner or actor file in the authors' released format (METHOD.md 5.3 names)."""
    if not os.path.isfile(path):
        raise DataError(f"{path}: no such file")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 (any unreadable file gets the same one-line error)
        raise DataError(f"{path}: cannot read as a torch state dict ({type(e).__name__})") from None
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    state = {k.removeprefix("module."): v for k, v in state.items()}
    missing, unexpected = set(module.state_dict()) - set(state), set(state) - set(module.state_dict())
    if missing or unexpected:
        raise DataError(f"{path}: not a {type(module).__name__} file (missing {sorted(missing)[:3]}, "
                        f"unexpected {sorted(unexpected)[:3]})")
    for k, v in state.items():
        if v.shape != module.state_dict()[k].shape:
            raise DataError(f"{path}: {k} has shape {tuple(v.shape)}, expected {tuple(module.state_dict()[k].shape)}")
    module.load_state_dict(state)


def load_networks(task: dict, state: dict, path: str, image_size: int) -> None:
    """A checkpoint's planner and actor into the task's networks, with a one-line error when they do not fit."""
    trained_at = state["args"]["image_size"]
    try:
        task["planner"].load_state_dict(state["planner"])
        task["actor"].load_state_dict(state["actor"])
    except RuntimeError:
        raise DataError(f"{path}: its networks do not fit --image-size {image_size} (trained at {trained_at})") from None
    # The reward head is used by --stop adaptive alone; its layers depend on the image size, so a head that
    # does not fit (or none, in checkpoints written before adaptive stopping) is an error only there.
    why = None
    if task["reward_head"] is None or "reward_head" not in state:
        why = "no reward head in it (written before adaptive stopping); train the run again to use --stop adaptive"
    else:
        try:
            task["reward_head"].load_state_dict(state["reward_head"])
        except RuntimeError:
            why = (f"its reward head does not fit --image-size {image_size} (trained at {trained_at}): use --stop "
                   "adaptive at the training size") if image_size != trained_at else (
                   "its reward head is the older r-hat(s_t, p_t) (before 2026-12-01), not the state's r-hat(s); "
                   "train the run again to use --stop adaptive")
    if why:
        task["reward_head"] = None
    task["no_reward_head"] = why


def main(argv: list[str] | None = None) -> None:
    opts, threshold = parse_evaluate_args(argv)  # the command line and its checks: config.py
    if opts.compare:
        try:
            print(compare(opts.compare))
        except DataError as e:
            sys.exit(f"error: {e}")
        return

    try:
        if opts.checkpoint:
            if os.path.isdir(opts.checkpoint):  # a run folder
                opts.checkpoint = os.path.join(opts.checkpoint, "checkpoint.pt")
            if not os.path.isfile(opts.checkpoint):
                raise DataError(f"--checkpoint {opts.checkpoint}: no such file")
            state = read_checkpoint(opts.checkpoint)
            args = Args(**state["args"])
            if opts.task not in (None, args.task):
                raise DataError(f"--task {opts.task}: the checkpoint was trained for --task {args.task}")
            if opts.image and args.task != "style":
                raise DataError(f"--image stylises one photo: it is for --task style, not --task {args.task}")
            if opts.video and args.task not in ("style", "video"):
                raise DataError(f"--video is for --task style or video, not --task {args.task}")
            if opts.pair and args.task != "register":
                raise DataError(f"--pair registers two subject folders: it is for --task register, not --task {args.task}")
            if opts.stop and opts.stop[0] == "style-loss" and args.task not in ("style", "video"):
                raise DataError(f"--stop style-loss is for --task style or video, not --task {args.task}; "
                                "use --stop adaptive")
        else:
            state, args = None, Args(task="style", image_size=256)
        for name in ("content_dir", "style_image", "vgg", "data_root", "direction"):
            if getattr(opts, name) is not None:
                setattr(args, name, getattr(opts, name))
        photo_size = opts.image_size or args.image_size  # --image: the photo's short side
        photo = load_image(opts.image) if opts.image else None  # a bad file fails here, before the networks load
        clip = read_clip(opts.video, opts.image_size or args.image_size) if opts.video else None  # ... and a bad video
        if not opts.image:
            args.image_size = opts.image_size or args.image_size
        device = resolve_device(opts.device)
        task = build(args, device)
        if state is not None:
            load_networks(task, state, opts.checkpoint, args.image_size)
        else:
            load_released_weights(task["planner"], opts.planner_weights)
            load_released_weights(task["actor"], opts.actor_weights)
        out = opts.out or (os.path.dirname(opts.checkpoint) if opts.checkpoint else "eval")
        os.makedirs(out, exist_ok=True)
        if opts.image:
            table, files = stylise_photo(task, photo, opts.image, sorted(set(opts.steps)), photo_size, out)
            print(f"{opts.image}: short side {photo_size}, plan mean")
            print_table(table)
            print(f"wrote {', '.join(files)}")
            return
        if clip is not None:
            frames, flows, valid, names = clip
            table, files = evaluate_video(task, frames, flows, valid, sorted(set(opts.steps)), out, names)
            where = "the built-in clip" if opts.video == "builtin" else opts.video
            print(f"{where}: {len(frames)} frames at {frames.shape[-1]}x{frames.shape[-2]}, plan mean"
                  + ("" if flows is not None else "; no true flow, so no temporal error (see --help)"))
            print_table(table, os.path.join(out, "video_eval.csv"))
            print(f"wrote {out}/video/, {', '.join(files)} and video_eval.csv")
            return
        test, steps = task["test_data"], sorted(set(opts.steps))
        if opts.stop:
            if opts.stop[0] == "adaptive" and task["reward_head"] is None:
                raise DataError(f"{opts.checkpoint}: {task['no_reward_head']}")
            images, max_steps = held_out(args.task, test, opts.num_images).to(device), opts.max_steps or args.test_steps
            table, note = evaluate_stopping(args.task, task, images, max_steps, opts.stop[0], threshold, out)
            print(f"held-out images: {len(images)} at {args.image_size}x{args.image_size}, plan mean, at most {max_steps} steps; {note}")
            print_table(table)
            print(f"wrote {out}/stop_eval.csv, stop_per_image.csv and stop_hist.png")
            return
        if opts.pair:
            from registration import read_pair

            images, truth = read_pair(*opts.pair, args.image_size, args.kmeans)
            images, what = images.to(device), f"the pair {' <- '.join(opts.pair)} (fixed <- moving)"
            evaluate = functools.partial(evaluate_register, truth=truth)
        else:
            images, evaluate = held_out(args.task, test, opts.num_images).to(device), EVALUATE[args.task]
            what = f"held-out images: {len(images)}"
        grid = os.path.join(out, "eval_grid.png")
        table = evaluate(task, images, steps, grid)
        if opts.baseline:  # another run's networks on the same images
            path = os.path.join(opts.baseline, "checkpoint.pt") if os.path.isdir(opts.baseline) else opts.baseline
            if not os.path.isfile(path):
                raise DataError(f"--baseline {opts.baseline}: no checkpoint.pt")
            base = read_checkpoint(path)
            if base["args"]["task"] != args.task:
                raise DataError(f"--baseline {opts.baseline} was trained for --task {base['args']['task']}, not {args.task}")
            load_networks(task, base, path, args.image_size)
            label = lambda a: f"{'RL-I2IT' if a['rl'] == 'on' else 'one-step'} ({a['name'] or a['task']})"  # noqa: E731
            baseline_grid = os.path.join(out, "eval_grid_baseline.png")
            table = [{"model": label(state["args"]), **r} for r in table] + \
                [{"model": label(base["args"]), **r} for r in evaluate(task, images, steps, baseline_grid)]
            grid += f" and {baseline_grid}"
    except (DataError, VGGError, CheckpointError) as e:
        sys.exit(f"error: {e}")
    source = f"VGG-16 weights: {task['vgg'].source}; " if "vgg" in task else ""
    print(f"{source}{what} at {args.image_size}x{args.image_size}, plan mean")
    print_table(table)
    print(f"grid: {grid}")


if __name__ == "__main__":
    main()
