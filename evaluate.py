"""Evaluate a trained agent: k deterministic steps, pictures and a per-step table.

    python evaluate.py --task style --checkpoint runs/style-seed1/checkpoint.pt --steps 1 5 10
    python evaluate.py --task style --planner-weights planner.pth --actor-weights actor.pth \
        --style-image starry.jpg --image-size 256          # the authors' released weights

Inference (Algorithm 1, last lines): s_0 from x, then p_t = mean of pi(. | s_t), a_t = mu(s_t, p_t),
s_t+1 = T(s_t, a_t); every intermediate state is a usable output.
"""
from __future__ import annotations

import csv
import os
import sys

import numpy as np
import torch
from PIL import Image

from actor import StyleActor
from data import ContentImages, DataError, load_style_image
from env import StyleEnv, denormalize
from planner import StylePlanner
from vgg import VGGError, load_vgg16


@torch.no_grad()
def rollout(planner: torch.nn.Module, actor: torch.nn.Module, env: StyleEnv, source: torch.Tensor,
            steps: int) -> list[torch.Tensor]:
    """States s_0 ... s_steps with the plan mean (no exploration): a list of (N, C, H, W)."""
    planner.eval(), actor.eval()
    states = [env.reset(source)]
    for _ in range(steps):
        dist, features = planner(states[-1])
        action = actor(dist.mean, features)  # E1 at inference: p_t = m_psi(s_t)
        states.append(env.step(action)[0])
    planner.train(), actor.train()
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


def evaluate_style(planner: torch.nn.Module, actor: torch.nn.Module, env: StyleEnv, content: torch.Tensor,
                   style: torch.Tensor, steps: list[int], grid_path: str) -> list[dict]:
    """Per-step table (content loss, style loss, SSIM to content) and the grid content | steps | style."""
    states = rollout(planner, actor, env, content, max(steps))
    table = []
    for k in [0, *steps]:
        m = env.metrics(states[k], states[0])
        table.append({"step": k, "content_loss": m["content_loss"].mean().item(),
                      "style_loss": m["style_loss"].mean().item(),
                      "ssim_to_content": ssim_to(denormalize(states[k]), content).mean().item()})
    scale = max(1, 128 // content.shape[-1])
    rows = [[content[i].cpu(), *[denormalize(states[k][i:i + 1])[0].cpu() for k in steps], style.cpu()]
            for i in range(content.shape[0])]
    save_grid(rows, grid_path, ["content", *[f"step {k}" for k in steps], "style"], scale)
    return table


def print_table(table: list[dict]) -> None:
    print(f"{'step':>5} {'content loss':>13} {'style loss':>12} {'SSIM to content':>16}")
    for r in table:
        print(f"{r['step']:>5} {r['content_loss']:>13.4f} {r['style_loss']:>12.3e} {r['ssim_to_content']:>16.3f}")


def plot_curves(csv_path: str, png_path: str) -> None:
    """Training curves from progress.csv: return, losses, alpha against environment steps."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with open(csv_path) as f:
        rows = list(csv.DictReader(f))
    panels = [("return", "episode return"), ("aux_loss", "auxiliary loss J_Aux"), ("style", "style loss L_ST"),
              ("content", "content loss L_CO"), ("critic_loss", "critic loss J_Q"), ("alpha", "temperature alpha")]
    fig, axes = plt.subplots(2, 3, figsize=(12, 6))
    for ax, (key, title) in zip(axes.flat, panels):
        points = [(float(r["step"]), float(r[key])) for r in rows if r.get(key)]
        if points:
            ax.plot(*zip(*points))
        ax.set_title(title)
        ax.set_xlabel("environment step")
        if key in ("aux_loss", "style", "critic_loss") and points and min(p[1] for p in points) > 0:
            ax.set_yscale("log")
    fig.tight_layout()
    fig.savefig(png_path, dpi=80)
    plt.close(fig)


def final_report(run: str, args, task: dict) -> None:
    """After training: evaluation grid and table on held-out images, curves, and where it all is."""
    device = task["style"].device
    content = task["test_data"].fixed(4).to(device)
    steps = list(range(1, args.test_steps + 1)) if args.test_steps <= 10 else \
        sorted({1, *range(5, args.test_steps + 1, 5), args.test_steps})
    table = evaluate_style(task["planner"], task["actor"], task["env"], content, task["style"], steps,
                           os.path.join(run, "grid.png"))
    print_table(table)
    plot_curves(os.path.join(run, "progress.csv"), os.path.join(run, "curves.png"))
    print(f"done: {run}/ holds config.json, progress.csv, checkpoint.pt, grid.png (content | steps | style) "
          f"and curves.png")


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


def main(argv: list[str] | None = None) -> None:
    from train import Args, Parser, resolve_device

    parser = Parser(description="Evaluate an RL-I2IT agent step by step.")
    parser.add_argument("--task", default="style", choices=["style"])
    parser.add_argument("--checkpoint", default="", help="checkpoint.pt written by train.py")
    parser.add_argument("--planner-weights", default="", help="planner file in the authors' released format")
    parser.add_argument("--actor-weights", default="", help="actor file in the authors' released format")
    parser.add_argument("--steps", type=int, nargs="+", default=[1, 5, 10], help="steps k to show [1 5 10]")
    parser.add_argument("--num-images", type=int, default=4, help="held-out images in the grid [4]")
    parser.add_argument("--out", default="", help="output folder [the checkpoint's folder, or eval/]")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--image-size", type=int, default=0, help="override the image size")
    parser.add_argument("--content-dir", default=None, help="override the content folder")
    parser.add_argument("--style-image", default=None, help="override the style image")
    parser.add_argument("--vgg", default=None, help="override the VGG-16 weights (auto, torchvision, hed, random)")
    opts = parser.parse_args(argv)
    if bool(opts.checkpoint) == bool(opts.planner_weights or opts.actor_weights):
        parser.error("give either --checkpoint or both --planner-weights and --actor-weights")
    if not opts.checkpoint and not (opts.planner_weights and opts.actor_weights):
        parser.error("--planner-weights and --actor-weights go together")
    if min(opts.steps) < 1:
        parser.error("--steps must be positive")

    try:
        if opts.checkpoint:
            if not os.path.isfile(opts.checkpoint):
                raise DataError(f"--checkpoint {opts.checkpoint}: no such file")
            state = torch.load(opts.checkpoint, map_location="cpu", weights_only=False)
            args = Args(**state["args"])
        else:
            state, args = None, Args(image_size=256)
        for name in ("content_dir", "style_image", "vgg"):
            if getattr(opts, name) is not None:
                setattr(args, name, getattr(opts, name))
        args.image_size = opts.image_size or args.image_size
        device = resolve_device(opts.device)
        vgg = load_vgg16(args.vgg, args.vgg_weights or None).to(device)
        style = load_style_image(args.style_image or None, args.image_size).to(device)
        env = StyleEnv(vgg, style, args.kappa, args.style_weight, args.tv_weight)
        planner, actor = StylePlanner().to(device), StyleActor().to(device)
        if state is not None:
            planner.load_state_dict(state["planner"])
            actor.load_state_dict(state["actor"])
        else:
            load_released_weights(planner, opts.planner_weights)
            load_released_weights(actor, opts.actor_weights)
        content = ContentImages(args.content_dir or None, "test", args.image_size).fixed(opts.num_images).to(device)
        out = opts.out or (os.path.dirname(opts.checkpoint) if opts.checkpoint else "eval")
        os.makedirs(out, exist_ok=True)
        grid = os.path.join(out, "eval_grid.png")
        table = evaluate_style(planner, actor, env, content, style, sorted(set(opts.steps)), grid)
    except (DataError, VGGError) as e:
        sys.exit(f"error: {e}")
    print(f"VGG-16 weights: {vgg.source}; {content.shape[0]} held-out images at {args.image_size}x{args.image_size}")
    print_table(table)
    print(f"grid: {grid}")


if __name__ == "__main__":
    main()
