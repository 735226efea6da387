"""Adaptive stopping (ours; the paper's named future work): how many steps each image gets (README O3, O4).

Training already stores every transition's reward r_t in D, and every task's reward is a score of the state
the step reaches (minus the style loss, PSNR, Dice). A small reward head r-hat_eta(s) (`critic.RewardHead`)
learns that score from the state alone (O3, `losses.reward_head_loss`: r-hat(s_t+1) against r_t, trained in
`train.update` on the critic's minibatch, with its own optimiser and no gradient to anything else). The head
answers one question, "how good is this state?", the same in training (states the sampled plans reached) and
at inference (states the plan mean reaches); no plan is among its inputs.

O4: from s_t (t >= 1) the step to s_t+1 is computed; if r-hat(s_t+1) <= r-hat(s_t) (no gain expected) the
     image stops at s_t, else it goes on, up to `max_steps`. Step 1 is always taken; nothing here needs the
     target image. Deciding to stop at t costs one look-ahead step (s_t+1, computed and discarded).

Style transfer has no target but its metric needs none either: `threshold_stop` stops when the style loss,
computed after each step, falls below a degree the user asks for (`--stop style-loss X`).

The measurement (`stopping_table`): the metric at each image's stop against the best single fixed k on the
same images, the oracle (each image's own best step, which needs the target) and always `max_steps`.
"""
from __future__ import annotations

import torch

from extras.distributed import averaged
from losses import reward_head_loss


def update_reward_head(batch: dict, m: dict, amp) -> torch.Tensor:
    """O3 on the update's minibatch, its own loss and optimiser; the states come from D, so nothing flows back
    into planner, actor or critics."""
    with amp():
        loss_head = reward_head_loss(m["reward_head"](batch["next_state"]), batch["reward"])  # O3: r-hat(s_t+1) ~ r_t
    m["reward_head_opt"].zero_grad()
    loss_head.backward()
    averaged(m["reward_head_opt"]).step()
    return loss_head.detach()


def adaptive_stop(predicted: torch.Tensor, max_steps: int) -> torch.Tensor:
    """O4 on the reward head's predictions (K, N), K >= max_steps, predicted[t] = r-hat(s_t+1), the reward of
    the step from s_t: the step each image stops at, (N,), int64 in 1 ... max_steps: the first t >= 1 with
    predicted[t] <= predicted[t-1], i.e. r-hat(s_t+1) <= r-hat(s_t)."""
    if max_steps < 1 or len(predicted) < max_steps:
        raise ValueError(f"max_steps {max_steps}: needs 1 <= max_steps <= {len(predicted)} predictions")
    stop = torch.full(predicted.shape[1:], max_steps, dtype=torch.long, device=predicted.device)
    for t in range(max_steps - 1, 0, -1):  # from the last to the first: the first non-improving step wins
        stop = torch.where(predicted[t] <= predicted[t - 1], t, stop)  # O4
    return stop


def threshold_stop(values: torch.Tensor, threshold: float, max_steps: int) -> torch.Tensor:
    """`--stop style-loss X`: values (K + 1, N) of a loss at steps 0 ... K -> the first step t >= 1 whose
    value is below `threshold`, else max_steps: (N,), int64."""
    if threshold < 0:
        raise ValueError(f"threshold {threshold}: must not be negative")
    stop = torch.full(values.shape[1:], max_steps, dtype=torch.long, device=values.device)
    for t in range(max_steps - 1, 0, -1):
        stop = torch.where(values[t] < threshold, t, stop)
    return stop


def agreement(predicted: torch.Tensor, values: torch.Tensor, higher_is_better: bool) -> float:
    """How often the head's expected gain of step t + 1 (predicted[t] - predicted[t-1], t >= 1) has the sign
    of the metric's real change from s_t to s_t+1: a share in [0, 1] over steps and images."""
    sign = 1 if higher_is_better else -1
    expected = predicted[1:] - predicted[:-1]                           # (K - 1, N), for steps 2 ... K
    real = sign * (values[2:len(predicted) + 1] - values[1:len(predicted)])
    return ((expected > 0) == (real > 0)).float().mean().item()


def stopping_table(values: torch.Tensor, stop: torch.Tensor, higher_is_better: bool, metric: str,
                   rule: str) -> tuple[list[dict], list[dict]]:
    """values (K + 1, N): each image's metric at steps 0 ... K; stop (N,): the rule's step for each image.
    Returns the table (identity, the rule, best fixed k, oracle, always K: metric mean and spread, steps
    mean and spread) and one row per image (its stop, oracle step, metric at both)."""
    sign = 1 if higher_is_better else -1
    k_max, index = len(values) - 1, torch.arange(values.shape[1], device=values.device)
    per_k = values[1:].mean(1)                                          # (K,): the metric of each fixed k
    best_k = int((sign * per_k).argmax()) + 1
    oracle = (sign * values[1:]).argmax(0) + 1                          # (N,): each image's best step
    chosen = {"identity (step 0)": torch.zeros_like(stop), rule: stop, f"best fixed k = {best_k}": torch.full_like(stop, best_k),
              "oracle (each image's best k)": oracle, f"always k = {k_max}": torch.full_like(stop, k_max)}
    table = []
    for name, steps in chosen.items():
        at = values[steps, index]
        table.append({"rule": name, metric: at.mean().item(), f"{metric} std": at.std().item() if len(at) > 1 else 0.0,
                      "steps": steps.float().mean().item(), "steps std": steps.float().std().item() if len(at) > 1 else 0.0})
    images = [{"image": i, "stop": int(stop[i]), "oracle step": int(oracle[i]), f"{metric} at stop": values[stop[i], i].item(),
               f"{metric} at oracle": values[oracle[i], i].item(), f"{metric} at k = {k_max}": values[k_max, i].item()}
              for i in range(values.shape[1])]
    return table, images


def stop_histogram(stop: torch.Tensor, oracle: torch.Tensor, max_steps: int, path: str, title: str) -> None:
    """Bars of how many images stop at each step, the rule's next to the oracle's: a PNG."""
    from matplotlib.figure import Figure  # no pyplot: a notebook's inline figures keep their backend

    steps = torch.arange(1, max_steps + 1)
    fig = Figure(figsize=(min(9.0, max(4.0, 0.3 * max_steps + 2)), 2.8))
    ax = fig.subplots()
    for offset, (label, s) in zip((-0.2, 0.2), (("rule", stop), ("oracle", oracle))):
        counts = torch.stack([(s.cpu() == k).sum() for k in steps])
        ax.bar(steps.numpy() + offset, counts.numpy(), width=0.4, label=label)
    ax.set_xlabel("step the image stops at")
    ax.set_ylabel("images")
    ax.set_title(title, fontsize=9)
    ax.set_xticks(steps.numpy())
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
