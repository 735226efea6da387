"""The evaluation modes of evaluate.py beyond the held-out table and grid: one photo of the user's (`--image`), a
video frame after frame (`--video`), adaptive stopping (`--stop`), several runs' tables over seeds (`--compare`)
and the authors' released style weights (`--planner-weights`, `--actor-weights`). evaluate.py's `rollout` takes the steps.
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

from config import Args, resolve_device
from data import DataError, load_image
from tasks import build
from vgg import VGGError, denormalize
from evaluate import EVALUATE, evaluate_register, held_out, rollout, ssim_to
from extras.cli import parse_evaluate_args
from extras.figures import print_table, save_grid, write_csv
from extras.registration import kmeans_label_dice, true_label_dice
from extras.runlog import CheckpointError, read_checkpoint, saved_args
from extras.video import read_clip, save_gif
from losses import STYLE_LAYERS, psnr, warping_error


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


def rollout_video(planner: torch.nn.Module, actor: torch.nn.Module, env, frames: torch.Tensor, steps: int
                  ) -> list[torch.Tensor]:
    """Frame after frame, each an episode of `steps` steps from its own s_0 (the frame): a list over
    k = 0 ... steps of the states s_k of every frame (T, 3, H, W). The video networks carry the actor's
    frame-wise hidden state of step k from one frame to the next (reset only before the first frame) and the
    planner's step-wise hidden state through each frame's steps (reset by env.reset); any other model (the
    image style model) stylises each frame on its own."""
    frame_hidden = [None] * steps if hasattr(actor, "frame_gru") else None  # m_k, one for each step index k
    per_frame = [rollout(planner, actor, env, frame[None], steps, frame_hidden) for frame in frames]
    return [torch.cat(states) for states in zip(*per_frame)]


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
    """--stop: a rollout of max_steps steps, each image's stop by the rule (O4, or the style-loss threshold),
    and the table against the best fixed k, the oracle and always max_steps; writes stop_eval.csv,
    stop_per_image.csv and stop_hist.png. Returns the table and a line on the rule's predictions."""
    from extras.stopping import adaptive_stop, agreement, stop_histogram, stopping_table, threshold_stop

    predicted: list[torch.Tensor] = []
    head = task["reward_head"] if rule == "adaptive" else None
    states = rollout(task["planner"], task["actor"], task["env"], images, max_steps, reward_head=head, predicted=predicted)
    metric, higher, values = metric_per_image(task_name, task, images, states)
    if rule == "adaptive":
        predicted = torch.stack(predicted)                                    # (K, N)
        stop, name = adaptive_stop(predicted, max_steps), "adaptive (reward head, O4)"
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
        label += "".join(f", {k}={config[k]}" for k in COMPARE_FLAGS.get(config["task"], ()))
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
    """Load a planner or actor file in the authors' released format (the authors' parameter names)."""
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
                   "its reward head is an older version's r-hat(s_t, p_t), not the state's r-hat(s); "
                   "train the run again to use --stop adaptive")
    if why:
        task["reward_head"] = None
    task["no_reward_head"] = why


def run_settings(opts) -> tuple[dict | None, Args]:
    """The checkpoint's contents and its run's Args, the evaluation's flags checked against its task; for the
    authors' released weights (no checkpoint) None and the style task at 256 px. Then the flags that override
    the run's settings (--content-dir, --style-image, --vgg, --data-root, --direction)."""
    if opts.checkpoint:
        if os.path.isdir(opts.checkpoint):  # a run folder
            opts.checkpoint = os.path.join(opts.checkpoint, "checkpoint.pt")
        if not os.path.isfile(opts.checkpoint):
            raise DataError(f"--checkpoint {opts.checkpoint}: no such file")
        state = read_checkpoint(opts.checkpoint)
        args = Args(**saved_args(state, opts.checkpoint, to_resume=False))
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
    return state, args


def load_weights(task: dict, state: dict | None, opts, image_size: int) -> None:
    """The checkpoint's networks, or the released planner and actor files."""
    if state is not None:
        load_networks(task, state, opts.checkpoint, image_size)
    else:
        load_released_weights(task["planner"], opts.planner_weights)
        load_released_weights(task["actor"], opts.actor_weights)


def video_mode(task: dict, clip: tuple, steps: list[int], out: str, source: str) -> None:
    """--video: the clip through the steps, its table printed and written (video_eval.csv), frames and GIFs."""
    frames, flows, valid, names = clip
    table, files = evaluate_video(task, frames, flows, valid, steps, out, names)
    where = "the built-in clip" if source == "builtin" else source
    print(f"{where}: {len(frames)} frames at {frames.shape[-1]}x{frames.shape[-2]}, plan mean"
          + ("" if flows is not None else "; no true flow, so no temporal error (see --help)"))
    print_table(table, os.path.join(out, "video_eval.csv"))
    print(f"wrote {out}/video/, {', '.join(files)} and video_eval.csv")


def stopping_mode(task: dict, args: Args, opts, threshold: float, out: str, device: torch.device) -> None:
    """--stop: each held-out image stops by the rule; the table against fixed k and the oracle."""
    if opts.stop[0] == "adaptive" and task["reward_head"] is None:
        raise DataError(f"{opts.checkpoint}: {task['no_reward_head']}")
    images = held_out(args.task, task["test_data"], opts.num_images).to(device)
    max_steps = opts.max_steps or args.test_steps
    table, note = evaluate_stopping(args.task, task, images, max_steps, opts.stop[0], threshold, out)
    print(f"held-out images: {len(images)} at {args.image_size}x{args.image_size}, plan mean, at most {max_steps} "
          f"steps; {note}")
    print_table(table)
    print(f"wrote {out}/stop_eval.csv, stop_per_image.csv and stop_hist.png")


def pair_mode(pair: list[str], args: Args, device: torch.device):
    """--pair FIXED MOVING: one pair of 2-D OASIS subjects, with its true labels, for evaluate_register."""
    from extras.registration import read_pair

    images, truth = read_pair(*pair, args.image_size, args.kmeans)
    return images.to(device), functools.partial(evaluate_register, truth=truth), \
        f"the pair {' <- '.join(pair)} (fixed <- moving)"


def with_baseline(task: dict, state: dict, args: Args, baseline: str, images: torch.Tensor, steps: list[int],
                  evaluate, table: list[dict], out: str, grid: str) -> tuple[list[dict], str]:
    """--baseline RUN: that run's networks on the same images; both tables, a column naming the model."""
    path = os.path.join(baseline, "checkpoint.pt") if os.path.isdir(baseline) else baseline
    if not os.path.isfile(path):
        raise DataError(f"--baseline {baseline}: no checkpoint.pt")
    base = read_checkpoint(path)
    if saved_args(base, path, to_resume=False)["task"] != args.task:
        raise DataError(f"--baseline {baseline} was trained for --task {base['args']['task']}, not {args.task}")
    load_networks(task, base, path, args.image_size)
    label = lambda a: f"{'RL-I2IT' if a['rl'] == 'on' else 'one-step'} ({a['name'] or a['task']})"  # noqa: E731
    baseline_grid = os.path.join(out, "eval_grid_baseline.png")
    table = [{"model": label(state["args"]), **r} for r in table] + \
        [{"model": label(base["args"]), **r} for r in evaluate(task, images, steps, baseline_grid)]
    return table, f"{grid} and {baseline_grid}"


def main(argv: list[str] | None = None) -> None:
    """`python evaluate.py`: the command line (extras/cli.py), then the mode it asks for."""
    opts, threshold = parse_evaluate_args(argv)  # the command line and its checks: extras/cli.py
    try:
        if opts.compare:
            print(compare(opts.compare))
            return
        state, args = run_settings(opts)  # the checkpoint's Args (or the released weights'), checked
        photo_size = opts.image_size or args.image_size  # --image: the photo's short side
        photo = load_image(opts.image) if opts.image else None  # a bad file fails here, before the networks load
        clip = read_clip(opts.video, photo_size) if opts.video else None  # ... and a bad video
        if not opts.image:
            args.image_size = photo_size
        device = resolve_device(opts.device)
        task = build(args, device)
        load_weights(task, state, opts, args.image_size)
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
            video_mode(task, clip, steps, out, opts.video)
            return
        if opts.stop:
            stopping_mode(task, args, opts, threshold, out, device)
            return
        if opts.pair:
            images, evaluate, what = pair_mode(opts.pair, args, device)
        else:
            images, evaluate = held_out(args.task, task["test_data"], opts.num_images).to(device), EVALUATE[args.task]
            what = f"held-out images: {len(images)}"
        grid = os.path.join(out, "eval_grid.png")
        table = evaluate(task, images, steps, grid)
        if opts.baseline:  # another run's networks on the same images
            table, grid = with_baseline(task, state, args, opts.baseline, images, steps, evaluate, table,
                                                   out, grid)
    except (DataError, VGGError, CheckpointError) as e:
        sys.exit(f"error: {e}")
    source = f"VGG-16 weights: {task['vgg'].source}; " if "vgg" in task else ""
    print(f"{source}{what} at {args.image_size}x{args.image_size}, plan mean")
    print_table(table, os.path.join(out, "eval.csv"))  # the whole table, layer by layer for style
    print(f"grid: {grid}; the table: {os.path.join(out, 'eval.csv')}")
