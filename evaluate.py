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
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from config import resolve_device
from data import DataError, load_image
from planner import recurrent_inputs
from losses import STYLE_LAYERS, psnr
from extras.cli import parse_evaluate_args
from extras.runlog import CheckpointError
from tasks import build
from vgg import VGGError, denormalize
from extras.video import read_clip


@torch.no_grad()
def rollout(planner: torch.nn.Module, actor: torch.nn.Module, env, source: torch.Tensor, steps: int,
            frame_hidden: list[torch.Tensor | None] | None = None, reward_head: torch.nn.Module | None = None,
            predicted: list[torch.Tensor] | None = None) -> list[torch.Tensor]:
    """States s_0 ... s_steps with the plan mean (no exploration): a list of (N, C, H, W). Video networks also
    take `frame_hidden`, the actor's frame-wise hidden state of each step index, which is read and replaced. With
    `reward_head`, r-hat(s_t+1) of every step's new state is appended to `predicted` (adaptive stopping, O4):
    predicted[t] is the reward the step from s_t earns, as the head scores the state it reached."""
    planner.eval(), actor.eval()
    if reward_head is not None:
        reward_head.eval()
    states = [env.reset(source)]
    for k in range(steps):
        extras = env.extras()
        dist, features = planner(states[-1], *recurrent_inputs(extras))
        if frame_hidden is None:
            action = actor(dist.mean, features)  # E1 at inference: p_t = m_psi(s_t)
        else:
            action, frame_hidden[k] = actor.step(dist.mean, features, frame_hidden[k])
        if "hidden" in extras:               # video: the planner's step-wise hidden state h_t+1, to s_t+1
            env.carry(features)
        states.append(env.step(action)[0])
        if reward_head is not None:
            predicted.append(reward_head(states[-1]))  # r-hat(s_t+1): the reward of the step just taken, (N,)
    planner.train(), actor.train()
    if reward_head is not None:
        reward_head.train()
    return states


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
                      "SSIM to content": ssim_to(denormalize(states[k]), photo).item(),
                      **{f"style {name}": m[f"style_{name}"].item() for name in STYLE_LAYERS}})  # the CSV only
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


def main(argv: list[str] | None = None) -> None:
    opts, threshold = parse_evaluate_args(argv)  # the command line and its checks: extras/cli.py
    from extras import evaluation  # the other modes (--compare, --video, --stop, --pair, --baseline); it imports this file
    try:
        if opts.compare:
            print(evaluation.compare(opts.compare))
            return
        state, args = evaluation.run_settings(opts)  # the checkpoint's Args (or the released weights'), checked
        photo_size = opts.image_size or args.image_size  # --image: the photo's short side
        photo = load_image(opts.image) if opts.image else None  # a bad file fails here, before the networks load
        clip = read_clip(opts.video, photo_size) if opts.video else None  # ... and a bad video
        if not opts.image:
            args.image_size = photo_size
        device = resolve_device(opts.device)
        task = build(args, device)
        evaluation.load_weights(task, state, opts, args.image_size)
        out = opts.out or (os.path.join(os.path.dirname(opts.checkpoint), "evaluate") if opts.checkpoint else "eval")
        os.makedirs(out, exist_ok=True)
        steps = sorted(set(opts.steps))
        if opts.image:
            table, files = stylise_photo(task, photo, opts.image, steps, photo_size, out)
            print(f"{opts.image}: short side {photo_size}, plan mean")
            files.append(os.path.join(out, os.path.splitext(os.path.basename(opts.image))[0] + "_steps.csv"))
            print_table(table, files[-1])
            print(f"wrote {', '.join(files)}")
            return
        if clip is not None:
            evaluation.video_mode(task, clip, steps, out, opts.video)
            return
        if opts.stop:
            evaluation.stopping_mode(task, args, opts, threshold, out, device)
            return
        if opts.pair:
            images, evaluate, what = evaluation.pair_mode(opts.pair, args, device)
        else:
            images, evaluate = held_out(args.task, task["test_data"], opts.num_images).to(device), EVALUATE[args.task]
            what = f"held-out images: {len(images)}"
        grid = os.path.join(out, "eval_grid.png")
        table = evaluate(task, images, steps, grid)
        if opts.baseline:  # another run's networks on the same images
            table, grid = evaluation.with_baseline(task, state, args, opts.baseline, images, steps, evaluate, table,
                                                   out, grid)
    except (DataError, VGGError, CheckpointError) as e:
        sys.exit(f"error: {e}")
    source = f"VGG-16 weights: {task['vgg'].source}; " if "vgg" in task else ""
    print(f"{source}{what} at {args.image_size}x{args.image_size}, plan mean")
    print_table(table, os.path.join(out, "eval.csv"))  # the whole table, layer by layer for style
    print(f"grid: {grid}; the table: {os.path.join(out, 'eval.csv')}")


if __name__ == "__main__":
    main()
