"""The report at the end of `python train.py`: the held-out evaluation grid and table, the curves.

It is here, not in train.py or evaluate.py, so that neither script imports the other: train.py calls
`final_report`; it uses evaluate.py's per-task evaluation (the same tables and grids `python
evaluate.py` writes), and evaluate.py in turn needs only config.py's `Args`, never train.py.
"""
from __future__ import annotations

import csv
import os

from evaluate import EVALUATE, held_out, print_table
from extras.evaluation import evaluate_video
from extras.video import read_clip


def plot_curves(csv_path: str, png_path: str) -> None:
    """Training curves from progress.csv: return, losses, alpha against environment steps."""
    from matplotlib.figure import Figure  # no pyplot: a notebook's inline figures keep their backend

    with open(csv_path) as f:
        rows = list(csv.DictReader(f))
    panels = [("return", "episode return"), ("aux_loss", "auxiliary loss J_Aux"), ("style", "style loss L_ST"),
              ("content", "content loss L_CO"), ("rec", "reconstruction L1 L_rec"), ("ncc", "local NCC^2"), ("temporal", "temporal term L_CT"), ("disc_loss", "discriminator J_D"),
              ("critic_loss", "critic loss J_Q"), ("alpha", "temperature alpha")]
    panels = [(k, t) for k, t in panels if any(r.get(k) for r in rows)][:6]  # the task's curves
    fig = Figure(figsize=(12, 6))
    axes = fig.subplots(2, 3)
    for ax in axes.flat[len(panels):]:
        ax.axis("off")
    for ax, (key, title) in zip(axes.flat, panels):
        points = [(float(r["step"]), float(r[key])) for r in rows if r.get(key)]
        if points:
            ax.plot(*zip(*points))
        ax.set_title(title)
        ax.set_xlabel("environment step")
        if key in ("aux_loss", "style", "rec", "critic_loss") and points and min(p[1] for p in points) > 0:
            ax.set_yscale("log")
    fig.tight_layout()
    fig.savefig(png_path, dpi=80)


def report_steps(test_steps: int) -> list[int]:
    """The steps k the report shows: all up to 10, else 1, every fifth and the last."""
    return list(range(1, test_steps + 1)) if test_steps <= 10 else sorted({1, *range(5, test_steps + 1, 5), test_steps})


def curve_point(run: str, args, task: dict, step: int, updates: int) -> None:
    """--set eval_every=N: the final report's held-out evaluation after `updates` updates, its rows (one per step k,
    layer by layer for style) appended to eval_curve.csv with the updates and environment steps so far; the
    latest grid is curve_grid.png. Between episodes, with the plan mean: no draw from training's generators
    (but photo translation's `--set init=noise`, whose y_0 comes from the environment's)."""
    images = held_out(args.task, task["test_data"]).to(next(task["planner"].parameters()).device)
    table = EVALUATE[args.task](task, images, report_steps(args.test_steps), os.path.join(run, "curve_grid.png"))
    path = os.path.join(run, "eval_curve.csv")
    new = not os.path.isfile(path)
    with open(path, "a", newline="") as f:
        writer = csv.DictWriter(f, ["updates", "env_step", *table[0]])
        if new:
            writer.writeheader()
        writer.writerows({"updates": updates, "env_step": step, **row} for row in table)


def final_report(run: str, args, task: dict) -> None:
    """After training: evaluation grid and table on held-out images, curves, and where it all is."""
    images = held_out(args.task, task["test_data"]).to(next(task["planner"].parameters()).device)
    steps = report_steps(args.test_steps)
    table = EVALUATE[args.task](task, images, steps, os.path.join(run, "grid.png"))
    print(f"held-out evaluation, {images.shape[0]} images, plan mean:")
    print_table(table, os.path.join(run, "eval.csv"))
    plot_curves(os.path.join(run, "progress.csv"), os.path.join(run, "curves.png"))
    written = "eval.csv, grid.png and curves.png"
    if args.task == "video":  # the built-in clip, whose motion is known exactly
        frames, flows, valid, names = read_clip("builtin", args.image_size)
        table, _ = evaluate_video(task, frames, flows, valid, steps, run, names)
        print(f"built-in clip, {len(frames)} frames, plan mean (temporal error: E32, on [0, 1] RGB):")
        print_table(table, os.path.join(run, "video_eval.csv"))
        written = "eval.csv, grid.png, curves.png, video_eval.csv, video_strip.png, video_step*.gif and video/"
    if os.path.isfile(os.path.join(run, "eval_curve.csv")):
        written += ", eval_curve.csv and curve_grid.png (--set eval_every)"
    print(f"done: {run}/ holds config.json, split.json, progress.csv, checkpoint.pt, {written}")
