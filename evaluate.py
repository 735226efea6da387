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
s_t+1 = T(s_t, a_t); every intermediate state is a usable output. Here: `rollout` and each task's table; the
command line and its modes are in extras/evaluation.py, the grids and CSV files in extras/figures.py.
"""
from __future__ import annotations

import torch

from planner import recurrent_inputs
from losses import STYLE_LAYERS, psnr
from extras.figures import digits_grid, print_table, registration_grid, save_grid
from extras.registration import kmeans_label_dice, true_label_dice
from vgg import denormalize


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
    (no move). `Dice@0.5` binarises both at half intensity instead, which blurring cannot inflate. Also the
    Dice per class of the fixed digit at step 0 and the last step, printed and written next to the grid
    (`*_classes.csv`), and the grid moving | steps | fixed | field Omega."""
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
    digits_grid(env, pairs, states, steps, grid_path, grid_rows)
    return table


def evaluate_register(task: dict, pairs: torch.Tensor, steps: list[int], grid_path: str, grid_rows: int = 6,
                      truth: dict | None = None) -> list[dict]:
    """Per-step registration metrics over held-out pairs (N, 4, S, S) (fixed, moving, their k-means labels),
    averaged over the pairs; step 0 is the identity (no registration). Dice: the true labels of the moving
    image warped by Omega_k against the fixed image's, mean over its labels but the background (E33's
    mean_dice); k-means Dice: the same of the reward's labels; folding %: pixels whose Jacobian
    determinant is <= 0 (E34); NCC of moved and fixed; and, where the true field is known (built-in data),
    its end-point error in pixels over the head. `truth`: true labels (and field) of the pairs [the test
    data's]. Grid: fixed | moving | steps | field Omega | labels."""
    from losses import end_point_error, folding_fraction, ncc

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
    registration_grid(env, pairs, states, steps, moving_labels, fixed_labels, grid_path, grid_rows)
    return table


EVALUATE = {"style": evaluate_style, "video": evaluate_style, "inpaint": evaluate_inpaint, "photo": evaluate_photo,
            "digits": evaluate_digits, "register": evaluate_register}
EVAL_IMAGES = {"style": 4, "video": 4, "inpaint": None, "photo": None, "digits": 500, "register": None}  # held-out images by default (None: all)


def held_out(task_name: str, test_data, asked: int = 0) -> torch.Tensor:
    """The first held-out images: `asked` of them, else the task's default number, at most all."""
    available = len(test_data.sources)
    return test_data.fixed(min(asked or EVAL_IMAGES[task_name] or available, available))


if __name__ == "__main__":
    from extras.evaluation import main  # the command line and its modes (it imports this file)

    main()
